"""Evaluation: skimage segment scores on hand-made cases, tables, intervals, pooling."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import stats

from cellseg.challenge import threshold_sweep
from cellseg.evaluate import evaluate_held_out, per_fold_table, result_warnings, segment_scores, summary_table
from cellseg.scores import PIXEL_COLUMNS, SEGMENT_COLUMNS, SKIMAGE_COLUMNS, UNBOUNDED_ABOVE
from cellseg.selection import segment_held_out

# Two cells side by side, separated by a vertical membrane line at column 4.
TWO_CELLS = np.ones((6, 9), np.uint8)
TWO_CELLS[:, 4] = 0


def test_a_perfect_prediction_has_no_split_or_merge():
    scores = segment_scores(TWO_CELLS.astype(float), TWO_CELLS, 0.5)
    assert scores == {"skimage_adapted_rand_error": 0.0, "skimage_vi_split": 0.0, "skimage_vi_merge": 0.0}


def test_merged_cells_are_a_merge_and_a_split_cell_a_split():
    merged = np.ones_like(TWO_CELLS, dtype=float)  # membrane missed: one component
    scores = segment_scores(merged, TWO_CELLS, 0.5)
    # skimage counts in bits: merging two equal cells loses exactly one bit.
    assert scores["skimage_vi_merge"] == pytest.approx(1.0) and scores["skimage_vi_split"] == 0
    assert scores["skimage_adapted_rand_error"] > 0.3
    split = TWO_CELLS.astype(float)
    split[2, :] = 0  # an extra membrane across both cells: four components
    scores = segment_scores(split, TWO_CELLS, 0.5)
    # The new membrane row is one proposal segment spanning both cells, a small merge.
    assert scores["skimage_vi_split"] > 1.0 and scores["skimage_vi_merge"] < 0.25


@pytest.mark.parametrize("cells", [0, 1])
def test_truth_of_fewer_than_two_segments_scores_undefined_not_perfect(cells):
    labels = np.zeros((5, 5), np.uint8)
    labels[1:4, 1:4] = cells
    scores = segment_scores(labels.astype(float), labels, 0.5)  # a "perfect" prediction
    assert all(np.isnan(v) for v in scores.values()) and set(scores) == set(SKIMAGE_COLUMNS)


def test_inverted_labels_are_flagged_not_scored_perfect(tmp_path):
    """Membrane stored as cell: the "cells" form one network per slice, so V_Rand and
    V_Info would be a perfect 1.000 for a model that learned it."""
    membrane = np.zeros((2, 24, 24), np.uint8)
    membrane[:, ::8, :] = membrane[:, :, ::8] = 1
    inverted = membrane  # 1 = "cell" is really the membrane network
    pd.DataFrame({"slice": [0, 1], "fold": [0, 1]}).to_csv(tmp_path / "folds.tsv", sep="\t", index=False)
    for fold in (0, 1):
        (tmp_path / f"fold{fold}").mkdir()
        tifffile.imwrite(tmp_path / f"fold{fold}/slice_{fold:03d}.tif", inverted[fold].astype(np.float32))
    per_slice, thresholds = evaluate_held_out(
        tmp_path / "folds.tsv", {0: tmp_path / "fold0", 1: tmp_path / "fold1"}, inverted, 0.5
    )
    assert per_slice.truth_segments.tolist() == [1, 1]
    undefined = ["v_rand_thinned", "v_info_thinned", *SKIMAGE_COLUMNS]
    assert per_slice[undefined].isna().all().all() and thresholds[["v_rand", "v_info"]].isna().all().all()
    assert per_slice.challenge_pixel_error.tolist() == [0.0, 0.0]  # counts are defined: the "cells" are found
    summary = summary_table(per_slice).set_index("metric")
    assert np.isnan(summary.loc["v_rand_thinned", "mean"]) and summary.loc["cell_dice", "mean"] == 1.0
    warnings = result_warnings(per_slice, 0.5)
    assert warnings.slice.tolist() == [0, 1] and "1 cell segment(s)" in warnings.message[0]


def test_a_fold_predicting_almost_no_membrane_is_warned_about():
    counts = {"cell_tp": [780, 780], "cell_fp": [215, 10], "cell_fn": [0, 0], "cell_tn": [5, 210]}
    per_slice = pd.DataFrame(
        {"slice": [0, 1], "fold": [0, 1], "truth_segments": [5, 5], "membrane_dice": [0.1, 0.8], **counts}
    )
    warnings = result_warnings(per_slice, 0.5)
    # Fold 0: 0.5 % predicted membrane where the truth has 22 %; fold 1 is fine.
    assert warnings.fold.tolist() == [0] and "predicts 0.50 % of its held-out pixels as membrane" in warnings.message[0]
    assert "22.0 %" in warnings.message[0] and warnings.slice.isna().all()


def test_tables_from_predictions_on_disk(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random((4, 12, 10)) > 0.3).astype(np.uint8)
    pd.DataFrame({"slice": range(4), "fold": [0, 0, 1, 1]}).to_csv(tmp_path / "folds.tsv", sep="\t", index=False)
    for fold, slices in ((0, (0, 1)), (1, (2, 3))):
        (tmp_path / f"fold{fold}").mkdir()
        for index in slices:
            noisy = np.clip(labels[index] + rng.normal(0, 0.4, labels[index].shape), 0, 1).astype(np.float32)
            tifffile.imwrite(tmp_path / f"fold{fold}/slice_{index:03d}.tif", noisy)
    predictions = {0: tmp_path / "fold0", 1: tmp_path / "fold1"}
    cells = {0: tmp_path / "cells0", 1: tmp_path / "cells1"}
    segment_held_out(tmp_path / "folds.tsv", predictions, labels, {"method": "watershed"}, [], cells)
    per_slice, thresholds = evaluate_held_out(tmp_path / "folds.tsv", predictions, labels, 0.5, cells)
    assert per_slice.slice.tolist() == [0, 1, 2, 3] and per_slice.fold.tolist() == [0, 0, 1, 1]
    counts = ["cell_tp", "cell_fp", "cell_fn", "cell_tn"]
    assert list(per_slice.columns[2:]) == ["truth_segments", *PIXEL_COLUMNS, *SEGMENT_COLUMNS, *counts]
    assert np.isfinite(per_slice[PIXEL_COLUMNS + SEGMENT_COLUMNS].to_numpy()).all()

    # The challenge's figure: the best over thresholds of the mean over slices.
    assert len(thresholds) == 11 and thresholds.best_v_rand.sum() == 1 and thresholds.best_v_info.sum() == 1
    for score in ("v_rand", "v_info"):
        assert per_slice[f"{score}_thinned"].mean() == pytest.approx(thresholds[score].max())
        best = thresholds.loc[thresholds[f"best_{score}"], "threshold"].iloc[0]
        sweep = threshold_sweep(tifffile.imread(tmp_path / "fold1/slice_003.tif"), labels[3])
        assert per_slice.loc[3, f"{score}_thinned"] == next(r[score] for r in sweep if r["threshold"] == best)

    folds = per_fold_table(per_slice)
    assert folds.slices.tolist() == [2, 2]
    assert folds.loc[1, "membrane_dice"] == pytest.approx(per_slice.membrane_dice[2:].mean())

    summary = summary_table(per_slice).set_index("metric")
    values = folds.misclassified_fraction.to_numpy()
    low, high = stats.t.interval(0.95, 1, loc=values.mean(), scale=stats.sem(values))
    assert summary.loc["misclassified_fraction", "ci95_low"] == pytest.approx(max(low, 0.0))
    assert summary.loc["misclassified_fraction", "ci95_high"] == pytest.approx(min(high, 1.0))
    assert summary.loc["misclassified_fraction", "sd"] == pytest.approx(values.std(ddof=1))
    errors = per_slice[["cell_fp", "cell_fn"]].to_numpy().sum()
    assert summary.loc["misclassified_fraction", "pooled"] == pytest.approx(errors / labels.size)


def test_challenge_pixel_error_by_hand(tmp_path):
    """Fiji's PixelError on two 2 x 2 slices scored as one stack: counts summed over the
    slices at each threshold, 1 - the best F-score; worked out by hand below."""
    labels = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], np.uint8)
    probabilities = np.array([[[0.95, 0.35], [0.25, 0.05]], [[0.45, 0.32], [0.0, 0.0]]], np.float32)
    pd.DataFrame({"slice": [0, 1], "fold": [0, 1]}).to_csv(tmp_path / "folds.tsv", sep="\t", index=False)
    for fold in (0, 1):
        (tmp_path / f"fold{fold}").mkdir()
        tifffile.imwrite(tmp_path / f"fold{fold}/slice_{fold:03d}.tif", probabilities[fold])
    predictions = {0: tmp_path / "fold0", 1: tmp_path / "fold1"}
    cells = {0: tmp_path / "cells0", 1: tmp_path / "cells1"}
    segment_held_out(tmp_path / "folds.tsv", predictions, labels, {"method": "watershed"}, [], cells)
    per_slice, thresholds = evaluate_held_out(tmp_path / "folds.tsv", predictions, labels, 0.5, cells)
    # Summed (TP, FP, FN) per threshold and Fiji's F: 0.0 (3, 3, 0) 2/3; 0.1 and 0.2 (3, 2, 0)
    # 3/4; 0.3 (3, 1, 0) 6/7; 0.4 (2, 0, 1) 4/5; 0.5 to 0.9 (1, 0, 2) 1/2; 0.99.. (0, 0, 3),
    # precision 1 as FP = 0, recall 0: F = 0.
    f_scores = [2 / 3, 3 / 4, 3 / 4, 6 / 7, 4 / 5, 1 / 2, 1 / 2, 1 / 2, 1 / 2, 1 / 2, 0.0]
    assert thresholds.challenge_pixel_error.to_numpy() == pytest.approx([1 - f for f in f_scores])
    assert thresholds.best_challenge_pixel_error.tolist() == [i == 3 for i in range(11)]
    # Per slice at 0.3: slice 0 (2, 0, 0) F = 1; slice 1 (1, 1, 0) F = 2/3. Their mean is not
    # the stack's 1/7: the stack's figure lives in the sweep table.
    assert per_slice.challenge_pixel_error.to_numpy() == pytest.approx([0.0, 1 / 3])
    # The misclassified fraction at 0.5 is another score: 1 of 4 and 1 of 4 pixels.
    assert per_slice.misclassified_fraction.tolist() == [0.25, 0.25]


def test_challenge_pixel_error_keeps_the_first_best_threshold(tmp_path):
    labels = np.array([[[1, 1, 0, 1, 1]] * 3], np.uint8)  # two cells and a membrane
    pd.DataFrame({"slice": [0], "fold": [0]}).to_csv(tmp_path / "folds.tsv", sep="\t", index=False)
    (tmp_path / "fold0").mkdir()
    tifffile.imwrite(tmp_path / "fold0/slice_000.tif", labels[0].astype(np.float32))
    _, thresholds = evaluate_held_out(tmp_path / "folds.tsv", {0: tmp_path / "fold0"}, labels, 0.5)
    # Probability 0 or 1: F = 1 at every threshold up to 0.9999999999999999; Fiji's strict
    # ">" keeps 0.0.
    assert (thresholds.challenge_pixel_error == 0).all() and thresholds.best_challenge_pixel_error.tolist()[0]
    assert thresholds.best_challenge_pixel_error.sum() == 1
    # A fold the folds table does not have is refused, not scored against other slices.
    with pytest.raises(ValueError, match=r"predictions of folds \[1\], which .*folds\.tsv does not have"):
        evaluate_held_out(tmp_path / "folds.tsv", {1: tmp_path / "fold0"}, labels, 0.5)


def test_intervals_stay_within_each_scores_range():
    # Two folds far apart: Student's t with one degree of freedom runs far past 0 and 1.
    per_slice = pd.DataFrame(
        {
            "slice": [0, 1],
            "fold": [0, 1],
            **{c: [0.05, 0.95] for c in PIXEL_COLUMNS + SEGMENT_COLUMNS},
            "cell_tp": [1, 1],
            "cell_fp": [1, 1],
            "cell_fn": [0, 0],
            "cell_tn": [2, 2],
        }
    )
    summary = summary_table(per_slice).set_index("metric")
    assert (summary.ci95_low == 0).all()
    assert (summary.drop(index=list(UNBOUNDED_ABOVE)).ci95_high == 1).all()
    high = stats.t.interval(0.95, 1, loc=0.5, scale=stats.sem([0.05, 0.95]))[1]
    assert summary.loc[list(UNBOUNDED_ABOVE), "ci95_high"].to_numpy() == pytest.approx([high] * len(UNBOUNDED_ABOVE))


def test_a_single_fold_has_a_zero_width_interval():
    per_slice = pd.DataFrame(
        {
            "slice": [0],
            "fold": [0],
            **{c: [0.5] for c in PIXEL_COLUMNS + SEGMENT_COLUMNS},
            "cell_tp": [1],
            "cell_fp": [1],
            "cell_fn": [0],
            "cell_tn": [2],
        }
    )
    summary = summary_table(per_slice)
    assert (summary.ci95_low == summary["mean"]).all() and (summary.sd == 0).all()


def test_score_names_come_without_the_evaluations_dependencies():
    code = (
        "import sys, cellseg.scores, cellseg.figures; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'skimage', 'tifffile', 'scipy'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_slice_far_below_its_folds_median_and_missing_slices_are_warned_about():
    per_slice = pd.DataFrame(
        {
            "slice": [0, 1, 2, 3, 4, 5],
            "fold": [0, 0, 0, 1, 1, 1],
            "truth_segments": [5] * 6,
            "membrane_dice": [0.80, 0.78, 0.65, 0.81, 0.72, 0.79],
            "cell_tp": [780] * 6,
            "cell_fp": [10] * 6,
            "cell_fn": [10] * 6,
            "cell_tn": [200] * 6,
        }
    )
    # Fold 0's median is 0.78: slice 2 lies 0.13 below; fold 1's 0.79: slice 4, 0.07, is not called out.
    warnings = result_warnings(per_slice, 0.5, held_out=8)
    assert warnings.slice.tolist()[1:] == [2]
    assert "of 6 held-out slices, fewer than the 8" in warnings.message[0] and warnings.slice.isna()[0]
    assert "slice 2: membrane Dice 0.650, 0.130 below its fold's median (0.780)" in warnings.message[1]
    assert result_warnings(per_slice.drop(index=2), 0.5, held_out=5).empty
