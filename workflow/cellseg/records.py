"""Typed records that cross the pipeline's boundaries, each built once where its data enters.

Every record is a frozen dataclass that round-trips through JSON (``to_json`` gives
plain data, ``from_json``, or ``from_config`` for a config section, reads it back), so
what a rule writes and the next reads is one type, checked where it is read, rather
than a dict whose keys each reader spells again:

- ``VoxelSize``: a stack's calibration in micrometres, converted once when it is read;
- ``Intensities``: how a stack's raw values are normalised, and the statistics it needs;
- ``FoldModel``: what a trained fold's model file records besides its weights
  (``results/<experiment>/models/fold<k>.json``);
- ``SegmentationPlan``: how a stack to segment is cut into slab jobs
  (``results/<experiment>/segment/<name>/plan.json``);
- ``InferenceSettings``: how fold models predict (the config's ``predict`` section).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import InputError

# Units as cellseg writes them: ImageJ's own keywords, which Fiji and napari read.
UNIT_NAMES = {
    "micron": "micron",
    "microns": "micron",
    "um": "micron",
    "µm": "micron",
    "μm": "micron",
    "\\u00b5m": "micron",
    "micrometer": "micron",
    "micrometre": "micron",
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "mm": "mm",
    "millimeter": "mm",
    "cm": "cm",
    "m": "m",
    "å": "angstrom",
    "angstrom": "angstrom",
    "\\u00c5": "angstrom",
}


def unit_name(value: str) -> str | None:
    """The key of ``MICROMETRES`` for a unit as files and people write it ("µm", "um",
    "nanometer", "Å"; any case), or None for one it does not know."""
    return UNIT_NAMES.get(str(value).strip().lower())


# Size of one unit in micrometres, to convert calibrations.
MICROMETRES = {"angstrom": 1e-4, "nm": 1e-3, "micron": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
AXES = ("z", "y", "x")


@dataclass(frozen=True)
class VoxelSize:
    """The physical size of a voxel in micrometres: ``z`` the section spacing, ``y`` and
    ``x`` the pixel size; None where unknown.

    Stored as ``{"z", "y", "x", "unit"}`` with unit ``"micron"`` (or None when nothing
    is known), the form every record of cellseg has always used."""

    z: float | None = None
    y: float | None = None
    x: float | None = None

    @classmethod
    def in_unit(cls, z: float | None, y: float | None, x: float | None, unit: str | None) -> VoxelSize:
        """Sizes given in ``unit`` (a key of ``MICROMETRES``, or a spelling of one that
        ``unit_name`` knows), converted to micrometres;
        all unknown without a unit. Raises ``InputError`` for a unit it does not know."""
        if unit is None:
            return cls()
        known = unit_name(unit)
        if known is None:
            raise InputError(f"voxel size unit '{unit}' is not one of {', '.join(MICROMETRES)} (or their spellings).")
        scale = MICROMETRES[known]
        return cls(*(None if v is None else float(v) * scale for v in (z, y, x)))

    @classmethod
    def from_json(cls, data: dict | None) -> VoxelSize:
        """The record of ``to_json`` (any unit of ``MICROMETRES``), or unknown for None."""
        data = data or {}
        return cls.in_unit(data.get("z"), data.get("y"), data.get("x"), data.get("unit"))

    def to_json(self) -> dict:
        unit = "micron" if self.known_any else None
        return {"z": self.z, "y": self.y, "x": self.x, "unit": unit}

    @property
    def known_any(self) -> bool:
        return any(v is not None for v in (self.z, self.y, self.x))

    @property
    def pixel_known(self) -> bool:
        """Whether the pixel size (y and x) is known."""
        return bool(self.y) and bool(self.x)

    @property
    def pixel_area_um2(self) -> float:
        """The area of one pixel in square micrometres, NaN where the pixel size is unknown."""
        return self.y * self.x if self.pixel_known else float("nan")

    def replaced(self, other: VoxelSize) -> VoxelSize:
        """This size with each axis that ``other`` knows replaced by ``other``'s."""
        return VoxelSize(
            *(mine if theirs is None else theirs for mine, theirs in zip(self.axes, other.axes, strict=True))
        )

    @property
    def axes(self) -> tuple[float | None, float | None, float | None]:
        """(z, y, x) in micrometres."""
        return self.z, self.y, self.x

    def describe(self) -> str:
        """'z 0.05, y 0.004, x 0.004 micron' (? where unknown) for logs and reports, or
        'unknown'."""
        if not self.known_any:
            return "unknown"
        shown = ", ".join(f"{a} " + ("?" if v is None else f"{v:g}") for a, v in zip(AXES, self.axes, strict=True))
        return f"{shown} micron"


# Histograms further apart than this, or skewed the other way by more than this, make a
# stack to predict unlike the training data (``Intensities.unlike`` says how these were set).
UNLIKE_DISTANCE = 0.025
UNLIKE_SKEW = 0.1
# A stack whose files and config give no calibration.
UNCALIBRATED = VoxelSize()
NORMALISATIONS = ("percentile", "mean_std", "dtype_range")


# Pixel sizes that differ by at most this fraction are taken as equal: calibrations are
# rounded (4 nm written as 250 pixels a micron, say) and a network tolerates that much.
PIXEL_SIZE_TOLERANCE = 0.05


class PixelScale(NamedTuple):
    """How a stack's sections meet networks trained at another pixel size (``pixel_scale``)."""

    zoom: tuple[float, float] | None  # (y, x) resampling factors; None: as they are
    note: str  # what was decided and why, for logs and reports
    warning: bool  # the scale could not be checked, or was not matched


def pixel_scale(voxel_size: VoxelSize, trained: VoxelSize, name: str, match: bool = True) -> PixelScale:
    """How sections of a stack of ``voxel_size`` (named ``name`` in the note) are predicted
    by networks trained on a stack of ``trained``: resampled by the factors (y, x) of the
    stack's pixel size over the training one's (2 for 8 nm pixels against 4 nm, as
    nnU-Net resamples to its plan's spacing), or as they are where the sizes agree within
    ``PIXEL_SIZE_TOLERANCE``, where either is unknown (a warning: the scale cannot be
    checked) or where ``match`` (``predict.match_pixel_size``) is false (a warning)."""
    unknown = [
        what for what, size in (("the stack", voxel_size), ("the training stack", trained)) if not size.pixel_known
    ]
    if unknown:
        note = (
            f"{name}: the pixel size of {' and of '.join(unknown)} is unknown, so the scale cannot be checked "
            "against the training data's; cells of another size than the networks learned are segmented badly "
            "(calibrate the files, as Fiji's Image > Properties does; data.voxel_size gives the training and "
            "test stacks one)"
        )
        return PixelScale(None, note, warning=True)
    zoom = (voxel_size.y / trained.y, voxel_size.x / trained.x)
    sizes = (
        f"its pixels are {voxel_size.y * 1e3:.4g} x {voxel_size.x * 1e3:.4g} nm, "
        f"the training stack's {trained.y * 1e3:.4g} x {trained.x * 1e3:.4g} nm"
    )
    if all(abs(factor - 1) <= PIXEL_SIZE_TOLERANCE for factor in zoom):
        return PixelScale(None, f"{name}: {sizes}: predicted at its own pixel size", warning=False)
    if not match:
        note = (
            f"{name}: {sizes}, but predicted as it is (predict.match_pixel_size is false): the networks see its "
            f"cells at {1 / zoom[0]:.3g} times the size they learned"
        )
        return PixelScale(None, note, warning=True)
    note = (
        f"{name}: {sizes}: each section resampled by {zoom[0]:.3g} x {zoom[1]:.3g} to the training pixel size "
        "for prediction and its cells, the outputs and labels back to the stack's own grid "
        "(predict.match_pixel_size)"
    )
    return PixelScale(zoom, note, warning=False)


@dataclass(frozen=True)
class Intensities:
    """How a stack's raw values become the network's input (``stacks.intensity_record``
    measures it): ``method`` (one of ``NORMALISATIONS``), its ``percentiles``, and the
    stack's raw statistics: ``low`` and ``high`` (the percentiles' values), ``mean``,
    ``std``, ``min``, ``max`` (in the stack's own units), its ``dtype``, how many
    sections they were sampled from, and its ``quantiles``: the 1st to 99th percentiles
    (99 values; None in the records of an older cellseg), the shape of its histogram that
    ``unlike`` compares."""

    method: str
    percentiles: tuple[float, float]
    low: float
    high: float
    mean: float
    std: float
    min: float
    max: float
    dtype: str
    sampled_sections: int
    quantiles: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in NORMALISATIONS:
            raise InputError(f"normalisation '{self.method}' is not one of {', '.join(NORMALISATIONS)}.")

    @classmethod
    def from_json(cls, data: dict) -> Intensities:
        quantiles = data.get("quantiles")
        return cls(**{**data, "percentiles": tuple(data["percentiles"]), "quantiles": quantiles and tuple(quantiles)})

    def to_json(self) -> dict:
        quantiles = self.quantiles and list(self.quantiles)
        return {**dataclasses.asdict(self), "percentiles": list(self.percentiles), "quantiles": quantiles}

    def histogram_shape(self) -> np.ndarray | None:
        """The quantiles rescaled so the 1st percentile is 0 and the 99th is 1: the
        histogram's shape, whatever the stack's range, dtype or normalisation; None
        without quantiles or contrast."""
        if not self.quantiles or self.quantiles[-1] <= self.quantiles[0]:
            return None
        quantiles = np.asarray(self.quantiles, dtype=np.float64)
        return (quantiles - quantiles[0]) / (quantiles[-1] - quantiles[0])

    def unlike(self, other: Intensities) -> str | None:
        """A warning when ``other`` (a stack to predict) has a histogram of another shape
        than this (the training stack's), which a normalisation of the range alone cannot
        see (inverted contrast, another stain or detector); None when alike or unknown.

        Both histograms are compared by their quantile functions rescaled to [0, 1]
        (``histogram_shape``): the mean absolute difference of the 99 quantiles, the
        1-Wasserstein distance of the rescaled distributions, above
        ``UNLIKE_DISTANCE``; or a quantile skewness (Kenney and Keeping's:
        (q90 + q10 - 2 q50) / (q90 - q10)) of the other sign that differs by more than
        ``UNLIKE_SKEW``. An EM stack whose contrast is inverted (bright membranes) shows
        both: the ISBI test stack inverted is 0.053 from the training stack, skewness
        +0.08 against -0.09; as it is, 0.006 and -0.08 (its sections at half the
        resolution too)."""
        mine, theirs = self.histogram_shape(), other.histogram_shape()
        if mine is None or theirs is None:
            return None
        distance = float(np.abs(mine - theirs).mean())

        def skew(shape: np.ndarray) -> float:
            q10, q50, q90 = shape[9], shape[49], shape[89]
            return float((q90 + q10 - 2 * q50) / (q90 - q10))

        skews = skew(mine), skew(theirs)
        flipped = skews[0] * skews[1] < 0 and abs(skews[0] - skews[1]) > UNLIKE_SKEW
        if distance <= UNLIKE_DISTANCE and not flipped:
            return None
        found = [
            f"its histogram's shape differs from the training stack's by {distance:.3f} (1-Wasserstein of the "
            f"histograms rescaled to their 1st to 99th percentiles; above {UNLIKE_DISTANCE} is unlike)"
        ]
        if flipped:
            found.append(
                f"it leans the other way (quantile skewness {skews[1]:+.2f} against {skews[0]:+.2f}), as a stack "
                "of inverted contrast does (bright membranes, or an inverting lookup table baked into the pixels)"
            )
        return (
            "the stack to predict does not look like the training data: "
            + "; ".join(found)
            + ". The networks may segment it badly; check it in the report's viewer."
        )

    def apply(self, stack: np.ndarray) -> np.ndarray:
        """``stack`` (any shape, any dtype) normalised by this record, float32:
        percentile (v - low) / (high - low), mean_std (v - mean) / std, dtype_range
        v / the dtype's maximum (unsigned integers) or v (floats in [0, 1]); not clipped."""
        if self.method == "dtype_range":
            dtype = np.dtype(self.dtype)
            scale = np.iinfo(dtype).max if dtype.kind == "u" else 1.0
            return (np.asarray(stack, dtype=np.float32) / np.float32(scale)).astype(np.float32)
        if self.method == "percentile":
            offset, scale = self.low, self.high - self.low
        else:
            offset, scale = self.mean, self.std
        return ((np.asarray(stack, dtype=np.float64) - offset) / scale).astype(np.float32)

    def normalised_range(self) -> tuple[float, float]:
        """The stack's low and high percentiles after normalisation: what the model sees."""
        low, high = self.apply(np.array([self.low, self.high]))
        return float(low), float(high)

    def mismatch(self, other: Intensities) -> str | None:
        """A warning when ``other`` (a stack to predict) lies far outside this (the
        training stack's) intensity range as the model sees it: the middle of its
        normalised range outside the training range, or a range 3 times wider or
        narrower; None when they match."""
        train_low, train_high = self.normalised_range()
        low, high = other.normalised_range()
        width, train_width = high - low, train_high - train_low
        middle = (low + high) / 2
        if train_low <= middle <= train_high and train_width / 3 <= width <= 3 * train_width:
            return None
        return (
            f"the stack to predict lies far outside the training stack's intensities as the "
            f"model sees them ({self.method} normalisation): its {other.percentiles[0]:g}th to "
            f"{other.percentiles[1]:g}th percentiles map to {low:.3g} to {high:.3g}, the training "
            f"stack's to {train_low:.3g} to {train_high:.3g} (raw {other.low:g} to {other.high:g} "
            f"{other.dtype} against {self.low:g} to {self.high:g} {self.dtype}). "
            "Predictions may be meaningless; the default percentile normalisation avoids this."
        )


@dataclass(frozen=True)
class TrainingInput:
    """The training stack as the model saw it: its normalisation (None for a model
    trained on data without a record) and its voxel size."""

    normalisation: Intensities | None = None
    voxel_size: VoxelSize = field(default_factory=VoxelSize)

    @classmethod
    def from_json(cls, data: dict | None) -> TrainingInput:
        data = data or {}
        found = data.get("normalisation")
        return cls(Intensities.from_json(found) if found else None, VoxelSize.from_json(data.get("voxel_size")))

    def to_json(self) -> dict:
        return {
            "normalisation": self.normalisation.to_json() if self.normalisation else None,
            "voxel_size": self.voxel_size.to_json(),
        }


@dataclass(frozen=True)
class FoldModel:
    """What a fold's model file records besides its weights (``train.train_fold`` writes
    it into ``fold<k>.pt`` and, for readers without torch, as ``fold<k>.json``).

    ``model`` is the config's model section (the architecture); ``standardisation``
    the mean and sd of the normalised training slices the network subtracts and divides
    by; ``input`` the training stack's normalisation and voxel size; ``config`` the run's
    whole validated config; then the seed, fold, training slices, package versions,
    device, precision, steps, wall time (s) and throughput (crops/s) that made it."""

    model: dict
    standardisation: dict
    input: TrainingInput
    config: dict
    seed: int
    fold: int
    train_slices: list[int]
    versions: dict
    device: str
    precision: str
    steps: int
    wall_seconds: float
    crops_per_second: float

    @classmethod
    def from_json(cls, data: dict) -> FoldModel:
        fields = {f.name for f in dataclasses.fields(cls)} - {"standardisation", "input"}
        return cls(
            **{k: data[k] for k in fields},
            standardisation=data["normalisation"],
            input=TrainingInput.from_json(data.get("input")),
        )

    def to_json(self) -> dict:
        """The metadata as ``fold<k>.json`` holds it (its keys in their written order)."""
        return {
            "model": self.model,
            "normalisation": self.standardisation,
            "input": self.input.to_json(),
            "config": self.config,
            "seed": self.seed,
            "fold": self.fold,
            "train_slices": self.train_slices,
            "versions": self.versions,
            "device": self.device,
            "precision": self.precision,
            "steps": self.steps,
            "wall_seconds": self.wall_seconds,
            "crops_per_second": self.crops_per_second,
        }


@dataclass(frozen=True)
class InferenceSettings:
    """How fold models predict: ``tta`` flips and transposes (1 to 8), tiles of
    ``tile_size`` pixels a side overlapping by the fraction ``tile_overlap``, on
    ``device`` (auto, cpu, cuda, mps) in ``precision`` (auto, fp32, bf16, fp16), with
    channels-last activations or not; ``match_pixel_size``: stacks of another pixel size
    than the training stack's are resampled to it (``FoldEnsemble.pixel_zoom``)."""

    tta: int
    tile_size: int
    tile_overlap: float
    device: str
    precision: str
    channels_last: bool
    match_pixel_size: bool = True

    @classmethod
    def from_config(cls, section: dict) -> InferenceSettings:
        """The settings of a ``predict`` config section (complete, as validated; a run of
        an older cellseg may lack the keys added since, which take their defaults)."""
        return cls(**{f.name: section[f.name] for f in dataclasses.fields(cls) if f.name in section})

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SegmentationPlan:
    """How a stack to segment is cut into jobs (``segment.plan_segmentation``): its
    ``source`` (for messages), ``shape`` (N, H, W) and ``dtype``, its ``voxel_size``, the
    ``models`` that segment it, the ``normalisation`` every slab shares (the whole
    stack's), its ``slabs`` of ``slab_slices`` sections, [start, stop) pairs, and how its
    pixel size meets the models' (``zoom``, the factors its sections are resampled by for
    prediction and cells, or None; ``scale``, the sentence of ``FoldEnsemble.pixel_zoom``)
    and the ``warnings`` of checking the stack against the training data."""

    source: str
    shape: tuple[int, int, int]
    dtype: str
    voxel_size: VoxelSize
    models: list[str]
    normalisation: Intensities
    slab_slices: int
    slabs: list[tuple[int, int]]
    zoom: tuple[float, float] | None = None
    scale: str = "not checked (a plan of an older cellseg)"
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> SegmentationPlan:
        return cls(
            source=data["source"],
            shape=tuple(data["shape"]),
            dtype=data["dtype"],
            voxel_size=VoxelSize.from_json(data["voxel_size"]),
            models=list(data["models"]),
            normalisation=Intensities.from_json(data["normalisation"]),
            slab_slices=data["slab_slices"],
            slabs=[tuple(s) for s in data["slabs"]],
            zoom=tuple(data["zoom"]) if data.get("zoom") else None,
            scale=data.get("scale", cls.scale),
            warnings=list(data.get("warnings", [])),
        )

    @classmethod
    def load(cls, path: str | Path) -> SegmentationPlan:
        """The plan written by ``save``."""
        return cls.from_json(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "voxel_size": self.voxel_size.to_json(),
            "models": self.models,
            "normalisation": self.normalisation.to_json(),
            "slab_slices": self.slab_slices,
            "slabs": [list(s) for s in self.slabs],
            "zoom": list(self.zoom) if self.zoom else None,
            "scale": self.scale,
            "warnings": self.warnings,
        }


# Arrays a step reads together (in memory or memory-mapped, not JSON).


@dataclass(frozen=True)
class HeldOut:
    """A run's held-out predictions with what they are scored against: ``images``
    (N, H, W) float32 normalised, ``labels`` (N, H, W) uint8 with 1 = cell, ``per_slice``
    (the per-slice score table, a row per held-out slice with its fold),
    ``prediction_dirs`` (fold k -> the folder of its ``layout.slice_file`` maps) and
    ``cell_dirs`` (fold k -> the folder of its slices' instance labels), where made."""

    images: np.ndarray
    labels: np.ndarray
    per_slice: object  # pandas.DataFrame; pandas is not imported by the records
    prediction_dirs: dict[int, str | Path]
    cell_dirs: dict[int, str | Path] | None = None

    def probability(self, index: int, fold: int) -> np.ndarray:
        """The cell probability (H, W) float32 that ``fold`` predicted for held-out slice ``index``."""
        import tifffile

        from .layout import slice_file

        return tifffile.imread(Path(self.prediction_dirs[fold]) / slice_file(index))

    def cells(self, index: int, fold: int) -> np.ndarray | None:
        """The instance labels (H, W) uint32 of held-out slice ``index`` (``cell_dirs``), or None."""
        import tifffile

        from .layout import slice_file

        return None if self.cell_dirs is None else tifffile.imread(Path(self.cell_dirs[fold]) / slice_file(index))


@dataclass(frozen=True)
class Volume:
    """A predicted stack without labels: ``images`` (N, H, W) normalised, the ensemble's
    ``probability`` and the folds' disagreement ``uncertainty`` (N, H, W float32, None
    where not made) and, where segmented, the instance ``labels`` (N, H, W uint32)."""

    images: np.ndarray
    probability: np.ndarray
    uncertainty: np.ndarray | None = None
    labels: np.ndarray | None = None
