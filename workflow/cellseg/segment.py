"""Segmenting new stacks with an experiment's trained fold models, without retraining.

``Segmenter`` holds the fold models of a run. ``predict`` takes a raw stack (any dtype,
as read from disk), normalises it as the models' training stack was normalised (the
method recorded in each model file), and returns the cell probability: the mean over
the fold models (each the mean over its test-time augmentations), and optionally the
standard deviation over the fold models, where they disagree. ``instance_labels`` turns
a probability map into cells that can be counted and measured.

From Python, no Snakemake involved::

    segmenter = Segmenter.from_run("results/default")
    probability, uncertainty = segmenter.predict(stack, uncertainty=True)
    labels = instance_labels(probability, threshold=0.5, seed_threshold=0.9, min_size=20)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch
from scipy import ndimage
from skimage.segmentation import watershed

from .errors import InputError
from .predict import Predictor
from .stackio import stack_on_disk
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

    def predict(self, stack: np.ndarray, uncertainty: bool = False, name: str = "the stack", intensities: dict | None = None):
        """Cell probability of a raw stack (N, H, W) or section (H, W), any dtype.

        ``intensities`` (``Segmenter.intensities`` of the whole stack) when ``stack`` is
        a slab of a larger one; by default the statistics of ``stack`` itself. Returns
        float32 in [0, 1] of the input's shape: the mean over fold models; with
        ``uncertainty``, also the standard deviation over fold models (population, 0
        with a single model), as a tuple (probability, uncertainty).
        """
        section = stack.ndim == 2
        stack = stack[None] if section else stack
        images = apply_normalisation(stack, intensities or self.intensities(stack, name))
        began = time.perf_counter()
        probability = np.empty(images.shape, np.float32)
        spread = np.empty(images.shape, np.float32) if uncertainty else None
        for index in range(len(images)):
            per_fold = np.stack([fold.predict_slice(images[index]) for fold in self.folds])
            probability[index] = per_fold.mean(axis=0)
            if uncertainty:
                spread[index] = per_fold.std(axis=0)
            rate = (time.perf_counter() - began) / (index + 1)
            log.info("segmented section %d of %d, %.2f s a section, ETA %.0f s", index + 1, len(images), rate, rate * (len(images) - index - 1))
        if section:
            probability = probability[0]
            spread = spread[0] if uncertainty else None
        return (probability, spread) if uncertainty else probability


def instance_labels(probability: np.ndarray, threshold: float = 0.5, seed_threshold: float = 0.9, min_size: int = 20) -> np.ndarray:
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
        raise InputError(f"segment thresholds must satisfy 0 <= threshold ({threshold}) <= seed_threshold ({seed_threshold}) <= 1.")
    sections = probability[None] if probability.ndim == 2 else probability
    labels = np.zeros(sections.shape, np.uint32)
    four = ndimage.generate_binary_structure(2, 1)
    for index, section in enumerate(sections):
        seeds, count = ndimage.label(section > seed_threshold, structure=four)
        sizes = np.bincount(seeds.ravel(), minlength=count + 1)
        seeds[sizes[seeds] < min_size] = 0
        flooded = watershed(1 - section, markers=seeds, mask=section > threshold, connectivity=1)
        sizes = np.bincount(flooded.ravel())
        flooded[sizes[flooded] < min_size] = 0
        # Number the surviving cells 1.. in order of appearance.
        kept = np.unique(flooded[flooded > 0])
        relabel = np.zeros(int(flooded.max()) + 1, np.uint32)
        relabel[kept] = np.arange(1, len(kept) + 1, dtype=np.uint32)
        labels[index] = relabel[flooded]
    return labels[0] if probability.ndim == 2 else labels


def summary_table(labels: np.ndarray, probability: np.ndarray, uncertainty: np.ndarray, threshold: float, voxel_size: dict | None) -> pd.DataFrame:
    """Per section: ``cells``, ``median_cell_area_px`` (and in square units where the
    pixel size is known), ``membrane_fraction`` (probability <= threshold) and
    ``mean_uncertainty``. Arrays (N, H, W)."""
    rows = []
    pixel_area = None
    if voxel_size and voxel_size.get("x") and voxel_size.get("y"):
        pixel_area = voxel_size["x"] * voxel_size["y"]
    for index in range(len(labels)):
        areas = np.bincount(labels[index].ravel())[1:]
        areas = areas[areas > 0]
        median = float(np.median(areas)) if len(areas) else float("nan")
        row = {"section": index, "cells": len(areas), "median_cell_area_px": median}
        if pixel_area is not None:
            row[f"median_cell_area_{voxel_size['unit']}2"] = median * pixel_area
        row["membrane_fraction"] = float((probability[index] <= threshold).mean())
        row["mean_uncertainty"] = float(uncertainty[index].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def segment_stack(
    stack: np.ndarray, name: str, voxel_size: dict, model_paths: list[str | Path], predict_config: dict,
    segment_config: dict, outputs: dict[str, str | Path],
) -> pd.DataFrame:
    """Segment a raw stack (N, H, W; a memory map stays on disk) with the fold models,
    ``segment_config['slab_slices']`` sections at a time, and write ``outputs`` as each
    slab is done: ``probability`` and ``uncertainty`` (float32, calibrated ImageJ
    hyperstacks, 0-1), ``labels`` (uint32 instance labels, OME-TIFF) and ``summary``
    (TSV, ``summary_table``). Memory holds one slab and its results, whatever the stack's
    length. ``segment_config`` also holds ``threshold``, ``seed_threshold`` and
    ``min_size_px``. Returns the summary."""
    slab = segment_config["slab_slices"]
    if slab < 1:
        raise InputError(f"segment.slab_slices is {slab}; it must be at least 1.")
    segmenter = Segmenter(model_paths, predict_config)
    intensities = segmenter.intensities(stack, name)
    shape = stack.shape
    for key, dtype, display in (("probability", np.float32, (0.0, 1.0)), ("uncertainty", np.float32, (0.0, 0.5)),
                                ("labels", np.uint32, None)):
        stack_on_disk(outputs[key], shape, dtype, voxel_size, display).flush()
    tables = []
    for start in range(0, len(stack), slab):
        stop = min(start + slab, len(stack))
        probability, uncertainty = segmenter.predict(stack[start:stop], uncertainty=True, name=name, intensities=intensities)
        labels = instance_labels(
            probability, segment_config["threshold"], segment_config["seed_threshold"], segment_config["min_size_px"]
        )
        for key, value in (("probability", probability), ("uncertainty", uncertainty), ("labels", labels)):
            # Mapped for this slab only: written pages leave the process with the mapping.
            output = tifffile.memmap(outputs[key], mode="r+")
            output[start:stop] = value
            output.flush()
            del output
        table = summary_table(labels, probability, uncertainty, segment_config["threshold"], voxel_size)
        tables.append(table.assign(section=table.section + start))
        log.info("slab of sections %d to %d of %d written", start, stop - 1, len(stack))
    summary = pd.concat(tables, ignore_index=True)
    summary.to_csv(outputs["summary"], sep="\t", index=False, float_format="%.6g")
    log.info("segmented %s: %d sections, %d cells, median %.0f cells a section", name, len(labels),
             int(summary.cells.sum()), float(summary.cells.median()))
    return summary
