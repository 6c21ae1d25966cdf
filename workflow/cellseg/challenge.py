"""The ISBI 2012 challenge's own scores: V_Rand and V_Info after border thinning, and
its pixel error.

A port of Fiji's Trainable Weka Segmentation (``metrics/RandError.java``
``getMaximalVRandAfterThinning``, ``metrics/VariationOfInformation.java``
``getMaximalVInfoAfterThinning``, ``utils/WatershedTransform2D.java``) as the
challenge's script "Segmentation evaluation after border thinning" calls it:

1. Ground truth: the 4-connected components of the cell class are the cells; its
   membrane pixels are left out of every count.
2. Proposal at threshold t: ``p > t`` is cell. A watershed (Vincent and Soille's
   flooding, 4-connected) of that binary relief floods the boundary pixels from the
   cell components, so every boundary, however thick, ends as a one-pixel line where
   two floods meet. Line pixels count as one-pixel segments each.
3. Over the n ground-truth cell pixels, with p_ij the fraction of them in cell i and
   proposal segment j, a_i and b_j its row and column sums:
   V_Rand = 2 sum p_ij^2 / (sum a_i^2 + sum b_j^2) and
   V_Info = 2 I(A; B) / (H(A) + H(B)), the F-score of mutual information over each
   entropy. 1 is perfect.
4. Thresholds 0.0 to 1.0 in steps of 0.1, accumulated in double precision as Fiji's
   loop does (the last is 0.9999999999999999, so pixels of probability exactly 1.0
   stay cells). Scores are averaged over slices per threshold; the best threshold is
   reported with its score, for V_Rand and V_Info separately.

The challenge's pixel error is 1 minus the maximal F-score of the cell class over the same
thresholds (``metrics/PixelError.java`` ``getPixelErrorMaximalFScore`` with its
``ClassificationStatistics``): at each threshold, the cell class's TP, FP, FN of
``p > t`` against ``label > 0`` are summed over every slice of the stack, precision is 1
when FP = 0 and recall 1 when FN = 0 (even with TP = 0), and F = 2PR / (P + R), 0 when
P + R = 0; the best threshold is the first whose F is strictly larger than every earlier
one (from F = 0). It is not the fraction of misclassified pixels at 0.5
(``metrics.scores_from_counts``'s ``misclassified_fraction``), which Fiji's ``getMetricValue``
computes and the challenge did not rank by.

Defined values where Fiji would divide by zero (documented in docs/metrics.md): a slice
with no ground-truth cell pixel scores 1 for both (nothing to split or merge); V_Info's
precision (recall) is 1 when the proposal's (truth's) entropy is 0, i.e. when it is a
single segment; its F-score is 0 when precision and recall are both 0.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from skimage.measure import label as connected_components

from .metrics import confusion_counts, labelled, predicted_cell
from .scores import CHALLENGE_SCORES as SCORES

# Sentinels of WatershedTransform2D; labels of basins are > 0.
WATERSHED_LINE, QUEUED, MASK, OUTSIDE = 0, -3, -2, -4


def challenge_thresholds(start: float = 0.0, stop: float = 1.0, step: float = 0.1) -> list[float]:
    """Fiji's ``for (th = start; th <= stop; th += step)`` in doubles: eleven values."""
    thresholds, threshold = [], start
    while threshold <= stop:
        thresholds.append(threshold)
        threshold += step
    return thresholds


def fiji_f_score(tp: float, fp: float, fn: float) -> float:
    """F-score of the cell class as Fiji's ``ClassificationStatistics`` defines it: precision
    1 when ``fp`` is 0, recall 1 when ``fn`` is 0, F 0 when both are 0."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def challenge_pixel_error(tp: float, fp: float, fn: float) -> float:
    """The challenge's pixel error at one threshold, from the cell class's counts summed
    over the slices scored together: 1 - ``fiji_f_score``. The challenge's score is its
    minimum over ``challenge_thresholds`` (``evaluate.challenge_table``)."""
    return 1.0 - fiji_f_score(tp, fp, fn)


def cell_components(cell: np.ndarray) -> np.ndarray:
    """Labels of the 4-connected components of a boolean cell mask; 0 = membrane."""
    return connected_components(cell, connectivity=1, background=0)


def thin_boundaries(cell: np.ndarray) -> np.ndarray:
    """Segments of a binary proposal with every boundary thinned to one-pixel lines.

    ``cell`` (H, W) boolean. Returns int32 labels: > 0 segments, 0 watershed lines.
    Boundary pixels are flooded from the 4-connected cell components in the order of
    Fiji's WatershedTransform2D (pixels in column-major order, neighbours left, up,
    right, down, one first-in first-out queue), so ties fall as they fall there.
    """
    cell = np.asarray(cell, bool)
    height, width = cell.shape
    stride = width + 2
    # A one-pixel frame of OUTSIDE spares the bounds checks.
    padded = np.full((height + 2, stride), OUTSIDE, np.int64)
    basins = cell_components(cell)
    padded[1:-1, 1:-1] = np.where(cell, basins, MASK)
    labels = padded.ravel().tolist()

    # Boundary pixels next to a cell start the queue, column by column as in Fiji.
    framed_cell = np.pad(cell, 1)
    touches_cell = ~cell & (
        framed_cell[1:-1, :-2] | framed_cell[:-2, 1:-1] | framed_cell[1:-1, 2:] | framed_cell[2:, 1:-1]
    )
    columns, rows = np.nonzero(touches_cell.T)
    fifo = deque(((rows + 1) * stride + columns + 1).tolist())
    for index in fifo:
        labels[index] = QUEUED

    flag = False  # Fiji keeps this across pixels; so do we, to fall the same way.
    while fifo:
        index = fifo.popleft()
        for neighbour in (index - 1, index - stride, index + 1, index + stride):
            other = labels[neighbour]
            own = labels[index]
            if other > 0:
                if own == QUEUED or (own == WATERSHED_LINE and flag):
                    labels[index] = other
                elif own > 0 and own != other:
                    labels[index] = WATERSHED_LINE
                    flag = False
            elif other == WATERSHED_LINE:
                if own == QUEUED:
                    labels[index] = WATERSHED_LINE
                    flag = True
            elif other == MASK:
                labels[neighbour] = QUEUED
                fifo.append(neighbour)

    segments = np.array(labels, np.int64).reshape(padded.shape)[1:-1, 1:-1]
    # Boundary that no cell reaches (a slice without cells) becomes new basins, as there.
    unreached = segments == MASK
    if unreached.any():
        segments[unreached] = cell_components(unreached)[unreached] + basins.max()
    return segments.astype(np.int32)


def _fractions(labels: np.ndarray, count: float) -> np.ndarray:
    """Fraction of the ``count`` pixels carrying each distinct label of ``labels``."""
    return np.unique(labels, return_counts=True)[1] / count


def foreground_restricted_scores(truth_cells: np.ndarray, segments: np.ndarray) -> dict[str, float]:
    """V_Rand and V_Info of proposal ``segments`` (0 = line) against ``truth_cells``
    (0 = membrane, ignored), over the ground-truth cell pixels."""
    inside = truth_cells > 0
    count = float(np.count_nonzero(inside))
    if count == 0:
        return dict.fromkeys(SCORES, 1.0)
    truth, proposal = truth_cells[inside].astype(np.int64), segments[inside].astype(np.int64)
    in_segment = proposal != WATERSHED_LINE
    truth_fractions = _fractions(truth, count)
    segment_fractions = _fractions(proposal[in_segment], count)
    joint = _fractions(truth[in_segment] * (int(proposal.max()) + 1) + proposal[in_segment], count)
    singletons = 1 - float(np.count_nonzero(in_segment)) / count  # line pixels, each alone: (1/n)^2 apiece

    sum_truth = float(np.sum(truth_fractions**2))
    sum_proposal = float(np.sum(segment_fractions**2)) + singletons / count
    sum_joint = float(np.sum(joint**2)) + singletons / count
    v_rand = 2 * sum_joint / (sum_truth + sum_proposal)

    truth_entropy = -float(np.sum(truth_fractions * np.log(truth_fractions)))
    proposal_entropy = -float(np.sum(segment_fractions * np.log(segment_fractions))) + singletons * np.log(count)
    joint_entropy = -float(np.sum(joint * np.log(joint))) + singletons * np.log(count)
    information = truth_entropy + proposal_entropy - joint_entropy
    precision = information / proposal_entropy if proposal_entropy > 0 else 1.0
    recall = information / truth_entropy if truth_entropy > 0 else 1.0
    v_info = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"v_rand": float(v_rand), "v_info": float(v_info)}


def threshold_sweep(probability: np.ndarray, labels: np.ndarray) -> list[dict[str, float]]:
    """V_Rand and V_Info of one slice at every challenge threshold, and the cell class's
    confusion counts (``tp``, ``fp``, ``fn``, ``tn``) that its pixel error sums.

    ``probability`` (H, W) of the cell class, ``labels`` (H, W) with 1 = cell. Sparse
    labels (``metrics.UNLABELLED`` pixels): the counts of the labelled pixels, and V_Rand
    and V_Info NaN, since the cells cannot be told apart where no one labelled them.
    """
    truth = labels == 1
    mask = labelled(labels)
    truth_cells = cell_components(truth) if mask is None else None
    probability = np.asarray(probability, np.float64)  # Fiji compares in double
    rows = []
    for threshold in challenge_thresholds():
        cell = predicted_cell(probability, threshold)
        scores = (
            dict.fromkeys(SCORES, np.nan)
            if mask is not None
            else foreground_restricted_scores(truth_cells, thin_boundaries(cell))
        )
        rows.append({"threshold": threshold, **scores, **confusion_counts(cell, truth, mask)})
    return rows
