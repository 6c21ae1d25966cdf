"""Cells from network outputs: instance labels of each section, by one of three methods.

``segment.method`` chooses how:

- ``watershed``: a seeded watershed of the cell probability (``instance_labels``).
- ``agglomerate``: the fragments of a watershed of the boundary map, merged greedily by
  the mean affinity of their shared boundary until it falls under ``1 - threshold``
  (waterz, Funke et al. 2019, "Large scale image segmentation with structured loss based
  deep learning for connectome reconstruction", IEEE TPAMI 41(7)). Its nearest-neighbour
  affinities are the network's own where it predicts affinities, else those of the cell
  probability: ``min(p(x), p(y))`` for neighbours x, y.
- ``mutex``: the mutex watershed of the predicted affinities (mwatershed; Wolf et al.
  2018, "The Mutex Watershed: Efficient, Parameter-Free Image Partitioning", ECCV):
  nearest-neighbour edges attract where their affinity is above the threshold and repel
  below it, long-range edges only repel, and the edges are taken in order of strength.

Every method's labels are then cut to the cells' mask (cell probability above
``segment.threshold``; 0 = membrane), segments under ``segment.min_size_px`` pixels are
dropped, and the rest numbered 1.. per section. The graph algorithms are maintained
packages (the optional extra ``.[cells]``), imported only when a method needs them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential, watershed
from skimage.transform import resize

from .config import checked_section, defaults
from .errors import InputError
from .metrics import predicted_cell

METHODS = ("watershed", "agglomerate", "mutex")
# The methods whose threshold (segment.merge_threshold) is an agglomeration's.
MERGING = ("agglomerate", "mutex")
NEAREST = ([-1, 0], [0, -1])


def _package(name: str):
    """Import the graph package ``name``, or raise ``InputError`` naming the extra."""
    try:
        return __import__(name)
    except ImportError as error:
        raise InputError(
            f"segment.method needs the package {name}, which is not installed: pip install -e '.[cells]' "
            f"(or pip install {name})."
        ) from error


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence what a graph package prints to standard output (waterz prints every merge
    step, from Python and from C++): Python's ``sys.stdout`` and the process's file
    descriptor 1 both go to a sink, and come back as they were."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _numbered(segments: np.ndarray, min_size: int) -> np.ndarray:
    """Segments (H, W) of any integer type, those under ``min_size`` pixels dropped (0) and
    the rest numbered 1.. in order of their labels, as uint32."""
    segments = np.asarray(segments, np.int64)
    values, inverse, sizes = np.unique(segments, return_inverse=True, return_counts=True)
    keep = (sizes >= min_size) & (values > 0)
    numbers = np.zeros(len(sizes), np.uint32)
    numbers[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return numbers[inverse.reshape(segments.shape)]


def seeded_watershed(probability: np.ndarray, threshold: float, seed_threshold: float, min_size: int) -> np.ndarray:
    """One section's cells by the seeded watershed (``instance_labels`` describes it)."""
    four = ndimage.generate_binary_structure(2, 1)
    seeds, count = ndimage.label(predicted_cell(probability, seed_threshold), structure=four)
    sizes = np.bincount(seeds.ravel(), minlength=count + 1)
    seeds[sizes[seeds] < min_size] = 0
    flooded = watershed(1 - probability, markers=seeds, mask=predicted_cell(probability, threshold), connectivity=1)
    return _numbered(flooded, min_size)


def nearest_affinities(probability: np.ndarray) -> np.ndarray:
    """Affinities (2, H, W) float32 of each pixel to its neighbour above (offset (-1, 0))
    and to its left ((0, -1)) from a cell probability (H, W): the lower of the two
    pixels' probabilities, 0 where the neighbour lies outside the section."""
    probability = np.asarray(probability, np.float32)
    affinities = np.zeros((2, *probability.shape), np.float32)
    affinities[0, 1:] = np.minimum(probability[1:], probability[:-1])
    affinities[1, :, 1:] = np.minimum(probability[:, 1:], probability[:, :-1])
    return affinities


def agglomerations(nearest: np.ndarray, thresholds: Sequence[float]) -> list[np.ndarray]:
    """waterz's fragments of one section, merged by mean affinity: the segments (H, W)
    uint64 at each of ``thresholds`` (ascending: each merges more), from its
    nearest-neighbour affinities ``nearest`` (2, H, W) to the pixel above and to the
    left, in [0, 1]. Two regions merge while 1 - the mean affinity of their shared
    boundary is under the threshold."""
    waterz = _package("waterz")
    height, width = nearest.shape[1:]
    # waterz reads (z, y, x) affinities of a volume; one section has no z neighbours.
    volume = np.zeros((3, 1, height, width), np.float32)
    volume[1:, 0] = nearest
    with _quiet_stdout():
        return [segments[0].copy() for segments in waterz.agglomerate(volume, list(thresholds))]


def mutex_watershed(affinities: np.ndarray, offsets: Sequence[Sequence[int]], threshold: float) -> np.ndarray:
    """Mutex watershed segments (H, W) uint64 of one section's ``affinities`` (C, H, W) in
    [0, 1], channel c relating each pixel to the one at ``offsets[c]`` (dy, dx) from it.
    Nearest-neighbour channels attract with weight affinity - ``threshold`` (repel where
    that is negative); longer ones only repel, with weight min(affinity - threshold, 0)."""
    mwatershed = _package("mwatershed")
    offsets = [list(map(int, offset)) for offset in offsets]
    weights = np.asarray(affinities, np.float64) - threshold
    for channel, offset in enumerate(offsets):
        if max(abs(offset[0]), abs(offset[1])) > 1:
            weights[channel] = np.minimum(weights[channel], 0.0)
    return mwatershed.agglom(weights, offsets)


def nearest_of(affinities: np.ndarray, offsets: Sequence[Sequence[int]]) -> np.ndarray:
    """The nearest-neighbour channels (-1, 0) and (0, -1) of ``affinities`` (C, ..., H, W).
    Raises ``InputError`` when ``offsets`` lacks one."""
    offsets = [list(map(int, offset)) for offset in offsets]
    missing = [offset for offset in NEAREST if list(offset) not in offsets]
    if missing:
        raise InputError(f"model.offsets {offsets} lack the nearest neighbours {missing} that segments need.")
    return np.stack([affinities[offsets.index(list(offset))] for offset in NEAREST])


def check_settings(settings: dict) -> dict:
    """The segment settings, schema defaults filled in (keys it refuses raise
    ``InputError``), their thresholds checked to lie in order."""
    settings = checked_section("segment", settings or {}, defaults("segment"))
    threshold, seed_threshold, min_size = (settings[k] for k in ("threshold", "seed_threshold", "min_size_px"))
    if not 0 <= threshold <= seed_threshold <= 1:
        raise InputError(
            f"segment thresholds must satisfy 0 <= threshold ({threshold}) <= seed_threshold ({seed_threshold}) <= 1."
        )
    if min_size < 1:
        raise InputError(f"min_size_px is {min_size}; cells have at least 1 pixel.")
    if settings["method"] not in METHODS:
        raise InputError(f"segment.method is {settings['method']!r}; it is one of {', '.join(METHODS)}.")
    return settings


def _check_probability(probability: np.ndarray) -> None:
    """Raise ``InputError`` unless ``probability`` is (N, H, W) or (H, W), finite, in [0, 1]."""
    if probability.ndim not in (2, 3):
        raise InputError(f"cells read a probability map (N, H, W) or (H, W); this one has shape {probability.shape}.")
    if not np.isfinite(probability).all():
        raise InputError(f"the probability map of shape {probability.shape} holds NaN or infinite values.")
    if probability.size and not 0 <= float(probability.min()) <= float(probability.max()) <= 1:
        raise InputError(
            f"cells read a cell probability in [0, 1]; this one has shape {probability.shape} and values "
            f"{float(probability.min()):g} to {float(probability.max()):g}."
        )


def section_cells(
    probability: np.ndarray,
    affinities: np.ndarray | None,
    offsets: Sequence[Sequence[int]],
    settings: dict,
    merge_threshold: float,
) -> np.ndarray:
    """The instance labels (H, W) uint32 of one section (0 = membrane, cells 1..).

    ``probability`` (H, W) the cell probability; ``affinities`` (C, H, W) the predicted
    affinities of ``offsets`` (None for a network of the cell probability alone);
    ``settings`` the segment section (``check_settings``); ``merge_threshold`` the
    agglomeration's threshold (``agglomerate``, ``mutex``; ignored by ``watershed``).
    Raises ``InputError`` for a method that needs affinities the network does not make.
    """
    method = settings["method"]
    if method == "watershed":
        return seeded_watershed(probability, settings["threshold"], settings["seed_threshold"], settings["min_size_px"])
    if method == "agglomerate":
        nearest = nearest_affinities(probability) if affinities is None else nearest_of(affinities, offsets)
        (segments,) = agglomerations(nearest, [merge_threshold])
    else:
        if affinities is None:
            raise InputError(
                "segment.method 'mutex' needs a network that predicts affinities (model.output: affinities); "
                "these models predict the cell probability alone: use agglomerate or watershed."
            )
        segments = mutex_watershed(affinities, offsets, merge_threshold)
    return finished(segments, probability, settings)


def finished(segments: np.ndarray, probability: np.ndarray, settings: dict) -> np.ndarray:
    """An agglomeration's segments (H, W) cut to the cells' mask (cell probability above
    ``settings['threshold']``; 0 elsewhere), those under ``min_size_px`` pixels dropped,
    the rest numbered 1.., as uint32."""
    inside = predicted_cell(probability, settings["threshold"])
    return _numbered(np.where(inside, segments.astype(np.int64) + 1, 0), settings["min_size_px"])


def instance_labels(probability: np.ndarray, settings: dict | None = None) -> np.ndarray:
    """Cells as instance labels, per section, by the seeded watershed of the probability.

    ``probability`` (N, H, W) or (H, W) of the cell class; ``settings`` the segment config
    section's ``threshold``, ``seed_threshold`` and ``min_size_px``, or some of them (the
    schema's defaults for the rest; keys the schema refuses raise ``InputError``). Per
    section: the cell mask is ``probability > threshold``; seeds are the
    4-connected components of ``probability > seed_threshold`` of at least ``min_size_px``
    pixels (the confident cell interiors); the watershed floods 1 - probability from the
    seeds within the mask (Beucher and Meyer's marker-controlled watershed, as EM
    pipelines use on membrane probability), so touching cells split along the least
    cell-like pixels; segments under ``min_size_px`` pixels are dropped. Returns uint32 of
    the input's shape, 0 = membrane (or background), cells numbered 1.. per section.
    Raises ``InputError`` for thresholds out of order, a size under 1 or a map outside [0, 1].
    The other methods: ``cells``.
    """
    settings = check_settings({**(settings or {}), "method": "watershed"})
    return cells(probability, None, [], settings, 0.0)


def cells(
    probability: np.ndarray,
    affinities: np.ndarray | None,
    offsets: Sequence[Sequence[int]],
    settings: dict | None,
    merge_threshold: float,
) -> np.ndarray:
    """``section_cells`` of every section: ``probability`` (N, H, W) or (H, W),
    ``affinities`` (N, C, H, W), (C, H, W) or None. Returns uint32 of the probability's
    shape."""
    settings = check_settings(settings or {})
    probability = np.asarray(probability)
    _check_probability(probability)
    single = probability.ndim == 2
    sections = probability[None] if single else probability
    if affinities is not None and single:
        affinities = affinities[None]
    labels = np.zeros(sections.shape, np.uint32)
    for index, section in enumerate(sections):
        section_affinities = None if affinities is None else np.asarray(affinities[index])
        labels[index] = section_cells(section, section_affinities, offsets, settings, merge_threshold)
    return labels[0] if single else labels


@dataclass(frozen=True)
class CellRecipe:
    """How a run makes cells: its ``segment`` settings (``check_settings``), the network's
    affinity ``offsets`` (none for a boundary map) and the ``merge_threshold`` chosen for
    stacks (``selection.stack_threshold``; unused by the watershed)."""

    settings: dict
    offsets: list = field(default_factory=list)
    merge_threshold: float = 0.0

    def __post_init__(self) -> None:
        # Some of the keys, or none: the schema's defaults fill the rest, as the config's.
        object.__setattr__(self, "settings", check_settings(self.settings))

    def of(self, outputs: np.ndarray, zoom: tuple[float, float] | None = None) -> np.ndarray:
        """The cells (N, H, W) uint32 of ``FoldEnsemble.predict``'s mean outputs: (N, H, W)
        cell probability, or (N, 1 + K, H, W) with the affinities of the K offsets.

        ``zoom`` (``FoldEnsemble.pixel_zoom``, for a stack of another pixel size than the
        training stack's): the cells are made at the training pixel size, where
        ``min_size_px``, the merge threshold and the offsets mean what they meant in
        training: the outputs resampled by ``zoom`` (bilinear, as ``resized``), the cells
        made there and their labels brought back to the outputs' grid by nearest neighbour
        and numbered 1.. again per section."""
        if zoom is None:
            return self._cells(outputs)
        grid = outputs.shape[-2:]
        labels = self._cells(resized(outputs, zoomed_shape(grid, zoom)))
        back = resized(labels, grid, nearest=True)
        return np.stack([relabel_sequential(section)[0] for section in back]).astype(np.uint32)

    def _cells(self, outputs: np.ndarray) -> np.ndarray:
        if self.offsets:
            return cells(outputs[:, 0], outputs[:, 1:], self.offsets, self.settings, self.merge_threshold)
        return cells(outputs, None, [], self.settings, self.merge_threshold)


def zoomed_shape(shape: Sequence[int], zoom: tuple[float, float]) -> tuple[int, int]:
    """The (H, W) of a section of ``shape`` (..., H, W) resampled by ``zoom`` (y, x)."""
    return max(1, round(shape[-2] * zoom[0])), max(1, round(shape[-1] * zoom[1]))


def resized(array: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """``array`` (..., H, W) resampled to (..., *shape) with pixel centres aligned:
    bilinear and antialiased where it shrinks (float32), or by the nearest pixel (labels,
    their dtype kept). scikit-image's ``resize``."""
    target = (*array.shape[:-2], *shape)
    if nearest:
        return resize(array, target, order=0, preserve_range=True, anti_aliasing=False).astype(array.dtype)
    shrinks = shape[0] < array.shape[-2] or shape[1] < array.shape[-1]
    return resize(array, target, order=1, preserve_range=True, anti_aliasing=shrinks).astype(np.float32)
