"""Segmenting new stacks with an experiment's trained fold models, without retraining.

The pipeline segments a stack in slabs, each a job: ``plan_segmentation`` divides it
and fixes the normalisation all slabs share, ``segment_slab`` predicts one slab with the
fold ensemble (``inference.FoldEnsemble``) and turns the probability into cells
(``instance_labels``); ``stackio.write_tiff_stacks`` and ``stackio.write_ome_zarr``
write the slabs as one stack and ``gather_summary`` joins their summaries.

From Python, no Snakemake involved::

    ensemble = FoldEnsemble.from_run("results/default")
    probability, uncertainty = ensemble.predict_raw(stack, uncertainty=True)
    labels = instance_labels(probability)  # the segment section's defaults
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.segmentation import watershed

from .config import checked_section, defaults
from .errors import InputError
from .inference import FoldEnsemble
from .metrics import predicted_cell
from .records import InferenceSettings, SegmentationPlan, VoxelSize

log = logging.getLogger(__name__)


def instance_labels(probability: np.ndarray, settings: dict | None = None) -> np.ndarray:
    """Cells as instance labels, per section: a seeded watershed on the probability.

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
    """
    settings = checked_section("segment", settings or {}, defaults("segment"))
    threshold, seed_threshold, min_size = (settings[k] for k in ("threshold", "seed_threshold", "min_size_px"))
    if not 0 <= threshold <= seed_threshold <= 1:
        raise InputError(
            f"segment thresholds must satisfy 0 <= threshold ({threshold}) <= seed_threshold ({seed_threshold}) <= 1."
        )
    if min_size < 1:
        raise InputError(f"min_size_px is {min_size}; cells have at least 1 pixel.")
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
    labels: np.ndarray, probability: np.ndarray, uncertainty: np.ndarray, threshold: float, voxel_size: VoxelSize
) -> pd.DataFrame:
    """Per section: ``cells``, ``median_cell_area_px``, ``median_cell_area_um2`` (square
    micrometres; NaN where ``voxel_size`` gives no pixel size), ``membrane_fraction``
    (probability <= threshold) and ``mean_uncertainty``: the same columns for every stack.
    Arrays (N, H, W)."""
    rows = []
    pixel_area = voxel_size.pixel_area_um2
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
    stack: np.ndarray, name: str, voxel_size: VoxelSize, model_paths: list[str | Path], slab_slices: int
) -> SegmentationPlan:
    """How a stack (N, H, W; a memory map stays on disk) is segmented: its slabs of
    ``slab_slices`` sections (each a job) and the normalisation all slabs share
    (``FoldEnsemble.intensities`` of the whole stack, in bounded memory). Raises
    ``InputError`` for a slab size under 1 or missing models."""
    if slab_slices < 1:
        raise InputError(f"segment.slab_slices is {slab_slices}; it must be at least 1.")
    count = len(stack)
    return SegmentationPlan(
        source=name,
        shape=tuple(stack.shape),
        dtype=str(stack.dtype),
        voxel_size=voxel_size,
        models=[str(p) for p in model_paths],
        normalisation=FoldEnsemble(model_paths).intensities(stack, name),
        slab_slices=slab_slices,
        slabs=[(start, min(start + slab_slices, count)) for start in range(0, count, slab_slices)],
    )


def segment_slab(
    stack: np.ndarray,
    plan: SegmentationPlan,
    slab: int,
    settings: InferenceSettings,
    labelling: dict,
    outputs: dict[str, str | Path],
) -> pd.DataFrame:
    """Segment slab ``slab`` of ``plan`` (``plan_segmentation``) with the plan's models
    and write ``outputs``: ``probability`` and ``uncertainty`` (float32 .npy, sections x H
    x W), ``labels`` (uint32 .npy, ``instance_labels`` with ``labelling``'s
    ``threshold``, ``seed_threshold`` and ``min_size_px``: the segment config) and
    ``summary`` (TSV of ``summary_table``, sections numbered in the whole stack). Returns
    the summary."""
    start, stop = plan.slabs[slab]
    ensemble = FoldEnsemble(plan.models, settings)
    probability, uncertainty = ensemble.predict_raw(
        stack[start:stop], uncertainty=True, name=plan.source, intensities=plan.normalisation
    )
    labels = instance_labels(probability, labelling)
    for key, value in (("probability", probability), ("uncertainty", uncertainty), ("labels", labels)):
        np.save(outputs[key], value)
    summary = summary_table(labels, probability, uncertainty, labelling["threshold"], plan.voxel_size)
    summary = summary.assign(section=summary.section + start)
    empty = summary.section[summary.cells == 0].tolist()
    if empty:
        log.warning(
            "slab %d: no cell found in section(s) %s: no pixel above segment.seed_threshold (%g; the highest "
            "probability there is %.3f). Lower segment.seed_threshold, or check that the stack looks like the "
            "training data.",
            slab,
            ", ".join(map(str, empty)),
            labelling["seed_threshold"],
            float(probability[[s - start for s in empty]].max()),
        )
    summary.to_csv(outputs["summary"], sep="\t", index=False, float_format="%.6g")
    log.info(
        "slab %d: sections %d to %d of %d segmented, %d cells",
        slab,
        start,
        stop - 1,
        plan.shape[0],
        int(summary.cells.sum()),
    )
    return summary


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
