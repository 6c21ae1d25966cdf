"""The layers of the reports' slice viewer, encoded for one self-contained HTML file.

A slice travels as a few small images (data URIs) that the page's script decodes and
composes on a canvas (``workflow/templates/viewer.html.j2``): the EM section and each
continuous map (cell probability, fold disagreement) as lossy greyscale WebP, and the exact
masks (ground truth, prediction at the threshold, cell outlines) as one lossless RGB WebP,
a mask a channel. The page derives the errors from the masks, so they match the scores
pixel for pixel; the lossy codec's small errors stay in what is only looked at. WebP
rather than JPEG or PNG: half the bytes for the probability maps and masks at the same
look, which keeps a run's report with every held-out slice under 7 MB.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from .metrics import predicted_cell
from .records import HeldOut, Volume
from .scores import SCORE_LABELS

# WebP qualities: the EM section (noisy, the most bytes), and the smooth maps.
IMAGE_QUALITY = 55
MAP_QUALITY = 65
# A set of sections without labels (a test volume, a stack segmented) shows at most this
# many, evenly spread, so that the page stays small.
VIEWER_SECTIONS = 12
# The fold disagreement (sd over fold models of a probability in [0, 1]) is drawn in full
# colour from this sd up. It reaches 0.5 only where the folds split evenly between 0 and
# 1; on the ISBI test volume 99 % of its pixels lie under 0.15, which a 0 to 0.5 scale drew
# too faint to see.
UNCERTAINTY_FULL = 0.25


def _data_uri(image: Image.Image, kind: str, **options) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return f"data:image/{kind.lower()};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def grey_image(values: np.ndarray, low: float = 0.0, high: float = 1.0, quality: int = MAP_QUALITY) -> str:
    """A (H, W) map as a lossy greyscale WebP data URI, ``low`` black and ``high`` white
    (values outside clipped; NaN black)."""
    scaled = np.nan_to_num((np.asarray(values, np.float32) - low) / max(high - low, 1e-12), nan=0.0)
    pixels = (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)
    return _data_uri(Image.fromarray(pixels, "L"), "WEBP", quality=quality)


def masks_image(*masks: np.ndarray | None) -> str:
    """Up to three (H, W) boolean masks as the red, green and blue channels (255 where
    true) of one lossless WebP data URI; a missing mask leaves its channel 0."""
    shape = next(m for m in masks if m is not None).shape
    channels = [np.zeros(shape, np.uint8) if m is None else np.asarray(m, bool).astype(np.uint8) * 255 for m in masks]
    channels += [np.zeros(shape, np.uint8)] * (3 - len(channels))
    return _data_uri(Image.fromarray(np.stack(channels, axis=-1), "RGB"), "WEBP", lossless=True, method=6)


def segments_image(segments: np.ndarray) -> str:
    """Instance labels (H, W) as a lossless RGB WebP data URI: each segment a colour of
    its own (hues a golden angle apart, so neighbours differ), 0 black."""
    labels = np.asarray(segments, np.int64)
    hues = (np.arange(int(labels.max()) + 1) * 0.618034) % 1.0
    # Hue to RGB at full saturation and 90 % value, vectorised (colorsys per segment is slow).
    sector = hues * 6
    ramp = np.clip(np.abs((sector[:, None] + [0, 4, 2]) % 6 - 3) - 1, 0, 1)
    palette = (ramp * 0.9 * 255).round().astype(np.uint8)
    palette[0] = 0
    return _data_uri(Image.fromarray(palette[labels], "RGB"), "WEBP", lossless=True, method=6)


def cell_errors_image(segments: np.ndarray, labels: np.ndarray) -> str:
    """Where the segments split (orange) or merge (blue) the true cells
    (``evaluate.split_merge_masks``), as a lossless RGB WebP data URI, black elsewhere."""
    from .evaluate import split_merge_masks

    split, merged = split_merge_masks(segments, labels)
    pixels = np.zeros((*split.shape, 3), np.uint8)
    pixels[split] = (230, 159, 0)
    pixels[merged] = (0, 114, 178)
    return _data_uri(Image.fromarray(pixels, "RGB"), "WEBP", lossless=True, method=6)


def spread_sections(count: int, most: int = VIEWER_SECTIONS) -> list[int]:
    """At most ``most`` section indices of ``count``, evenly spread, first and last included."""
    return sorted({int(i) for i in np.linspace(0, count - 1, min(most, count)).round()})


def slice_scores(row: pd.Series) -> list[dict]:
    """A per_slice row's scores as [{name, label, value, description}] for the viewer's
    score panel, in ``SCORE_LABELS`` order (NaN as None: shown n/a)."""
    return [
        {
            "name": column,
            "label": label,
            "value": None if pd.isna(row[column]) else float(row[column]),
            "description": description,
        }
        for column, (label, description) in SCORE_LABELS.items()
        if column in row.index
    ]


def held_out_layers(held_out: HeldOut, threshold: float) -> list[dict]:
    """Every held-out slice of a run for the viewer, in slice order: ``index``, ``fold``,
    ``scores`` (``slice_scores``), ``image`` (the normalised section, [0, 1]),
    ``probability`` and ``masks`` (red = truth cell, green = predicted cell,
    probability > ``threshold`` as every score reads it) and, where the run made cells,
    ``segments`` (``segments_image``) and ``cell_errors`` (``cell_errors_image``)."""
    images, labels = held_out.images, held_out.labels
    slices = []
    for _, row in held_out.per_slice.sort_values("slice").iterrows():
        index, fold = int(row["slice"]), int(row["fold"])
        probability = held_out.probability(index, fold)
        cells = held_out.cells(index, fold)
        slices.append(
            {
                "index": index,
                "fold": fold,
                "height": probability.shape[0],
                "width": probability.shape[1],
                "scores": slice_scores(row),
                "image": grey_image(images[index], quality=IMAGE_QUALITY),
                "probability": grey_image(probability),
                "masks": masks_image(np.asarray(labels[index]) == 1, predicted_cell(probability, threshold)),
                "segments": None if cells is None else segments_image(cells),
                "cell_errors": None if cells is None else cell_errors_image(cells, np.asarray(labels[index])),
            }
        )
    return slices


def volume_layers(volume: Volume, threshold: float, indices: list[int] | None = None, stride: int = 1) -> list[dict]:
    """Sections of a predicted stack without labels for the viewer: ``index``, ``height``
    and ``width``, ``image`` (normalised, [0, 1]), ``probability``, ``uncertainty`` (the
    standard deviation over fold models, drawn 0 to ``UNCERTAINTY_FULL``; None without it),
    ``masks`` (green = predicted cell at ``threshold``, blue = the outlines of the
    volume's instance labels where it has them) and ``segments`` (``segments_image`` of
    those labels, or None). ``indices`` picks the sections (all by
    default); ``stride`` > 1 keeps every stride-th pixel of each axis, for sections too
    large to embed whole. Only the sections picked are read."""
    from skimage.segmentation import find_boundaries

    images, probabilities, uncertainty, cells = volume.images, volume.probability, volume.uncertainty, volume.labels
    chosen = range(len(images)) if indices is None else indices
    window = (slice(None, None, stride), slice(None, None, stride))
    sections = []
    for index in chosen:
        probability = np.asarray(probabilities[index])
        outlines = None if cells is None else find_boundaries(np.asarray(cells[index]), mode="inner")
        shown = np.asarray(images[index])[window]
        sections.append(
            {
                "index": int(index),
                "height": int(shown.shape[0]),
                "width": int(shown.shape[1]),
                "image": grey_image(shown, quality=IMAGE_QUALITY),
                "probability": grey_image(probability[window]),
                "uncertainty": None
                if uncertainty is None
                else grey_image(np.asarray(uncertainty[index])[window], 0, UNCERTAINTY_FULL),
                "masks": masks_image(
                    None,
                    predicted_cell(probability, threshold)[window],
                    None if outlines is None else outlines[window],
                ),
                "segments": None if cells is None else segments_image(np.asarray(cells[index])[window]),
            }
        )
    return sections


def run_sets(held_out: HeldOut, threshold: float, test: Volume | None = None) -> list[dict]:
    """The viewer's sets of a run: its held-out slices (``held_out_layers``; layers ground
    truth, prediction, errors, probability, and the cells with where they split or merge
    a true cell) and, with a test volume, its sections (``volume_layers``, at most
    ``VIEWER_SECTIONS`` of them; prediction, probability, the fold disagreement and the
    cells). Each set:
    ``id``, ``name``, ``describe`` (a slice's title, ``{index}`` and ``{fold}`` filled in),
    ``layers``, ``default_on`` and ``slices``."""
    sets = [
        {
            "id": "held_out",
            "name": "held-out slices",
            "describe": "slice {index}, held out by fold {fold}",
            "layers": ["truth", "prediction", "errors", "probability"]
            + (["segments", "cell_errors"] if held_out.cell_dirs else []),
            "default_on": ["cell_errors"] if held_out.cell_dirs else ["errors"],
            "slices": held_out_layers(held_out, threshold),
        }
    ]
    if test is not None:
        test_uncertainty = test.uncertainty
        sets.append(
            {
                "id": "test",
                "name": "test volume (fold ensemble)",
                "describe": "test-volume slice {index}",
                "layers": ["prediction", "probability"]
                + (["uncertainty"] if test_uncertainty is not None else [])
                + (["segments"] if test.labels is not None else []),
                "default_on": ["uncertainty"] if test_uncertainty is not None else ["prediction"],
                "slices": volume_layers(test, threshold, spread_sections(len(test.images))),
            }
        )
    return sets
