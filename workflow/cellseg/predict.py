"""Prediction steps of the pipeline: each fold's held-out slices, and the test volume.

Both predict through ``inference.FoldEnsemble`` (tiled, blended, test-time augmented):
the held-out slices with their fold's model alone, the test volume with every fold's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .cells import CellRecipe
from .inference import FoldEnsemble, split_outputs
from .layout import AFFINITIES_SUFFIX, slice_file
from .records import InferenceSettings, Intensities, VoxelSize
from .stackio import write_stack

log = logging.getLogger(__name__)


def write_probability_tiff(path: str | Path, probabilities: np.ndarray, voxel_size: VoxelSize) -> None:
    """Save probabilities (H, W) or (N, H, W) float32, 1 = cell interior, as a calibrated
    ImageJ hyperstack with display range 0-1 (``stackio.write_stack``)."""
    write_stack(path, probabilities.astype(np.float32), voxel_size, display_range=(0.0, 1.0))


def predict_held_out(
    model_path: str | Path,
    images: np.ndarray,
    slices: list[int],
    output_dir: str | Path,
    settings: InferenceSettings,
    voxel_size: VoxelSize,
) -> list[Path]:
    """Write the probability map of each held-out slice in ``slices`` of ``images``
    (N, H, W float32, normalised; 2.5-D networks read the neighbours too) as
    ``layout.slice_file`` into ``output_dir``, calibrated with ``voxel_size``, predicted
    by the fold's model alone; a network of affinities also writes them beside each
    (``slice_file(index, AFFINITIES_SUFFIX)``, channels x H x W float32)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ensemble = FoldEnsemble([model_path], settings)
    outputs, _ = ensemble.predict(images, what="held-out slice", indices=slices)
    probabilities, affinities = split_outputs(outputs, ensemble.offsets)
    paths = []
    for position, index in enumerate(slices):
        paths.append(output_dir / slice_file(index))
        write_probability_tiff(paths[-1], probabilities[position], voxel_size)
        if affinities is not None:
            write_probability_tiff(output_dir / slice_file(index, AFFINITIES_SUFFIX), affinities[position], voxel_size)
    return paths


def predict_volume(
    model_paths: list[str | Path],
    images: np.ndarray,
    outputs: dict[str, str | Path],
    settings: InferenceSettings,
    input_record: dict,
    recipe: CellRecipe,
) -> None:
    """Write the fold ensemble's probabilities of every slice of ``images`` (N, H, W
    float32, normalised) to ``outputs['probability']`` (the mean over the fold models),
    their disagreement (the standard deviation over them) to ``outputs['uncertainty']``
    and the cells ``recipe`` makes of them to ``outputs['cells']`` (uint32), each one
    calibrated stack. ``input_record`` is the unpacked stack's record: its voxel size
    calibrates the outputs and, where its pixel size is not the training stack's, the
    sections are predicted at the training one (``FoldEnsemble.pixel_zoom``); its
    intensities are compared with the training stack's (a warning when the models would
    see inputs unlike those they were trained on)."""
    ensemble = FoldEnsemble(model_paths, settings)
    if input_record.get("normalisation"):
        ensemble.check_intensities(Intensities.from_json(input_record["normalisation"]), "the test volume")
    voxel_size = VoxelSize.from_json(input_record.get("voxel_size"))
    zoom = ensemble.pixel_zoom(voxel_size, "the test volume").zoom
    mean, spread = ensemble.predict(images, uncertainty=True, what="slice", zoom=zoom)
    write_probability_tiff(outputs["probability"], split_outputs(mean, ensemble.offsets)[0], voxel_size)
    write_probability_tiff(outputs["uncertainty"], split_outputs(spread, ensemble.offsets)[0], voxel_size)
    labels = recipe.of(mean, zoom)
    write_stack(outputs["cells"], labels, voxel_size)
    log.info(
        "the test volume: %d cells in %d sections by %s",
        sum(int(s.max()) for s in labels),
        len(labels),
        recipe.settings["method"],
    )
