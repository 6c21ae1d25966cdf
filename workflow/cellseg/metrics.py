"""Per-slice segmentation scores, each derived from the four confusion counts.

Label convention: 1 = cell interior, 0 = membrane; a probability map is turned into a
segmentation by ``probability > threshold``. Scores are given for both classes, each in
turn taken as the foreground. Rule for empty classes (no NaN, ever): a score whose
denominator is zero is 1 when the class is absent from both truth and prediction
(nothing to find and nothing found) and 0 otherwise.
"""

from __future__ import annotations

import numpy as np


def confusion_counts(predicted_cell: np.ndarray, true_cell: np.ndarray) -> dict[str, int]:
    """TP, FP, FN, TN of the cell class for two boolean maps of the same shape."""
    predicted_cell, true_cell = np.asarray(predicted_cell, bool), np.asarray(true_cell, bool)
    if predicted_cell.shape != true_cell.shape:
        raise ValueError(f"prediction {predicted_cell.shape} and truth {true_cell.shape} differ in shape")
    tp = int(np.count_nonzero(predicted_cell & true_cell))
    fp = int(np.count_nonzero(predicted_cell)) - tp
    fn = int(np.count_nonzero(true_cell)) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": true_cell.size - tp - fp - fn}


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def class_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Dice, IoU, precision and recall of one class from its counts."""
    both_empty = tp + fp + fn == 0
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "iou": _ratio(tp, tp + fp + fn, both_empty),
        "precision": _ratio(tp, tp + fp, tp + fp + fn == 0),
        "recall": _ratio(tp, tp + fn, tp + fp + fn == 0),
    }


def pixel_scores(probability: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Scores of one slice: ``<class>_<score>`` for both classes, and
    ``misclassified_fraction`` (FP + FN over all pixels; not the challenge's pixel error,
    which is 1 - the best F-score over thresholds: ``challenge.challenge_pixel_error``).

    ``probability`` (H, W) of the cell class, ``labels`` (H, W) with 1 = cell. The
    membrane counts are the cell counts with the roles of positive and negative swapped.
    """
    counts = confusion_counts(probability > threshold, labels == 1)
    membrane = {"tp": counts["tn"], "fp": counts["fn"], "fn": counts["fp"]}
    scores = {}
    for name, class_counts in (("cell", counts), ("membrane", membrane)):
        for score, value in class_scores(class_counts["tp"], class_counts["fp"], class_counts["fn"]).items():
            scores[f"{name}_{score}"] = value
    scores["misclassified_fraction"] = (counts["fp"] + counts["fn"]) / labels.size
    return scores
