"""Segmenting new stacks with an experiment's trained fold models, without retraining.

The pipeline segments a stack in slabs, each a job: ``plan_segmentation`` divides it
and fixes the normalisation all slabs share, ``segment_slab`` predicts one slab with the
fold ensemble (``inference.FoldEnsemble``) and turns its outputs into cells by the run's
segment method (``cells.CellRecipe``); ``stackio.write_tiff_stacks`` and
``stackio.write_ome_zarr`` write the slabs as one stack and ``gather_summary`` joins
their summaries.

From Python, no Snakemake involved::

    ensemble = FoldEnsemble.from_run("results/default")
    outputs, uncertainty = ensemble.predict_raw(stack, uncertainty=True)
    labels = run_recipe("results/default").of(outputs)  # the run's method and threshold
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .cells import CellRecipe
from .errors import InputError
from .inference import FoldEnsemble, split_outputs
from .records import InferenceSettings, SegmentationPlan, VoxelSize

log = logging.getLogger(__name__)


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
    stack: np.ndarray,
    name: str,
    voxel_size: VoxelSize,
    model_paths: list[str | Path],
    slab_slices: int,
    settings: InferenceSettings | dict | None = None,
) -> SegmentationPlan:
    """How a stack (N, H, W; a memory map stays on disk) is segmented: its slabs of
    ``slab_slices`` sections (each a job), the normalisation all slabs share
    (``FoldEnsemble.intensities`` of the whole stack, in bounded memory), how its
    pixel size meets the models' (``FoldEnsemble.pixel_zoom`` with ``settings``, the
    predict section) and the warnings of both checks (``FoldEnsemble.check_intensities``:
    a stack unlike the training data). Raises ``InputError`` for a slab size under 1 or
    missing models."""
    if slab_slices < 1:
        raise InputError(f"segment.slab_slices is {slab_slices}; it must be at least 1.")
    count = len(stack)
    ensemble = FoldEnsemble(model_paths, settings)
    normalisation = ensemble.intensities(stack, name)
    scale = ensemble.pixel_zoom(voxel_size, name)
    warnings = ensemble.check_intensities(normalisation, name) + ([scale.note] if scale.warning else [])
    return SegmentationPlan(
        source=name,
        shape=tuple(stack.shape),
        dtype=str(stack.dtype),
        voxel_size=voxel_size,
        models=[str(p) for p in model_paths],
        normalisation=normalisation,
        slab_slices=slab_slices,
        slabs=[(start, min(start + slab_slices, count)) for start in range(0, count, slab_slices)],
        zoom=scale.zoom,
        scale=scale.note,
        warnings=warnings,
    )


def segment_slab(
    stack: np.ndarray,
    plan: SegmentationPlan,
    slab: int,
    settings: InferenceSettings,
    recipe: CellRecipe,
    outputs: dict[str, str | Path],
) -> pd.DataFrame:
    """Segment slab ``slab`` of ``plan`` (``plan_segmentation``) with the plan's models
    and write ``outputs``: ``probability`` and ``uncertainty`` (float32 .npy, sections x H
    x W), ``labels`` (uint32 .npy, the cells ``recipe`` makes: the run's segment method,
    settings and merge threshold, at the models' pixel size where the plan says so) and
    ``summary`` (TSV of ``summary_table``, sections numbered in the whole stack). 2.5-D
    networks read the slab's neighbouring sections too. Returns the summary."""
    start, stop = plan.slabs[slab]
    ensemble = FoldEnsemble(plan.models, settings)
    low, high = max(start - ensemble.context, 0), min(stop + ensemble.context, plan.shape[0])
    mean, spread = ensemble.predict_raw(
        stack[low:high],
        uncertainty=True,
        name=plan.source,
        intensities=plan.normalisation,
        indices=list(range(start - low, stop - low)),
        zoom=plan.zoom,
    )
    probability, uncertainty = (split_outputs(part, ensemble.offsets)[0] for part in (mean, spread))
    labels = recipe.of(mean, plan.zoom)
    for key, value in (("probability", probability), ("uncertainty", uncertainty), ("labels", labels)):
        np.save(outputs[key], value)
    threshold = recipe.settings["threshold"]
    summary = summary_table(labels, probability, uncertainty, threshold, plan.voxel_size)
    summary = summary.assign(section=summary.section + start)
    empty = summary.section[summary.cells == 0].tolist()
    if empty:
        log.warning(
            "slab %d: no cell found in section(s) %s (the highest cell probability there is %.3f; cells need "
            "pixels above segment.threshold, %g, and for the watershed above segment.seed_threshold, %g). "
            "Check that the stack looks like the training data.",
            slab,
            ", ".join(map(str, empty)),
            float(probability[[s - start for s in empty]].max()),
            threshold,
            recipe.settings["seed_threshold"],
        )
    summary.to_csv(outputs["summary"], sep="\t", index=False, float_format="%.6g")
    log.info(
        "slab %d: sections %d to %d of %d segmented by %s, %d cells",
        slab,
        start,
        stop - 1,
        plan.shape[0],
        recipe.settings["method"],
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
