"""Prediction steps of the pipeline: each fold's held-out slices, and the test volume.

Both predict through ``inference.FoldEnsemble`` (tiled, blended, test-time augmented):
the held-out slices with their fold's model alone, the test volume with every fold's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .inference import FoldEnsemble
from .layout import slice_file
from .records import InferenceSettings, Intensities, VoxelSize
from .stackio import write_stack


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
    (N, H, W float32, normalised) as ``layout.slice_file`` into ``output_dir``,
    calibrated with ``voxel_size``, predicted by the fold's model alone."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    probabilities, _ = FoldEnsemble([model_path], settings).predict(images[slices], what="held-out slice")
    paths = []
    for index, probability in zip(slices, probabilities, strict=True):
        paths.append(output_dir / slice_file(index))
        write_probability_tiff(paths[-1], probability, voxel_size)
    return paths


def predict_volume(
    model_paths: list[str | Path],
    images: np.ndarray,
    outputs: dict[str, str | Path],
    settings: InferenceSettings,
    input_record: dict,
) -> None:
    """Write the fold ensemble's probabilities of every slice of ``images`` (N, H, W
    float32, normalised) to ``outputs['probability']`` (the mean over the fold models) and
    their disagreement (the standard deviation over them) to ``outputs['uncertainty']``,
    each one calibrated stack. ``input_record`` is the unpacked stack's record: its voxel
    size calibrates the outputs, and its intensities are compared with the training
    stack's (a warning when the models would see inputs unlike those they were trained on)."""
    ensemble = FoldEnsemble(model_paths, settings)
    if input_record.get("normalisation"):
        ensemble.check_intensities(Intensities.from_json(input_record["normalisation"]), "the test volume")
    probabilities, spread = ensemble.predict(images, uncertainty=True, what="slice")
    voxel_size = VoxelSize.from_json(input_record.get("voxel_size"))
    write_probability_tiff(outputs["probability"], probabilities, voxel_size)
    write_probability_tiff(outputs["uncertainty"], spread, voxel_size)
