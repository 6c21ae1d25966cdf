"""Pixel scores on hand-computed cases, including empty classes and all-wrong slices."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg.metrics import class_scores, confusion_counts, pixel_scores


def test_counts_and_scores_of_a_small_case():
    truth = np.array([[1, 1, 0], [1, 0, 0]])
    probability = np.array([[0.9, 0.2, 0.7], [0.6, 0.1, 0.5]])  # 0.5 is not > 0.5
    assert confusion_counts(probability > 0.5, truth == 1) == {"tp": 2, "fp": 1, "fn": 1, "tn": 2}
    scores = pixel_scores(probability, truth, 0.5)
    assert scores["cell_dice"] == pytest.approx(4 / 6) and scores["cell_iou"] == pytest.approx(2 / 4)
    assert scores["cell_precision"] == pytest.approx(2 / 3) and scores["cell_recall"] == pytest.approx(2 / 3)
    assert scores["membrane_dice"] == pytest.approx(4 / 6) and scores["membrane_precision"] == pytest.approx(2 / 3)
    assert scores["misclassified_fraction"] == pytest.approx(2 / 6)


def test_perfect_all_wrong_and_one_class_slices_have_defined_scores():
    truth = np.array([[1, 0], [0, 1]])
    perfect = pixel_scores(truth.astype(float), truth, 0.5)
    assert (
        all(perfect[k] == 1.0 for k in perfect if k != "misclassified_fraction")
        and perfect["misclassified_fraction"] == 0
    )
    wrong = pixel_scores(1.0 - truth, truth, 0.5)
    assert all(wrong[k] == 0.0 for k in wrong if k != "misclassified_fraction") and wrong["misclassified_fraction"] == 1
    all_cell = np.ones((2, 2), int)
    right = pixel_scores(np.ones((2, 2)), all_cell, 0.5)
    assert right["membrane_dice"] == 1.0 and right["membrane_precision"] == 1.0 and right["cell_dice"] == 1.0
    missed = pixel_scores(np.zeros((2, 2)), all_cell, 0.5)
    assert missed["cell_dice"] == 0.0 and missed["cell_precision"] == 0.0 and missed["membrane_recall"] == 0.0
    assert not any(np.isnan(v) for s in (perfect, wrong, right, missed) for v in s.values())


def test_class_scores_of_an_empty_class():
    assert class_scores(0, 0, 0) == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0}
    assert class_scores(0, 3, 0) == {"dice": 0.0, "iou": 0.0, "precision": 0.0, "recall": 0.0}


def test_an_asymmetric_case_tells_precision_from_recall_and_the_classes_apart():
    # tp 1, fp 1, fn 2, tn 4 for the cell class: every ratio differs from its mirror.
    truth = np.array([[1, 1, 1, 0], [0, 0, 0, 0]])
    probability = np.array([[0.9, 0.1, 0.1, 0.9], [0.1, 0.1, 0.1, 0.1]])
    assert confusion_counts(probability > 0.5, truth == 1) == {"tp": 1, "fp": 1, "fn": 2, "tn": 4}
    scores = pixel_scores(probability, truth, 0.5)
    assert (scores["cell_precision"], scores["cell_recall"]) == pytest.approx((1 / 2, 1 / 3))
    assert scores["cell_dice"] == pytest.approx(2 / 5) and scores["cell_iou"] == pytest.approx(1 / 4)
    # Membrane: tp 4 (true negatives of the cell class), fp 2 (missed cells), fn 1.
    assert (scores["membrane_precision"], scores["membrane_recall"]) == pytest.approx((4 / 6, 4 / 5))
    assert scores["membrane_dice"] == pytest.approx(8 / 11)
    assert class_scores(1, 0, 3) == pytest.approx({"dice": 0.4, "iou": 0.25, "precision": 1.0, "recall": 0.25})
