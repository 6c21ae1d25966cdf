"""Prediction: probability maps of the cell class, tiled, blended and test-time augmented.

Slices that fit in one tile are predicted whole. Larger ones are cut into overlapping
tiles whose probabilities are blended with Gaussian weights (highest at a tile's centre,
where the network sees the most context), so memory stays bounded whatever the slice size:
one tile's activations plus two float32 accumulators of the slice.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from .model import build_model, dihedral, undo_dihedral
from .runtime import autocast, resolve_device, resolve_precision
from .stackio import write_stack
from .stacks import intensity_mismatch

log = logging.getLogger(__name__)


def load_model(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model saved by ``train.train_fold`` in eval mode on ``device``, and its metadata."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(payload["model"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length`` with the given overlap."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - overlap)))
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def gaussian_weights(height: int, width: int) -> torch.Tensor:
    """Blending weights of a tile: a Gaussian with sigma = 1/8 of each side, floored."""

    def axis(n: int) -> torch.Tensor:
        centre = (n - 1) / 2
        return torch.exp(-0.5 * ((torch.arange(n) - centre) / (n / 8)) ** 2)

    weights = axis(height)[:, None] * axis(width)[None, :]
    return (weights / weights.max()).clamp_min(1e-3)


class Predictor:
    """One or more models (an ensemble is their mean probability) with a prediction recipe.

    Args:
        model_paths: model files written by training.
        predict_config: the ``predict`` config section (tta, tile_size, tile_overlap,
            device, precision, channels_last).
    """

    def __init__(self, model_paths: list[str | Path], predict_config: dict) -> None:
        self.device = resolve_device(predict_config["device"])
        self.precision = resolve_precision(predict_config["precision"], self.device)
        self.memory_format = torch.channels_last if predict_config["channels_last"] else torch.contiguous_format
        self.models = []
        self.inputs = []  # each model's training input record (stacks.normalise_images)
        for path in model_paths:
            model, payload = load_model(path, self.device)
            self.models.append((model.to(memory_format=self.memory_format), payload["normalisation"]))
            self.inputs.append(payload.get("input"))
        self.tta = predict_config["tta"]
        self.tile = predict_config["tile_size"]
        self.overlap = predict_config["tile_overlap"]

    @torch.inference_mode()
    def _tile_probability(self, tile: torch.Tensor) -> torch.Tensor:
        """Mean cell probability over models and TTA variants for one (h, w) tile."""
        total = torch.zeros(tile.shape, dtype=torch.float32, device=self.device)
        for model, norm in self.models:
            x = ((tile - norm["mean"]) / norm["std"])[None, None]
            for index in range(self.tta):
                variant = dihedral(x, index).contiguous(memory_format=self.memory_format)
                with autocast(self.device, self.precision):
                    logits = model(variant)
                total += undo_dihedral(torch.sigmoid(logits.float()), index)[0, 0]
        return total / (len(self.models) * self.tta)

    def predict_slice(self, image: np.ndarray) -> np.ndarray:
        """Cell probability (H, W) float32 in [0, 1] for an image (H, W) float32 in [0, 1]."""
        height, width = image.shape
        source = torch.from_numpy(np.array(image, dtype=np.float32)).to(self.device)
        if height * width <= self.tile * self.tile:
            return self._tile_probability(source).cpu().numpy()
        tile_h, tile_w = min(self.tile, height), min(self.tile, width)
        weights = gaussian_weights(tile_h, tile_w).to(self.device)
        summed = torch.zeros((height, width), dtype=torch.float32, device=self.device)
        weight_sum = torch.zeros_like(summed)
        for top in tile_starts(height, tile_h, self.overlap):
            for left in tile_starts(width, tile_w, self.overlap):
                window = (slice(top, top + tile_h), slice(left, left + tile_w))
                summed[window] += self._tile_probability(source[window]) * weights
                weight_sum[window] += weights
        return (summed / weight_sum).cpu().numpy()

    def predict_slices(self, images: np.ndarray, slices: list[int]) -> np.ndarray:
        """Probabilities (len(slices), H, W) float32 of the listed slices of ``images``."""
        began = time.perf_counter()
        out = np.empty((len(slices), *images.shape[1:]), dtype=np.float32)
        for position, index in enumerate(slices):
            out[position] = self.predict_slice(np.asarray(images[index]))
            done = position + 1
            rate = (time.perf_counter() - began) / done
            log.info(
                "predicted slice %d (%d of %d), %.2f s a slice, ETA %.0f s",
                index,
                done,
                len(slices),
                rate,
                rate * (len(slices) - done),
            )
        return out


def write_probability_tiff(path: str | Path, probabilities: np.ndarray, voxel_size: dict | None = None) -> None:
    """Save probabilities (H, W) or (N, H, W) float32, 1 = cell interior, as a calibrated
    ImageJ hyperstack with display range 0-1 (``stackio.write_stack``)."""
    write_stack(path, probabilities.astype(np.float32), voxel_size, display_range=(0.0, 1.0))


def predict_held_out(
    model_path: str | Path,
    images: np.ndarray,
    slices: list[int],
    output_dir: str | Path,
    predict_config: dict,
    voxel_size: dict | None = None,
) -> list[Path]:
    """Write ``slice_NNN.tif`` probability maps of the held-out ``slices`` into
    ``output_dir``, calibrated with ``voxel_size``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    probabilities = Predictor([model_path], predict_config).predict_slices(images, slices)
    paths = []
    for index, probability in zip(slices, probabilities, strict=True):
        paths.append(output_dir / f"slice_{index:03d}.tif")
        write_probability_tiff(paths[-1], probability, voxel_size)
    return paths


def predict_ensemble(
    folds: list[Predictor], images: np.ndarray, uncertainty: bool = False, what: str = "section"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The fold ensemble's cell probability of every slice of ``images`` (N, H, W)
    float32, normalised as the models were trained: the mean over ``folds`` (one
    ``Predictor`` per fold model), float32 (N, H, W) in [0, 1]; with ``uncertainty`` also
    the population standard deviation over them (0 with one model), else None. Logs each
    ``what`` done with its rate and ETA."""
    began = time.perf_counter()
    probability = np.empty(images.shape, np.float32)
    spread = np.empty(images.shape, np.float32) if uncertainty else None
    for index in range(len(images)):
        per_fold = np.stack([fold.predict_slice(np.asarray(images[index])) for fold in folds])
        probability[index] = per_fold.mean(axis=0)
        if uncertainty:
            spread[index] = per_fold.std(axis=0)
        rate = (time.perf_counter() - began) / (index + 1)
        log.info(
            "predicted %s %d of %d, %.2f s a %s, ETA %.0f s",
            what,
            index + 1,
            len(images),
            rate,
            what,
            rate * (len(images) - index - 1),
        )
    return probability, spread


def predict_volume(
    model_paths: list[str | Path],
    images: np.ndarray,
    output: str | Path,
    uncertainty_output: str | Path,
    predict_config: dict,
    input_record: dict | None = None,
) -> None:
    """Write the fold ensemble's probabilities of every slice (the mean over the fold
    models) to ``output`` and their disagreement (the standard deviation over the fold
    models) to ``uncertainty_output``, each one calibrated stack. ``input_record`` is the
    unpacked stack's record: its voxel size calibrates the outputs, and its intensities
    are compared with the training stack's (a warning when the models would see inputs
    unlike those they were trained on)."""
    folds = [Predictor([path], predict_config) for path in model_paths]
    input_record = input_record or {}
    trained_on = (folds[0].inputs[0] or {}).get("normalisation")
    if trained_on and input_record.get("normalisation"):
        mismatch = intensity_mismatch(trained_on, input_record["normalisation"])
        if mismatch:
            log.warning("%s", mismatch)
    probabilities, spread = predict_ensemble(folds, images, uncertainty=True, what="slice")
    write_probability_tiff(output, probabilities, input_record.get("voxel_size"))
    write_probability_tiff(uncertainty_output, spread, input_record.get("voxel_size"))
