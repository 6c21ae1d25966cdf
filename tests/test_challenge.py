"""The ISBI 2012 challenge's V_Rand and V_Info after thinning, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellseg.challenge import (
    cell_components,
    challenge_pixel_error,
    challenge_thresholds,
    fiji_f_score,
    foreground_restricted_scores,
    thin_boundaries,
    threshold_sweep,
)

# Two ground-truth cells of 6 x 4 pixels, a one-pixel membrane at column 4 between them.
TWO_CELLS = np.ones((6, 9), np.uint8)
TWO_CELLS[:, 4] = 0
TRUTH = cell_components(TWO_CELLS == 1)


def scores_of(proposal_cell: np.ndarray) -> dict[str, float]:
    return foreground_restricted_scores(TRUTH, thin_boundaries(proposal_cell))


def test_thresholds_are_fijis_accumulated_doubles():
    thresholds = challenge_thresholds()
    assert len(thresholds) == 11 and thresholds[0] == 0.0
    assert thresholds[-1] == 0.9999999999999999  # not 1.0: a probability of exactly 1 stays cell
    assert thresholds[3] == 0.30000000000000004


def test_a_perfect_proposal_scores_one():
    assert scores_of(TWO_CELLS == 1) == {"v_rand": 1.0, "v_info": 1.0}


def test_thick_and_thin_membranes_between_the_same_cells_score_the_same():
    thin = TWO_CELLS == 1
    thick = np.ones_like(thin)
    thick[:, 3:6] = False  # a membrane three pixels wide on the same line
    assert (thin_boundaries(thick) == thin_boundaries(thin)).all()
    # A grid of cells, every membrane widened by one pixel each side. (Thinning removes
    # width, not shape: a thick box's corners would come out cut.)
    cells = np.ones((40, 40), bool)
    cells[:, 13] = cells[:, 27] = cells[19, :] = False
    wide = cells.copy()
    for axis in (0, 1):
        for shift in (-1, 1):
            wide &= np.roll(cells, shift, axis)
    truth = cell_components(cells)
    split = cells.copy()
    split[30, :13] = False  # and a split cell, the same in both
    wide[29:32, :12] = False
    assert foreground_restricted_scores(truth, thin_boundaries(wide)) == pytest.approx(
        foreground_restricted_scores(truth, thin_boundaries(split))
    )


def test_a_split_cell_scores_as_computed_by_hand():
    proposal = TWO_CELLS == 1
    proposal[2, :4] = False  # a membrane across the left cell only
    segments = thin_boundaries(proposal)
    # Left cell: 8 pixels above the line, 12 below, 4 line pixels (one-pixel segments each).
    assert (segments[2, :4] == 0).all()
    n = 48
    truth_squares = 2 * (24 / n) ** 2
    proposal_squares = (8 / n) ** 2 + (12 / n) ** 2 + (24 / n) ** 2 + 4 / n**2
    # Every proposal segment lies in one truth cell: joint squares = proposal squares.
    expected_rand = 2 * proposal_squares / (truth_squares + proposal_squares)
    truth_entropy = math.log(2)
    proposal_entropy = -sum(f * math.log(f) for f in (8 / n, 12 / n, 24 / n)) + 4 / n * math.log(n)
    # The proposal refines the truth: I(A; B) = H(A), precision H(A)/H(B), recall 1.
    precision = truth_entropy / proposal_entropy
    expected_info = 2 * precision / (precision + 1)
    assert scores_of(proposal) == pytest.approx({"v_rand": expected_rand, "v_info": expected_info})
    assert expected_rand == pytest.approx(1576 / 1940)


def test_two_merged_cells_score_as_computed_by_hand():
    scores = scores_of(np.ones_like(TWO_CELLS, bool))  # the membrane missed: one segment
    # p = (1/2, 1/2) in one column: 2 * 1/2 / (1/2 + 1) = 2/3; no information: V_Info 0.
    assert scores == pytest.approx({"v_rand": 2 / 3, "v_info": 0.0})


def test_defined_values_without_cells_one_class_or_all_wrong():
    assert foreground_restricted_scores(np.zeros((5, 5), np.int32), np.ones((5, 5), np.int32)) == {
        "v_rand": 1.0,
        "v_info": 1.0,
    }
    everything_membrane = thin_boundaries(np.zeros((6, 9), bool))
    assert (everything_membrane == 1).all()  # Fiji floods it as one basin
    inverted = scores_of(TWO_CELLS == 0)  # cells where the membrane is and vice versa
    # Both flood to one basin, as the membrane missed does: the two cells merged.
    merged = {"v_rand": pytest.approx(2 / 3), "v_info": pytest.approx(0.0)}
    assert inverted == merged and scores_of(np.zeros((6, 9), bool)) == merged
    one_cell = np.ones((6, 9), np.uint8)
    scores = foreground_restricted_scores(cell_components(one_cell == 1), thin_boundaries(one_cell == 1))
    assert scores == {"v_rand": 1.0, "v_info": 1.0}


def test_fiji_f_score_and_pixel_error_conventions():
    # ClassificationStatistics: precision 1 when FP = 0, recall 1 when FN = 0, F 0 when
    # precision + recall = 0.
    assert fiji_f_score(2, 1, 1) == pytest.approx(2 / 3) and challenge_pixel_error(2, 1, 1) == pytest.approx(1 / 3)
    assert fiji_f_score(0, 0, 5) == 0.0  # nothing predicted: precision 1, recall 0
    assert fiji_f_score(0, 3, 0) == 0.0  # no cell in the truth: precision 0, recall 1
    assert fiji_f_score(0, 0, 0) == 1.0 and challenge_pixel_error(0, 0, 0) == 0.0
    assert fiji_f_score(3, 1, 0) == pytest.approx(6 / 7)


def test_sweep_counts_the_cell_class_at_each_threshold():
    probability = np.where(TWO_CELLS == 1, 0.5, 0.0)
    rows = {round(row["threshold"], 1): row for row in threshold_sweep(probability, TWO_CELLS)}
    cells = int((TWO_CELLS == 1).sum())
    assert (rows[0.4]["tp"], rows[0.4]["fp"], rows[0.4]["fn"]) == (cells, 0, 0)
    assert (rows[0.5]["tp"], rows[0.5]["fp"], rows[0.5]["fn"]) == (0, 0, cells)  # 0.5 is not above 0.5
    assert rows[0.5]["tn"] == TWO_CELLS.size - cells


def test_sweep_thresholds_strictly_and_keeps_probability_one_as_cell():
    probability = np.where(TWO_CELLS == 1, 1.0, 0.0).astype(np.float32)
    sweep = threshold_sweep(probability, TWO_CELLS)
    assert [row["threshold"] for row in sweep] == challenge_thresholds()
    assert all(row["v_rand"] == 1.0 for row in sweep)
    halfway = np.where(TWO_CELLS == 1, 0.5, 0.0)
    rows = {round(row["threshold"], 1): row for row in threshold_sweep(halfway, TWO_CELLS)}
    assert rows[0.4]["v_rand"] == 1.0
    assert rows[0.5]["v_rand"] == pytest.approx(2 / 3)  # 0.5 is not above 0.5: one basin


def test_every_line_pixel_separates_two_segments_on_real_shapes():
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    cell = gaussian_filter(rng.normal(size=(64, 64)), 2) > -0.2
    segments = thin_boundaries(cell)
    assert segments.min() >= 0 and (segments[cell] > 0).all()  # cells keep their basins
    framed = np.pad(segments, 1, constant_values=-1)
    for row, column in zip(*np.nonzero(segments == 0), strict=True):
        around = framed[row : row + 3, column : column + 3]
        assert len(set(around[around > 0].tolist())) >= 2
