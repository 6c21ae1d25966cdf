"""Per-slice segmentation scores, each derived from the four confusion counts.

Label convention: 1 = cell interior, 0 = membrane, ``UNLABELLED`` = no one labelled the
pixel (sparse labels, such as ilastik's brush strokes): left out of every pixel score.
A probability map is turned into a
segmentation by ``predicted_cell`` (``probability > threshold``). Scores are given for both classes, each in
turn taken as the foreground. Rule for empty classes (no NaN, ever): a score whose
denominator is zero is 1 when the class is absent from both truth and prediction
(nothing to find and nothing found) and 0 otherwise.
"""

from __future__ import annotations

import numpy as np

# The unpacked labels' value of a pixel that was not labelled (``stacks.binary_labels``).
UNLABELLED = 2


def confusion_counts(
    predicted_cell: np.ndarray, true_cell: np.ndarray, labelled: np.ndarray | None = None
) -> dict[str, int]:
    """TP, FP, FN, TN of the cell class for two boolean maps of the same shape, counted
    where ``labelled`` (a boolean map of that shape; by default everywhere)."""
    predicted_cell, true_cell = np.asarray(predicted_cell, bool), np.asarray(true_cell, bool)
    if predicted_cell.shape != true_cell.shape:
        raise ValueError(f"prediction {predicted_cell.shape} and truth {true_cell.shape} differ in shape")
    if labelled is not None:
        predicted_cell, true_cell = predicted_cell[labelled], true_cell[labelled]
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


def predicted_cell(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Where a probability map (any shape) predicts cell interior: strictly above
    ``threshold``, so 0.5 is membrane at threshold 0.5, as Fiji's ``proposal > t``. The
    one place this rule is written; every score, figure and segmentation uses it."""
    return np.asarray(probability) > threshold


def scores_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """The pixel scores of the cell class's confusion counts: ``<class>_<score>`` for
    both classes (the membrane's counts are the cell's with positive and negative
    swapped) and ``misclassified_fraction`` (FP + FN over all pixels; not the challenge's
    pixel error, which is 1 - the best F-score over thresholds:
    ``challenge.challenge_pixel_error``)."""
    scores = {}
    for name, (positive, false_positive, false_negative) in (("cell", (tp, fp, fn)), ("membrane", (tn, fn, fp))):
        for score, value in class_scores(positive, false_positive, false_negative).items():
            scores[f"{name}_{score}"] = value
    scores["misclassified_fraction"] = (fp + fn) / (tp + fp + fn + tn)
    return scores


def pixel_scores(probability: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Scores of one slice (``scores_from_counts``) for ``probability`` (H, W) of the
    cell class and ``labels`` (H, W) with 1 = cell, on its labelled pixels."""
    return scores_from_counts(**confusion_counts(predicted_cell(probability, threshold), labels == 1, labelled(labels)))


def labelled(labels: np.ndarray) -> np.ndarray | None:
    """Where ``labels`` were labelled (not ``UNLABELLED``), or None where all of them were."""
    mask = np.asarray(labels) != UNLABELLED
    return None if mask.all() else mask
