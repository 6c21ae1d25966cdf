"""Segmenting new stacks with an experiment's trained fold models, without retraining.

``Segmenter`` holds the fold models of a run. ``predict`` takes a raw stack (any dtype,
as read from disk), normalises it as the models' training stack was normalised (the
method recorded in each model file), and returns the cell probability: the mean over
the fold models (each the mean over its test-time augmentations), and optionally the
standard deviation over the fold models, where they disagree. ``instance_labels`` turns
a probability map into cells that can be counted and measured.

The pipeline segments a stack in slabs, each a job: ``plan_segmentation`` divides it
and fixes the normalisation all slabs share, ``segment_slab`` predicts one slab,
``write_tiff``, ``write_ome_zarr`` and ``gather_summary`` gather the slabs.

From Python, no Snakemake involved::

    segmenter = Segmenter.from_run("results/default")
    probability, uncertainty = segmenter.predict(stack, uncertainty=True)
    labels = instance_labels(probability, threshold=0.5, seed_threshold=0.9, min_size=20)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import tifffile
import torch
from scipy import ndimage
from skimage.segmentation import watershed

from .errors import InputError
from .metrics import predicted_cell
from .predict import Predictor, predict_ensemble
from .stackio import MICROMETRES, stack_on_disk
from .stacks import apply_normalisation, intensity_mismatch, intensity_record

log = logging.getLogger(__name__)


class Segmenter:
    """The fold models of a run, as one ensemble.

    Args:
        model_paths: model files written by training (``results/<experiment>/models/fold<k>.pt``).
        predict_config: the ``predict`` config section (tta, tile_size, tile_overlap,
            device, precision, channels_last); by default, the one the models' run used.
    Raises ``InputError`` when there is no model file.
    """

    def __init__(self, model_paths: list[str | Path], predict_config: dict | None = None) -> None:
        model_paths = [Path(p) for p in model_paths]
        missing = [str(p) for p in model_paths if not p.is_file()]
        if not model_paths or missing:
            raise InputError(
                f"No trained model to segment with ({', '.join(missing) or 'no model files given'}); "
                "train the experiment first (snakemake ... with its config)."
            )
        payloads = [torch.load(p, map_location="cpu", weights_only=True) for p in model_paths]
        self.config = payloads[0]["config"]
        self.input = payloads[0].get("input") or {}
        predict_config = predict_config or self.config["predict"]
        # One predictor per fold model: the spread over folds is the uncertainty.
        self.folds = [Predictor([path], predict_config) for path in model_paths]
        self.model_paths = model_paths

    @classmethod
    def from_run(cls, run_dir: str | Path, predict_config: dict | None = None) -> Segmenter:
        """The fold models of ``results/<experiment>`` (its ``models/fold<k>.pt``)."""
        paths = sorted(Path(run_dir).glob("models/fold*.pt"), key=lambda p: int(p.stem[4:]))
        if not paths:
            raise InputError(f"{run_dir} holds no trained models (models/fold<k>.pt); run its experiment first.")
        return cls(paths, predict_config)

    def intensities(self, stack: np.ndarray, name: str = "the stack") -> dict:
        """The normalisation of a raw stack (N, H, W) by the models' recorded method and
        the stack's own statistics (``stacks.intensity_record``, bounded memory); a
        stack far outside the training stack's range is warned about."""
        recorded = self.input.get("normalisation") or {"method": "percentile", "percentiles": [1.0, 99.8]}
        record = intensity_record(stack, name, recorded["method"], tuple(recorded["percentiles"]))
        if self.input.get("normalisation"):
            mismatch = intensity_mismatch(recorded, record)
            if mismatch:
                log.warning("%s: %s", name, mismatch)
        return record

    def predict(
        self, stack: np.ndarray, uncertainty: bool = False, name: str = "the stack", intensities: dict | None = None
    ):
        """Cell probability of a raw stack (N, H, W) or section (H, W), any dtype.

        ``intensities`` (``Segmenter.intensities`` of the whole stack) when ``stack`` is
        a slab or a section of a larger one; by default the statistics of ``stack``
        itself (so a section alone is normalised by its own percentiles, which differ
        from its stack's). Raises ``InputError`` for other shapes. Returns
        float32 in [0, 1] of the input's shape: the mean over fold models; with
        ``uncertainty``, also the standard deviation over fold models (population, 0
        with a single model), as a tuple (probability, uncertainty).
        """
        if not hasattr(stack, "ndim"):
            stack = np.asarray(stack)
        if stack.ndim not in (2, 3):
            raise InputError(
                f"{name} has shape {stack.shape}; the Segmenter predicts a stack (N, H, W) or a section (H, W)."
            )
        section = stack.ndim == 2
        stack = stack[None] if section else stack
        images = apply_normalisation(stack, intensities or self.intensities(stack, name))
        probability, spread = predict_ensemble(self.folds, images, uncertainty)
        if section:
            probability = probability[0]
            spread = spread[0] if uncertainty else None
        return (probability, spread) if uncertainty else probability


def instance_labels(
    probability: np.ndarray, threshold: float = 0.5, seed_threshold: float = 0.9, min_size: int = 20
) -> np.ndarray:
    """Cells as instance labels, per section: a seeded watershed on the probability.

    ``probability`` (N, H, W) or (H, W) of the cell class. Per section: the cell mask is
    ``probability > threshold``; seeds are the 4-connected components of ``probability >
    seed_threshold`` of at least ``min_size`` pixels (the confident cell interiors); the
    watershed floods 1 - probability from the seeds within the mask (Beucher and
    Meyer's marker-controlled watershed, as EM pipelines use on membrane probability),
    so touching cells split along the least cell-like pixels; segments under
    ``min_size`` pixels are dropped. Returns uint32 of the input's shape, 0 = membrane
    (or background), cells numbered 1.. per section.
    """
    if not 0 <= threshold <= seed_threshold <= 1:
        raise InputError(
            f"segment thresholds must satisfy 0 <= threshold ({threshold}) <= seed_threshold ({seed_threshold}) <= 1."
        )
    if min_size < 1:
        raise InputError(f"min_size is {min_size}; cells have at least 1 pixel.")
    if probability.ndim not in (2, 3) or (
        probability.size and not 0 <= float(probability.min()) <= float(probability.max()) <= 1
    ):
        raise InputError(
            f"instance_labels reads a probability map (N, H, W) or (H, W) in [0, 1]; this one has shape "
            f"{probability.shape} and values {float(probability.min()):g} to {float(probability.max()):g}."
        )
    sections = probability[None] if probability.ndim == 2 else probability
    labels = np.zeros(sections.shape, np.uint32)
    four = ndimage.generate_binary_structure(2, 1)
    for index, section in enumerate(sections):
        seeds, count = ndimage.label(predicted_cell(section, seed_threshold), structure=four)
        sizes = np.bincount(seeds.ravel(), minlength=count + 1)
        seeds[sizes[seeds] < min_size] = 0
        flooded = watershed(1 - section, markers=seeds, mask=predicted_cell(section, threshold), connectivity=1)
        sizes = np.bincount(flooded.ravel())
        flooded[sizes[flooded] < min_size] = 0
        # Number the surviving cells 1.. in order of appearance.
        kept = np.unique(flooded[flooded > 0])
        relabel = np.zeros(int(flooded.max()) + 1, np.uint32)
        relabel[kept] = np.arange(1, len(kept) + 1, dtype=np.uint32)
        labels[index] = relabel[flooded]
    return labels[0] if probability.ndim == 2 else labels


def summary_table(
    labels: np.ndarray, probability: np.ndarray, uncertainty: np.ndarray, threshold: float, voxel_size: dict | None
) -> pd.DataFrame:
    """Per section: ``cells``, ``median_cell_area_px``, ``median_cell_area_um2`` (square
    micrometres; NaN where ``voxel_size`` gives no pixel size), ``membrane_fraction``
    (probability <= threshold) and ``mean_uncertainty``: the same columns for every stack.
    Arrays (N, H, W); ``voxel_size`` as ``stackio`` reads it (any unit it knows)."""
    rows = []
    pixel_area = float("nan")
    if voxel_size and voxel_size.get("x") and voxel_size.get("y") and voxel_size.get("unit"):
        pixel_area = voxel_size["x"] * voxel_size["y"] * MICROMETRES[voxel_size["unit"]] ** 2
    for index in range(len(labels)):
        areas = np.bincount(labels[index].ravel())[1:]
        areas = areas[areas > 0]
        median = float(np.median(areas)) if len(areas) else float("nan")
        row = {"section": index, "cells": len(areas), "median_cell_area_px": median}
        row["median_cell_area_um2"] = median * pixel_area
        row["membrane_fraction"] = float((probability[index] <= threshold).mean())
        row["mean_uncertainty"] = float(uncertainty[index].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def plan_segmentation(
    stack: np.ndarray, name: str, voxel_size: dict, model_paths: list[str | Path], slab_slices: int
) -> dict:
    """How a stack (N, H, W; a memory map stays on disk) is segmented: its ``slabs`` of
    ``slab_slices`` sections ([start, stop) pairs, each a job), the ``normalisation`` all
    slabs share (``Segmenter.intensities`` of the whole stack, in bounded memory), and
    ``source``, ``shape``, ``dtype``, ``voxel_size`` and ``models`` for the outputs and
    the report. Raises ``InputError`` for a slab size under 1 or missing models."""
    if slab_slices < 1:
        raise InputError(f"segment.slab_slices is {slab_slices}; it must be at least 1.")
    segmenter = Segmenter(model_paths)
    count = len(stack)
    return {
        "source": name,
        "shape": list(stack.shape),
        "dtype": str(stack.dtype),
        "voxel_size": voxel_size,
        "models": [str(p) for p in model_paths],
        "normalisation": segmenter.intensities(stack, name),
        "slab_slices": slab_slices,
        "slabs": [[start, min(start + slab_slices, count)] for start in range(0, count, slab_slices)],
    }


def segment_slab(
    stack: np.ndarray,
    plan: dict,
    slab: int,
    model_paths: list[str | Path],
    predict_config: dict,
    segment_config: dict,
    outputs: dict[str, str | Path],
) -> pd.DataFrame:
    """Segment slab ``slab`` of ``plan`` (``plan_segmentation``) and write ``outputs``:
    ``probability`` and ``uncertainty`` (float32 .npy, sections x H x W), ``labels``
    (uint32 .npy, ``instance_labels`` with ``segment_config``'s ``threshold``,
    ``seed_threshold`` and ``min_size_px``) and ``summary`` (TSV of ``summary_table``,
    sections numbered in the whole stack). Returns the summary."""
    start, stop = plan["slabs"][slab]
    segmenter = Segmenter(model_paths, predict_config)
    probability, uncertainty = segmenter.predict(
        stack[start:stop], uncertainty=True, name=plan["source"], intensities=plan["normalisation"]
    )
    labels = instance_labels(
        probability, segment_config["threshold"], segment_config["seed_threshold"], segment_config["min_size_px"]
    )
    for key, value in (("probability", probability), ("uncertainty", uncertainty), ("labels", labels)):
        np.save(outputs[key], value)
    summary = summary_table(labels, probability, uncertainty, segment_config["threshold"], plan["voxel_size"])
    summary = summary.assign(section=summary.section + start)
    empty = summary.section[summary.cells == 0].tolist()
    if empty:
        log.warning(
            "slab %d: no cell found in section(s) %s: no pixel above segment.seed_threshold (%g; the highest "
            "probability there is %.3f). Lower segment.seed_threshold, or check that the stack looks like the "
            "training data.",
            slab,
            ", ".join(map(str, empty)),
            segment_config["seed_threshold"],
            float(probability[[s - start for s in empty]].max()),
        )
    summary.to_csv(outputs["summary"], sep="\t", index=False, float_format="%.6g")
    log.info(
        "slab %d: sections %d to %d of %d segmented, %d cells",
        slab,
        start,
        stop - 1,
        plan["shape"][0],
        int(summary.cells.sum()),
    )
    return summary


def gathered(paths: list[str | Path]) -> da.Array:
    """The slabs' arrays (.npy files of ``segment_slab``, in order) as one lazy stack,
    a chunk a slab: each slab is read when its chunk is needed and freed after."""
    parts = []
    for path in paths:
        header = np.load(path, mmap_mode="r")
        parts.append(da.from_delayed(dask.delayed(np.load)(path), header.shape, header.dtype))
        del header
    return da.concatenate(parts)


def write_tiff(plan: dict, slabs: dict[str, list[str | Path]], outputs: dict[str, str | Path]) -> None:
    """The slabs' ``probability``, ``uncertainty`` and ``labels`` as calibrated TIFF stacks
    (``stackio.stack_on_disk``: ImageJ hyperstacks, OME-TIFF (BigTIFF past 4 GB) for
    uint32 labels), filled one slab at a time. ImageJ hyperstacks past 4 GB are written as
    ImageJ itself writes them, which is logged."""
    for key, display in (("probability", (0.0, 1.0)), ("uncertainty", (0.0, 0.5)), ("labels", None)):
        first = np.load(slabs[key][0], mmap_mode="r")
        output = stack_on_disk(outputs[key], tuple(plan["shape"]), first.dtype, plan["voxel_size"], display)
        del output
        for (start, stop), path in zip(plan["slabs"], slabs[key], strict=True):
            # Mapped for one slab only: written pages leave the process with the mapping.
            # A one-section file maps as (H, W): seen as the stack it is.
            output = tifffile.memmap(outputs[key], mode="r+").reshape(plan["shape"])
            output[start:stop] = np.load(path, mmap_mode="r")
            output.flush()
            del output
        log.info("wrote %s (%s)", outputs[key], " x ".join(map(str, plan["shape"])))
        if key != "labels" and Path(outputs[key]).stat().st_size > 2**32:
            log.warning(
                "%s is over 4 GB: written as ImageJ writes such stacks (one directory, the sections "
                "contiguous after it), which Fiji and tifffile read whole but other TIFF readers see as "
                "one section; segmentation.ome.zarr holds the same values for any reader",
                outputs[key],
            )


def write_ome_zarr(plan: dict, slabs: dict[str, list[str | Path]], output: str | Path) -> None:
    """The slabs as one OME-Zarr image (NGFF, written by ome-zarr-py), which napari and
    Fiji's N5/Zarr readers open at scale: the image has channels ``cell probability`` and
    ``fold disagreement`` (float32, axes c, z, y, x), the instance labels are its label
    image ``labels/cells`` (uint32, z, y, x); chunks of one section, a resolution pyramid
    (x2 in y and x per level, down to about 256 pixels), physical sizes in micrometres
    where the stack's voxel size is known. Written from the slabs lazily: memory holds a
    few sections, whatever the stack's length."""
    import zarr
    from ome_zarr.writer import write_image, write_labels

    output = Path(output)
    if output.exists():
        shutil.rmtree(output)  # a partial store of a killed run
    count, height, width = plan["shape"]
    levels, factor = [], 2
    while min(height, width) // factor >= 256:
        levels.append(factor)
        factor *= 2
    scale, units = _ngff_scale(plan["voxel_size"] or {}, output)
    image = da.stack([gathered(slabs["probability"]), gathered(slabs["uncertainty"])])
    group = zarr.open_group(str(output), mode="w")
    channels = [
        {
            "label": "cell probability",
            "color": "FFFFFF",
            "active": True,
            "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0},
        },
        {
            "label": "fold disagreement",
            "color": "FF00FF",
            "active": False,
            "window": {"start": 0.0, "end": 0.5, "min": 0.0, "max": 0.5},
        },
    ]
    # One section a chunk at every level of the pyramid.
    sizes = [(height // f, width // f) for f in [1, *levels]]
    write_image(
        image,
        group,
        scale_factors=levels,
        axes="czyx",
        scale={"c": 1.0} | scale,
        axes_units=units,
        storage_options=[{"chunks": (1, 1, *size)} for size in sizes],
        name=plan["source"],
        omero={"channels": channels},
    )
    write_labels(
        gathered(slabs["labels"]),
        group,
        name="cells",
        scaler=None,
        scale_factors=levels,
        axes="zyx",
        label_metadata={"source": {"image": "../../"}},
        scale=scale,
        axes_units=units,
        storage_options=[{"chunks": (1, *size)} for size in sizes],
    )
    log.info("wrote %s: %d sections of %d x %d, %d pyramid level(s)", output, count, height, width, len(levels) + 1)


def _ngff_scale(voxel: dict, output: Path) -> tuple[dict, dict | None]:
    """The physical size of a voxel along z, y, x in micrometres, and the axes' units, for
    NGFF metadata. NGFF needs a number for every axis: an unknown section spacing
    becomes the pixel size (isotropic, as a viewer assumes without calibration), which is
    logged; an uncalibrated stack is scaled in pixels, without units."""
    if not voxel.get("unit") or voxel.get("x") is None:
        return {axis: 1.0 for axis in "zyx"}, None
    micrometres = MICROMETRES[voxel["unit"]]
    scale = {axis: voxel[axis] * micrometres for axis in "yx" if voxel.get(axis) is not None}
    scale.setdefault("y", scale["x"])
    if voxel.get("z") is None:
        log.warning(
            "%s: the section spacing is unknown; the OME-Zarr's z scale is set to the pixel size (%g "
            "micron, isotropic). Set data.voxel_size.z to record the real one.",
            output,
            scale["x"],
        )
        scale["z"] = scale["x"]
    else:
        scale["z"] = voxel["z"] * micrometres
    return {axis: scale[axis] for axis in "zyx"}, {axis: "micrometer" for axis in "zyx"}


def read_outputs(paths: dict[str, str | Path]) -> dict[str, da.Array | np.ndarray]:
    """The segmentation of a stack as written, lazily (dask arrays over the OME-Zarr
    store ``paths['zarr']`` when given, else memory maps of the TIFF files
    ``paths[key]``; N x H x W): ``probability``, ``uncertainty`` and ``labels``."""
    if paths.get("zarr"):
        import zarr

        def full_resolution(group: zarr.Group) -> da.Array:
            return da.from_zarr(group[group.attrs["ome"]["multiscales"][0]["datasets"][0]["path"]])

        group = zarr.open_group(str(paths["zarr"]), mode="r")
        image = full_resolution(group)
        return {"probability": image[0], "uncertainty": image[1], "labels": full_resolution(group["labels/cells"])}
    return {key: tifffile.memmap(paths[key], mode="r") for key in ("probability", "uncertainty", "labels")}


def gather_summary(paths: list[str | Path], output: str | Path) -> pd.DataFrame:
    """The slabs' summaries (``segment_slab``) as one table, written to ``output`` (TSV)."""
    summary = pd.concat([pd.read_csv(path, sep="\t") for path in paths], ignore_index=True)
    summary.to_csv(output, sep="\t", index=False, float_format="%.6g")
    log.info(
        "%d sections, %d cells, median %.0f cells a section",
        len(summary),
        int(summary.cells.sum()),
        float(summary.cells.median()),
    )
    return summary
