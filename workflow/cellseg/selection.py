"""The held-out slices' cells, each fold's agglomeration threshold chosen without them.

For ``segment.method`` agglomerate or mutex with ``segment.merge_threshold: auto``, every
held-out slice is segmented at every candidate threshold (``segment.merge_candidates``)
and scored (``evaluate.cell_scores``). Fold k's slices are then segmented at the
candidate of the highest mean V_Rand of the cells over the *other* folds' held-out
slices, so no slice is scored at a threshold chosen on it; a run of one fold has no
other folds and uses its own slices, which the table says. The stacks a run segments
later (its test volume, ``segment.stacks``) get the candidate best over all held-out
slices. A fixed ``merge_threshold`` is used as it is; the watershed has none.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from .cells import (
    MERGING,
    CellRecipe,
    agglomerations,
    cells,
    check_settings,
    finished,
    mutex_watershed,
    nearest_affinities,
    nearest_of,
)
from .config import defaults
from .errors import InputError
from .evaluate import cell_scores
from .folds import held_out_slices, read_folds
from .layout import AFFINITIES_SUFFIX, CELL_THRESHOLDS, RUN, model_files, slice_file
from .model import affinity_offsets

log = logging.getLogger(__name__)

# The row of the thresholds table that stacks segmented after training use.
ALL_FOLDS = "all"


def read_held_out(directory: str | Path, index: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Held-out slice ``index``'s cell probability (H, W) and, where the network predicts
    them, its affinities (C, H, W) (None otherwise), from a fold's prediction directory."""
    directory = Path(directory)
    probability = tifffile.imread(directory / slice_file(index))
    path = directory / slice_file(index, AFFINITIES_SUFFIX)
    return probability, (tifffile.imread(path) if path.exists() else None)


def candidate_segments(
    probability: np.ndarray, affinities: np.ndarray | None, offsets: list, settings: dict
) -> list[tuple[float, np.ndarray]]:
    """The slice's segments at every candidate of ``settings['merge_candidates']``,
    ascending (agglomerate: one pass of waterz through all of them)."""
    candidates = sorted(settings["merge_candidates"])
    if settings["method"] == "agglomerate":
        nearest = nearest_affinities(probability) if affinities is None else nearest_of(affinities, offsets)
        made = agglomerations(nearest, candidates)
    else:
        made = (mutex_watershed(affinities, offsets, candidate) for candidate in candidates)
    return list(zip(candidates, made, strict=True))


def sweep_row(probability, affinities, offsets, settings, labels) -> list[dict]:
    """``cell_scores`` of one slice's cells at every candidate threshold, each a row."""
    return [
        {"merge_threshold": candidate, **cell_scores(finished(segments, probability, settings), labels)}
        for candidate, segments in candidate_segments(probability, affinities, offsets, settings)
    ]


def choose(sweep: pd.DataFrame, folds: list[int]) -> pd.DataFrame:
    """Per fold (and ``ALL_FOLDS``): the candidate of the highest mean ``cells_v_rand``
    over the other folds' slices of ``sweep`` (the first on ties), its mean there, and how
    it was chosen."""
    rows = []
    for fold in [*folds, ALL_FOLDS]:
        if fold == ALL_FOLDS:
            chosen_on, how = sweep, "the candidate best on every held-out slice (for stacks segmented later)"
        elif len(folds) > 1:
            chosen_on, how = sweep[sweep.fold != fold], "the candidate best on the other folds' held-out slices"
        else:
            chosen_on, how = sweep, "the candidate best on the fold's own held-out slices (one fold: it flatters)"
        means = chosen_on.groupby("merge_threshold")["cells_v_rand"].mean()
        if means.notna().any():
            best = float(means.idxmax())
        else:  # no slice with dense labels: nothing to choose by
            best, how = float(means.index[len(means) // 2]), "the middle candidate: no held-out slice scores cells"
        rows.append(
            {
                "fold": fold,
                "merge_threshold": best,
                "selection_v_rand": float(means.get(best, np.nan)),
                "selection_slices": int(chosen_on.slice.nunique()),
                "chosen_by": how,
            }
        )
    return pd.DataFrame(rows)


def segment_held_out(
    folds_path: str | Path,
    prediction_dirs: dict[int, str | Path],
    labels: np.ndarray,
    settings: dict,
    offsets: list,
    output_dirs: dict[int, str | Path],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the cells (uint32 TIFF, ``layout.slice_file``) of each fold's held-out slices
    into ``output_dirs[k]``, and return the thresholds table (``choose``; one row per
    fold and ``ALL_FOLDS``: ``fold``, ``method``, ``merge_threshold``,
    ``selection_v_rand``, ``selection_slices``, ``chosen_by``) and the sweep (a row per
    slice and candidate; empty without one).

    ``prediction_dirs[k]``: fold k's held-out predictions (``read_held_out``);
    ``labels`` (N, H, W) 1 = cell; ``settings`` the segment section; ``offsets`` the
    model's affinity offsets.
    """
    settings = check_settings(settings)
    table = read_folds(folds_path)
    folds = sorted(prediction_dirs)
    slices = {fold: held_out_slices(table, fold) for fold in folds}
    method, fixed = settings["method"], settings["merge_threshold"]
    sweep = pd.DataFrame(columns=["slice", "fold", "merge_threshold", "cells_v_rand"])
    if method in MERGING and fixed == "auto":
        rows = []
        for fold in folds:
            for index in slices[fold]:
                probability, affinities = read_held_out(prediction_dirs[fold], index)
                for row in sweep_row(probability, affinities, offsets, settings, labels[index]):
                    rows.append({"slice": index, "fold": fold, **row})
            log.info(
                "fold %d: %d held-out slices segmented at %d candidate thresholds",
                fold,
                len(slices[fold]),
                len(settings["merge_candidates"]),
            )
        sweep = pd.DataFrame(rows)
        thresholds = choose(sweep, folds)
    else:
        how = "segment.merge_threshold, fixed" if method in MERGING else "none: the watershed has no merge threshold"
        value = float(fixed) if method in MERGING else np.nan
        thresholds = pd.DataFrame(
            [
                {
                    "fold": fold,
                    "merge_threshold": value,
                    "selection_v_rand": np.nan,
                    "selection_slices": 0,
                    "chosen_by": how,
                }
                for fold in [*folds, ALL_FOLDS]
            ]
        )
    thresholds.insert(1, "method", method)
    by_fold = thresholds.set_index("fold").merge_threshold
    for fold in folds:
        output = Path(output_dirs[fold])
        output.mkdir(parents=True, exist_ok=True)
        for index in slices[fold]:
            probability, affinities = read_held_out(prediction_dirs[fold], index)
            segments = cells(probability, affinities, offsets, settings, float(by_fold[fold]))
            tifffile.imwrite(output / slice_file(index), segments, photometric="minisblack", compression="zlib")
        log.info(
            "fold %d: cells of %d held-out slices by %s at merge threshold %g",
            fold,
            len(slices[fold]),
            method,
            by_fold[fold],
        )
    return thresholds, sweep


def stack_threshold(path: str | Path) -> float:
    """The merge threshold for stacks segmented after training: the ``ALL_FOLDS`` row of
    a thresholds table (``segment_held_out``); 0 for the watershed, which has none."""
    table = pd.read_csv(path, sep="\t", dtype={"fold": str})
    value = float(table.set_index("fold").loc[ALL_FOLDS, "merge_threshold"])
    return 0.0 if np.isnan(value) else value


def run_recipe(run_dir: str | Path, settings: dict | None = None) -> CellRecipe:
    """How the run in ``run_dir`` (``results/<experiment>``) makes cells: its segment
    settings (``settings`` overrides some of them), its models' offsets and the merge
    threshold chosen on its held-out slices (``metrics/cell_thresholds.tsv``; the
    override's own ``merge_threshold`` when it gives a number). Raises ``InputError``
    for a run without models or thresholds table."""
    run_dir = Path(run_dir)
    models = model_files(run_dir)
    table = run_dir / CELL_THRESHOLDS.removeprefix(RUN + "/")
    if not models or not table.is_file():
        raise InputError(f"{run_dir} holds no trained models or no {table.name}; run its experiment first.")
    record = json.loads(models[0].with_suffix(".json").read_text())
    chosen = {**record["config"]["segment"], **(settings or {})}
    merge = chosen["merge_threshold"]
    threshold = stack_threshold(table) if merge == "auto" else float(merge)
    keys = {key: chosen[key] for key in chosen if key in defaults("segment")}
    return CellRecipe(keys, affinity_offsets(record["model"]), threshold)
