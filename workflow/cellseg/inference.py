"""The one inference path: fold models loaded once as one ``model.Ensemble``, run tile by tile.

Held-out prediction (one fold), the test volume, segmenting new stacks and the
bioimage.io export all predict through ``FoldEnsemble``: the same network the package
ships, on the configured device and precision, with sections larger than a tile cut into
overlapping tiles whose outputs are blended with Gaussian weights (``predict_tiled``: the
highest weight at a tile's centre, where the network sees the most context), so memory
stays bounded whatever the section's size: one tile's activations plus two float32
accumulators of the section.

From Python, no Snakemake involved::

    ensemble = FoldEnsemble.from_run("results/default")
    probability, uncertainty = ensemble.predict_raw(stack, uncertainty=True)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cells import zoomed_shape
from .config import checked_section, defaults
from .errors import InputError
from .layout import model_files
from .model import Ensemble, affinity_offsets, build_model, fold_mean
from .records import FoldModel, InferenceSettings, Intensities, PixelScale, VoxelSize, pixel_scale
from .runtime import autocast, resolve_device, resolve_precision
from .stacks import intensity_record

log = logging.getLogger(__name__)


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


def predict_tiled(
    predict: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int, overlap: float
) -> torch.Tensor:
    """``predict`` of a section (H, W) or (C_in, H, W) float32 (a section with its
    neighbours), whole when it has at most ``tile`` squared pixels, else in tiles of
    ``tile`` a side overlapping by the fraction ``overlap``, blended with
    ``gaussian_weights``. ``predict`` maps a tile (h, w) or (C_in, h, w) to outputs
    (..., h, w) of any leading shape (folds, channels); the result is (..., H, W) float32
    on the image's device."""
    height, width = image.shape[-2:]
    if height * width <= tile * tile:
        return predict(image)
    tile_h, tile_w = min(tile, height), min(tile, width)
    weights = gaussian_weights(tile_h, tile_w).to(image.device)
    summed = weight_sum = None
    for top in tile_starts(height, tile_h, overlap):
        for left in tile_starts(width, tile_w, overlap):
            window = (slice(top, top + tile_h), slice(left, left + tile_w))
            output = predict(image[(..., *window)])
            if summed is None:
                summed = torch.zeros((*output.shape[:-2], height, width), dtype=torch.float32, device=image.device)
                weight_sum = torch.zeros((height, width), dtype=torch.float32, device=image.device)
            summed[(..., *window)] += output * weights
            weight_sum[window] += weights
    return summed / weight_sum


def resampled(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``image`` (..., H, W) float32 resampled to (..., *shape) by bilinear interpolation
    (pixel centres aligned, ``align_corners=False``), antialiased along an axis it
    shrinks, so a coarser grid averages the finer one rather than aliasing it. Weights are
    non-negative and sum to one, so values stay within the input's range."""
    lead, size = image.shape[:-2], image.shape[-2:]
    if tuple(size) == tuple(shape):
        return image
    shrinks = shape[0] < size[0] or shape[1] < size[1]
    flat = image.reshape(1, -1, *size)
    return F.interpolate(flat, size=shape, mode="bilinear", align_corners=False, antialias=shrinks).reshape(
        *lead, *shape
    )


def fold_spread(per_fold: torch.Tensor) -> np.ndarray:
    """The population standard deviation over the first axis (the folds' disagreement),
    float32 on the CPU, computed as numpy computes it (its square root is correctly
    rounded; torch's float32 one on the CPU is not always)."""
    deviation = per_fold - fold_mean(per_fold)
    return np.sqrt(fold_mean(deviation * deviation).cpu().numpy())


def split_outputs(outputs: np.ndarray, offsets: list) -> tuple[np.ndarray, np.ndarray | None]:
    """The cell probability (N, H, W) and the affinities (N, K, H, W), or None, of the
    outputs ``FoldEnsemble.predict`` gives for networks of ``offsets`` (K of them)."""
    if not offsets:
        return outputs, None
    return outputs[:, 0], outputs[:, 1:]


def load_fold(path: str | Path) -> tuple[FoldModel, dict]:
    """The record and the weights (a state dict on the CPU) of a model file written by
    ``train.train_fold``. Raises ``InputError`` for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"No trained model at {path}; train the experiment first (snakemake ... with its config).")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = payload.pop("state_dict")
    return FoldModel.from_json(payload), state_dict


def check_part(stack: np.ndarray, intensities: Intensities, name: str) -> None:
    """Raise ``InputError`` when ``stack`` (a slab or section normalised with the
    statistics of its whole stack, ``intensities``) cannot be part of that stack: another
    dtype, or NaN or infinite pixels (which the whole stack's check would have refused)."""
    if str(stack.dtype) != intensities.dtype:
        raise InputError(
            f"{name} is {stack.dtype}, but the intensities given were measured on a {intensities.dtype} stack; "
            "pass the intensities of the stack this part was cut from, or none (its own are measured)."
        )
    if stack.dtype.kind == "f" and not np.isfinite(stack).all():
        raise InputError(f"{name} holds NaN or infinite pixels.")


class FoldEnsemble:
    """A run's fold models (or one fold's), loaded once, and how they predict.

    Args:
        model_paths: model files written by training (``results/<experiment>/models/fold<k>.pt``).
        settings: ``InferenceSettings``, or a ``predict`` config section, complete or
            partial (``{"precision": "fp32"}``): what it leaves out is the run's own, the
            run that trained the models; by default, all of the run's.
    Raises ``InputError`` for no model files, a missing one, or settings the config
    schema refuses (naming the key).

    ``records`` are the folds' ``FoldModel`` records, ``network`` the ``model.Ensemble``
    on the device (in eval mode), ``training`` the training stack's record.
    """

    def __init__(self, model_paths: list[str | Path], settings: InferenceSettings | dict | None = None) -> None:
        if not model_paths:
            raise InputError(
                "No trained model to predict with; train the experiment first (snakemake ... with its config)."
            )
        loaded = [load_fold(path) for path in model_paths]
        self.model_paths = [Path(p) for p in model_paths]
        self.records = [record for record, _ in loaded]
        if not isinstance(settings, InferenceSettings):
            # A partial predict section: the rest is the run's own; checked as the config is.
            run = self.records[0].config["predict"]
            settings = InferenceSettings.from_config(checked_section("predict", settings or {}, run))
        self.settings = settings
        self.training = self.records[0].input
        self.device = resolve_device(settings.device)
        self.precision = resolve_precision(settings.precision, self.device)
        self.network = self._network([state for _, state in loaded])

    def _network(self, state_dicts: list[dict]) -> Ensemble:
        """The ``model.Ensemble`` of the folds on the device, in eval mode."""
        nets = [build_model(record.model) for record in self.records]
        for net, state_dict in zip(nets, state_dicts, strict=True):
            net.load_state_dict(state_dict)
        folds = [record.model | record.standardisation for record in self.records]
        network = Ensemble(folds, self.settings.tta, self.settings.channels_last, nets)
        memory_format = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        return network.to(self.device, memory_format=memory_format).eval()

    @classmethod
    def from_run(cls, run_dir: str | Path, settings: InferenceSettings | dict | None = None) -> FoldEnsemble:
        """The fold models of ``results/<experiment>`` (its ``models/fold<k>.pt``)."""
        paths = model_files(run_dir)
        if not paths:
            raise InputError(f"{run_dir} holds no trained models (models/fold<k>.pt); run its experiment first.")
        return cls(paths, settings)

    @torch.inference_mode()
    def _tile(self, tile: torch.Tensor) -> torch.Tensor:
        """Each fold's outputs (F, C, h, w) of a tile (h, w) or (C_in, h, w) on the device
        (C = 1: the cell probability; affinities add one channel per offset)."""
        with autocast(self.device, self.precision):
            return self.network.per_fold(tile[None, None] if tile.ndim == 2 else tile[None])[:, 0]

    @property
    def context(self) -> int:
        """The neighbouring sections on each side the networks read (0: each section alone)."""
        return int(self.records[0].model.get("context_sections", 0))

    @property
    def offsets(self) -> list[list[int]]:
        """The affinity offsets of the networks' channels 1.. (none for a boundary map)."""
        return affinity_offsets(self.records[0].model)

    def section_input(self, images: np.ndarray, index: int) -> np.ndarray:
        """What the networks read of section ``index`` of ``images`` (N, H, W): the section
        (H, W), or with ``context`` the section and its neighbours, nearest first, the
        stack's ends repeated (C_in, H, W), as training read them."""
        if not self.context:
            return np.asarray(images[index])
        last = len(images) - 1
        around = [index + d for distance in range(1, self.context + 1) for d in (-distance, distance)]
        return np.stack([np.asarray(images[min(max(i, 0), last)]) for i in [index, *around]])

    def pixel_zoom(self, voxel_size: VoxelSize, name: str) -> PixelScale:
        """How sections of a stack of ``voxel_size`` (named ``name``) meet the networks
        (``records.pixel_scale`` against the training stack's, with
        ``settings.match_pixel_size``), the sentence logged: as a warning where the scale
        cannot be checked or is not matched. ``CellRecipe.of`` makes the cells at the
        same pixel size."""
        scale = pixel_scale(voxel_size, self.training.voxel_size, name, self.settings.match_pixel_size)
        log.log(logging.WARNING if scale.warning else logging.INFO, "%s", scale.note)
        return scale

    def predict_section(self, image: np.ndarray, zoom: tuple[float, float] | None = None) -> torch.Tensor:
        """Each fold's outputs (F, C, H, W) float32 on the device, of an image (H, W), or
        (C_in, H, W) with its neighbours (``section_input``), normalised as the training
        stack was; with ``zoom`` (``pixel_zoom``) predicted resampled by those factors
        and the outputs resampled back to (H, W)."""
        source = torch.from_numpy(np.array(image, dtype=np.float32)).to(self.device)
        if zoom is None:
            return predict_tiled(self._tile, source, self.settings.tile_size, self.settings.tile_overlap)
        height, width = source.shape[-2:]
        scaled = resampled(source, zoomed_shape((height, width), zoom))
        outputs = predict_tiled(self._tile, scaled, self.settings.tile_size, self.settings.tile_overlap)
        return resampled(outputs, (height, width))

    def predict(
        self,
        images: np.ndarray,
        uncertainty: bool = False,
        what: str = "section",
        indices: list[int] | None = None,
        zoom: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The ensemble's cell probability of the sections ``indices`` (by default all) of
        ``images`` (N, H, W) float32, normalised as the training stack was (the networks
        of 2.5-D read the neighbours from ``images`` too): the mean over the folds,
        float32 (len(indices), H, W) in [0, 1]; with ``uncertainty`` also the population
        standard deviation over them (0 with one fold), else None. A network of C > 1
        output channels (affinities) gives (len(indices), C, H, W), channel 0 the cell
        probability (``split_outputs``). ``zoom``: the sections resampled for prediction
        (``pixel_zoom``), the outputs on their own grid. Logs each ``what`` done with its
        rate and ETA."""
        began = time.perf_counter()
        probability = spread = None
        indices = list(range(len(images))) if indices is None else list(indices)
        for done, section in enumerate(indices):
            per_fold = self.predict_section(self.section_input(images, section), zoom)
            channels = per_fold.shape[1:] if per_fold.shape[1] > 1 else per_fold.shape[2:]
            if probability is None:
                probability = np.empty((len(indices), *channels), np.float32)
                spread = np.empty(probability.shape, np.float32) if uncertainty else None
            probability[done] = fold_mean(per_fold).cpu().numpy().reshape(channels)
            if uncertainty:
                spread[done] = fold_spread(per_fold).reshape(channels)
            rate = (time.perf_counter() - began) / (done + 1)
            log.info(
                "predicted %s %d of %d, %.2f s a %s, ETA %.0f s",
                what,
                done + 1,
                len(indices),
                rate,
                what,
                rate * (len(indices) - done - 1),
            )
        if probability is None:  # no sections
            probability = np.empty((0, *images.shape[1:]), np.float32)
            spread = np.empty(probability.shape, np.float32) if uncertainty else None
        return probability, spread

    def intensities(self, stack: np.ndarray, name: str = "the stack") -> Intensities:
        """The normalisation of a raw stack (N, H, W) by the models' recorded method and
        the stack's own statistics (``stacks.intensity_record``, bounded memory); check
        it against the training stack's with ``check_intensities``."""
        trained = self.training.normalisation
        if trained is None:  # a model of an older cellseg: the schema's default normalisation
            data = defaults("data")
            method, percentiles = data["normalization"], data["percentiles"]
        else:
            method, percentiles = trained.method, trained.percentiles
        return intensity_record(stack, name, method, tuple(percentiles))

    def check_intensities(self, record: Intensities, name: str) -> list[str]:
        """The warnings, each logged, about a stack of ``record``'s intensities (named
        ``name``) against the training stack's: far outside its range
        (``Intensities.mismatch``), or a histogram of another shape (``Intensities.unlike``)."""
        trained = self.training.normalisation
        found = [trained.mismatch(record), trained.unlike(record)] if trained else []
        warnings = [f"{name}: {warning}" for warning in found if warning]
        for warning in warnings:
            log.warning("%s", warning)
        return warnings

    def predict_raw(
        self,
        stack: np.ndarray,
        uncertainty: bool = False,
        name: str = "the stack",
        intensities: Intensities | None = None,
        indices: list[int] | None = None,
        zoom: tuple[float, float] | None = None,
    ):
        """Cell probability of a raw stack (N, H, W) or section (H, W), any dtype.

        ``zoom``: the sections predicted resampled by these factors (y, x), the outputs
        on the stack's grid: ``pixel_zoom(voxel_size, name).zoom`` predicts a stack of
        another pixel size at the training one (then make its cells with
        ``CellRecipe.of(outputs, zoom)``). None (the default) predicts them as they are.

        ``intensities`` (``intensities`` of the whole stack) when ``stack`` is a slab or
        a section of a larger one; by default the statistics of ``stack`` itself (so a
        section alone is normalised by its own percentiles, which differ from its
        stack's). ``indices``: the sections to predict (by default all; the others are
        read as the neighbours of 2.5-D networks). Raises ``InputError`` for other shapes.
        Returns float32 in [0, 1] of the input's shape (of ``len(indices)`` sections):
        the mean over fold models, with a channel axis after the sections' (channel 0 the
        cell probability, then the affinities) for networks of affinities; with
        ``uncertainty``, the tuple (mean, standard deviation over fold models).
        """
        if not hasattr(stack, "ndim"):
            stack = np.asarray(stack)
        if stack.ndim not in (2, 3):
            raise InputError(f"{name} has shape {stack.shape}; cellseg predicts a stack (N, H, W) or a section (H, W).")
        if stack.size == 0:
            raise InputError(f"{name} is empty (shape {stack.shape}); there is nothing to predict.")
        section = stack.ndim == 2
        stack = stack[None] if section else stack
        if intensities is None:
            intensities = self.intensities(stack, name)
            self.check_intensities(intensities, name)
        else:  # the statistics of a larger stack: this part must be of it
            check_part(stack, intensities, name)
        images = intensities.apply(stack)
        probability, spread = self.predict(images, uncertainty, indices=indices, zoom=zoom)
        if section:
            probability = probability[0]
            spread = spread[0] if uncertainty else None
        return (probability, spread) if uncertainty else probability
