"""Evaluation of held-out predictions: per-slice scores, per-fold and summary tables.

Per slice: the pixel scores of ``metrics.scores_from_counts`` (both classes, the misclassified
fraction) at ``eval.threshold``; the challenge's pixel error (1 - F-score of the cell
class) and its V_Rand and V_Info after thinning (``challenge``), each at the threshold of
the challenge's sweep that is best over all held-out slices; and
scikit-image's adapted Rand error and variation of information at ``eval.threshold``,
computed between the 4-connected cell components of the labels and of the thresholded
prediction (membrane pixels of the labels are ignored, as skimage's
``ignore_labels=(0,)`` does).

Degenerate ground truth: a slice whose labels hold fewer than two cell segments (one
connected "cell" that fills the slice around its membrane, as inverted labels give, or
no cell at all) has nothing to split or merge, and every proposal would score (near)
perfect on it. Its segment scores are undefined: NaN in the tables (``truth_segments``
says why), left out of means, and listed in ``warnings.tsv`` with every other result
that is not what it seems (``result_warnings``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import stats
from skimage.metrics import adapted_rand_error, variation_of_information

from .challenge import (
    cell_components,
    challenge_pixel_error,
    foreground_restricted_scores,
    thin_boundaries,
    threshold_sweep,
)
from .folds import held_out_slices, read_folds
from .layout import slice_file
from .metrics import confusion_counts, labelled, predicted_cell, scores_from_counts
from .scores import (
    BY_NAME,
    CELLS_COLUMNS,
    CHALLENGE_SCORES,
    COUNT_COLUMNS,
    SCORE_COLUMNS,
    SEGMENT_COLUMNS,
    SKIMAGE_COLUMNS,
)

log = logging.getLogger(__name__)

# A fold whose predictions hold less than this fraction of the truth's share of a class
# has (almost) stopped predicting that class.
ONE_CLASS_FRACTION = 0.1
# A slice whose membrane Dice lies below its fold's median by this much, or by three
# median absolute deviations of the fold where its slices spread more, is called out.
SLICE_WORSE_BY = 0.1


def segment_scores(probability: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """skimage's adapted Rand error and variation of information (split, merge); NaN
    when the truth has fewer than two cell segments (undefined, see the module) or is
    sparse (``metrics.labelled``: its cells cannot be told apart)."""
    truth = cell_components(labels == 1)
    if truth.max() < 2 or labelled(labels) is not None:
        return dict.fromkeys(SKIMAGE_COLUMNS, np.nan)
    proposal = cell_components(predicted_cell(probability, threshold))
    error, _, _ = adapted_rand_error(truth, proposal, ignore_labels=(0,))
    split, merge = variation_of_information(truth, proposal, ignore_labels=(0,))
    return {
        "skimage_adapted_rand_error": float(error),
        "skimage_vi_split": float(split),
        "skimage_vi_merge": float(merge),
    }


def segment_interiors(segments: np.ndarray) -> np.ndarray:
    """A segmentation (H, W) as the challenge's binary proposal: True inside a segment,
    False on its boundary (label 0, or a pixel with a 4-neighbour of another label)."""
    inside = segments > 0
    inside[1:] &= segments[1:] == segments[:-1]
    inside[:-1] &= segments[:-1] == segments[1:]
    inside[:, 1:] &= segments[:, 1:] == segments[:, :-1]
    inside[:, :-1] &= segments[:, :-1] == segments[:, 1:]
    return inside


def cell_scores(segments: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The ``cells`` family of one slice: instance labels ``segments`` (H, W; 0 = boundary)
    against the 4-connected cells of ``labels`` (H, W; 1 = cell).

    ``cells_v_rand`` and ``cells_v_info``: the challenge's protocol for a binary proposal
    (``segment_interiors``: every boundary 0, every segment's inside 1), its boundaries
    thinned (``challenge.thin_boundaries``) and scored over the true cell pixels; the
    adapted Rand error and VI split and merge: scikit-image's, of the segments themselves,
    the membrane of the labels ignored. All NaN when the truth has fewer than two cells
    (undefined, see the module) or is sparse."""
    truth = cell_components(labels == 1)
    if truth.max() < 2 or labelled(labels) is not None:
        return dict.fromkeys(CELLS_COLUMNS, np.nan)
    thinned = foreground_restricted_scores(truth, thin_boundaries(segment_interiors(segments)))
    error, _, _ = adapted_rand_error(truth, segments.astype(np.int64), ignore_labels=(0,))
    split, merge = variation_of_information(truth, segments.astype(np.int64), ignore_labels=(0,))
    return {
        "cells_v_rand": thinned["v_rand"],
        "cells_v_info": thinned["v_info"],
        "cells_adapted_rand_error": float(error),
        "cells_vi_split": float(split),
        "cells_vi_merge": float(merge),
    }


def split_merge_masks(segments: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the segments (H, W; 0 = boundary) split or merge the true cells of
    ``labels`` (H, W; 1 = cell; their 4-connected components), two boolean (H, W) masks.

    Split: pixels of a true cell lying in a segment other than the one holding most of
    that cell. Merged: pixels of a segment lying in a true cell other than the one filling
    most of that segment (a cell joined to it). Boundary pixels of either count in neither.
    """
    truth = cell_components(labels == 1).astype(np.int64)
    segments = np.asarray(segments, np.int64)
    both = (truth > 0) & (segments > 0)
    pairs, counts = np.unique(np.stack([truth[both], segments[both]]), axis=1, return_counts=True)

    def dominant(keys: np.ndarray, values: np.ndarray) -> dict[int, int]:
        order = np.lexsort((-counts, keys))  # the largest count first within each key
        first = np.unique(keys[order], return_index=True)[1]
        return dict(zip(keys[order][first].tolist(), values[order][first].tolist(), strict=True))

    segment_of = dominant(pairs[0], pairs[1])
    cell_of = dominant(pairs[1], pairs[0])
    lookup_segment = np.zeros(int(truth.max()) + 1, np.int64)
    lookup_segment[list(segment_of)] = list(segment_of.values())
    lookup_cell = np.zeros(int(segments.max()) + 1, np.int64)
    lookup_cell[list(cell_of)] = list(cell_of.values())
    split = both & (lookup_segment[truth] != segments)
    merged = both & (lookup_cell[segments] != truth)
    return split, merged


def slice_row(probability: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Every per-slice score, and the cell confusion counts (for pooled scores): pixel
    scores of the labelled pixels; ``truth_segments`` NaN for sparse labels (the segment
    scores need dense ones)."""
    mask = labelled(labels)
    counts = confusion_counts(predicted_cell(probability, threshold), labels == 1, mask)
    return {
        "truth_segments": int(cell_components(labels == 1).max()) if mask is None else np.nan,
        **scores_from_counts(**counts),
        **segment_scores(probability, labels, threshold),
        **{f"cell_{k}": v for k, v in counts.items()},
    }


def evaluate_held_out(
    folds_path: str | Path,
    prediction_dirs: dict[int, str | Path],
    labels: np.ndarray,
    threshold: float,
    cell_dirs: dict[int, str | Path] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """per_slice table of every held-out slice (``slice``, ``fold`` and every score) and
    the challenge's threshold table (``challenge_table``).

    ``prediction_dirs[k]`` holds fold k's probability maps (``layout.slice_file``) and
    ``cell_dirs[k]`` its instance labels (``selection.segment_held_out``; without them the
    ``cells`` scores are NaN); the folds given are scored (all of them in the pipeline,
    one in a benchmark). Raises ``ValueError`` for a fold that ``folds_path`` does not have.
    """
    table = read_folds(folds_path)
    unknown = sorted(set(prediction_dirs) - set(table.fold))
    if unknown:
        raise ValueError(f"predictions of folds {unknown}, which {folds_path} does not have")
    rows, sweeps = [], []
    for fold, directory in sorted(prediction_dirs.items()):
        for index in held_out_slices(table, fold):
            path = Path(directory) / slice_file(index)
            probability = tifffile.imread(path)
            if probability.shape != labels[index].shape:
                raise ValueError(f"{path} has shape {probability.shape}, its labels {labels[index].shape}")
            row = slice_row(probability, labels[index], threshold)
            if cell_dirs:
                row |= cell_scores(tifffile.imread(Path(cell_dirs[fold]) / slice_file(index)), labels[index])
            else:
                row |= dict.fromkeys(CELLS_COLUMNS, np.nan)
            rows.append({"slice": index, "fold": fold, **row})
            sweep_rows = threshold_sweep(probability, labels[index])
            if not row["truth_segments"] >= 2:  # the pixel error's counts stay (NaN: sparse)
                sweep_rows = [{**r, **dict.fromkeys(CHALLENGE_SCORES, np.nan)} for r in sweep_rows]
            sweeps += [{"slice": index, "fold": fold, **r} for r in sweep_rows]
        log.info("scored fold %d", fold)
    per_slice = pd.DataFrame(rows).sort_values("slice", ignore_index=True)
    sweep = pd.DataFrame(sweeps)
    thresholds = challenge_table(sweep)
    best = thresholds.loc[thresholds["best_challenge_pixel_error"], "threshold"].iloc[0]
    at_best = sweep[sweep.threshold == best].set_index("slice")
    per_slice.insert(
        per_slice.columns.get_loc("skimage_adapted_rand_error"),
        "challenge_pixel_error",
        [challenge_pixel_error(*at_best.loc[index, ["tp", "fp", "fn"]]) for index in per_slice.slice],
    )
    for score in CHALLENGE_SCORES:
        if not thresholds[f"best_{score}"].any():  # every slice degenerate
            per_slice.insert(per_slice.columns.get_loc("skimage_adapted_rand_error"), f"{score}_thinned", np.nan)
            continue
        best = thresholds.loc[thresholds[f"best_{score}"], "threshold"].iloc[0]
        at_best = sweep[sweep.threshold == best].set_index("slice")[score]
        per_slice.insert(
            per_slice.columns.get_loc("skimage_adapted_rand_error"),
            f"{score}_thinned",
            per_slice.slice.map(at_best).to_numpy(),
        )
    per_slice = per_slice[["slice", "fold", "truth_segments", *SCORE_COLUMNS, *COUNT_COLUMNS]]
    log.info("scored %d held-out slices of %d folds at threshold %g", len(per_slice), len(prediction_dirs), threshold)
    return per_slice, thresholds


def challenge_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per challenge threshold: mean V_Rand and V_Info over slices, and the pixel error of
    the cell counts summed over all slices (Fiji's ``PixelError`` on the held-out slices
    as one stack); the best of each marked (the first, on ties, as Fiji's strict ``>``
    keeps it).

    ``sweep``: the rows of ``challenge.threshold_sweep`` of every slice.
    """
    grouped = sweep.groupby("threshold", sort=True)
    table = grouped[list(CHALLENGE_SCORES)].mean()
    counts = grouped[["tp", "fp", "fn"]].sum()
    table.insert(0, "challenge_pixel_error", [challenge_pixel_error(*row) for row in counts.itertuples(index=False)])
    table = table.reset_index()
    table["best_challenge_pixel_error"] = table.index == np.argmin(table["challenge_pixel_error"].to_numpy())
    for score in CHALLENGE_SCORES:
        values = table[score].to_numpy()
        table[f"best_{score}"] = (table.index == np.nanargmax(values)) if np.isfinite(values).any() else False
    return table


def per_fold_table(per_slice: pd.DataFrame) -> pd.DataFrame:
    """Mean of each score over each fold's slices, with the number of slices."""
    scores = per_slice.groupby("fold")[SCORE_COLUMNS].mean()
    scores.insert(0, "slices", per_slice.groupby("fold").size())
    return scores.reset_index()


def pooled_scores(per_slice: pd.DataFrame) -> dict[str, float]:
    """Pixel scores from the confusion counts summed over all slices (micro-average)."""
    tp, fp, fn, tn = (int(per_slice[c].sum()) for c in COUNT_COLUMNS)
    pooled = scores_from_counts(tp, fp, fn, tn)
    pooled |= {c: float(per_slice[c].mean()) for c in SEGMENT_COLUMNS}  # NaN skipped
    return pooled


def summary_table(per_slice: pd.DataFrame) -> pd.DataFrame:
    """One row per score: mean, standard deviation and 95 % interval over folds, pooled.

    The interval is Student's t over the fold means (k - 1 degrees of freedom), cut to
    the score's range: over few folds it can run past 0 or 1 (seen: membrane Dice -0.16
    to 0.62 over 5 folds), values no score takes. With a single fold it is that fold's
    value. ``pooled`` sums the confusion counts of every slice for the pixel scores and
    averages the segment scores over slices.
    """
    folds = per_fold_table(per_slice)
    pooled = pooled_scores(per_slice)
    rows = []
    for column in SCORE_COLUMNS:
        values = folds[column].to_numpy(dtype=float)
        values = values[np.isfinite(values)]  # a fold of only degenerate slices has none
        count = len(values)
        mean = float(values.mean()) if count else np.nan
        sd = float(values.std(ddof=1)) if count > 1 else 0.0
        half = float(stats.t.ppf(0.975, count - 1) * sd / np.sqrt(count)) if count > 1 else 0.0
        rows.append(
            {
                "metric": column,
                "mean": mean,
                "sd": sd,
                "ci95_low": max(mean - half, 0.0),
                "ci95_high": mean + half if BY_NAME[column].upper is None else min(mean + half, BY_NAME[column].upper),
                "pooled": pooled[column],
                "folds": count,
            }
        )
    return pd.DataFrame(rows)


def result_warnings(per_slice: pd.DataFrame, threshold: float, held_out: int | None = None) -> pd.DataFrame:
    """Results that are not what they seem, one row each (``fold``, ``slice``, empty for
    a whole fold or run, and ``message``): fewer scored slices than the ``held_out``
    slices of the folds; sparsely labelled slices (``truth_segments`` NaN: their segment
    scores are n/a); slices whose truth has fewer than two cell segments (their
    segment scores are undefined, so the means count fewer slices); slices whose
    membrane Dice lies below their fold's median by ``SLICE_WORSE_BY`` or three median
    absolute deviations of the fold, whichever is more (an outlier of its fold, not a
    fold whose slices all spread widely); and folds whose
    held-out predictions hold under ``ONE_CLASS_FRACTION`` of the truth's share of a
    class (a model that predicts (almost) one class: its cell Dice can look fine while
    it finds no membrane)."""
    rows = []
    if held_out is not None and len(per_slice) < held_out:
        rows.append(
            {
                "fold": pd.NA,
                "slice": pd.NA,
                "message": (
                    f"the scores are of {len(per_slice)} held-out slices, fewer than the {held_out} that the folds "
                    "hold out: the means leave the others out."
                ),
            }
        )
    for record in per_slice.itertuples():
        if pd.isna(record.truth_segments):
            rows.append(
                {
                    "fold": record.fold,
                    "slice": record.slice,
                    "message": (
                        f"slice {record.slice} is sparsely labelled (some of its pixels are unlabelled, "
                        "data.unlabelled_value): its pixel scores are of the labelled pixels; its cells cannot be "
                        "told apart, so its V_Rand, V_Info, skimage and cells scores are n/a and left out of the "
                        "means. Label some slices densely to score the cells."
                    ),
                }
            )
        elif record.truth_segments < 2:
            rows.append(
                {
                    "fold": record.fold,
                    "slice": record.slice,
                    "message": (
                        f"slice {record.slice}: its ground truth has {record.truth_segments} cell "
                        "segment(s), so it has nothing to split or merge; its V_Rand, V_Info and "
                        "skimage scores are undefined (n/a) and left out of the means. Inverted labels "
                        "(membrane stored as cell) look like this."
                    ),
                }
            )
    for fold, slices in per_slice.groupby("fold"):
        median = slices.membrane_dice.median()
        margin = max(SLICE_WORSE_BY, 3 * (slices.membrane_dice - median).abs().median())
        for record in slices[slices.membrane_dice < median - margin].itertuples():
            rows.append(
                {
                    "fold": fold,
                    "slice": record.slice,
                    "message": (
                        f"slice {record.slice}: membrane Dice {record.membrane_dice:.3f}, "
                        f"{median - record.membrane_dice:.3f} below its fold's median ({median:.3f}); "
                        f"fold {fold}'s mean hides it."
                    ),
                }
            )
        tp, fp, fn, tn = (int(slices[c].sum()) for c in COUNT_COLUMNS)
        total = tp + fp + fn + tn
        for name, truth, predicted in (("membrane", tn + fp, tn + fn), ("cell", tp + fn, tp + fp)):
            if truth and predicted < ONE_CLASS_FRACTION * truth:
                rows.append(
                    {
                        "fold": fold,
                        "slice": pd.NA,
                        "message": (
                            f"fold {fold} predicts {100 * predicted / total:.2f} % of its held-out pixels as "
                            f"{name} (probability {'<=' if name == 'membrane' else '>'} {threshold:g}) "
                            "where the truth has "
                            f"{100 * truth / total:.1f} %: the model predicts (almost) one class, and scores of "
                            "the other class mean little."
                        ),
                    }
                )
    table = pd.DataFrame(rows, columns=["fold", "slice", "message"]).astype({"slice": "Int64"})
    for message in table.message:
        log.warning("%s", message)
    return table
