"""The training loss: soft Dice + binary cross-entropy, and the U-Net paper's border
weights that make the cross-entropy count the thin membranes between cells more.

Border weights (Ronneberger, Fischer and Brox 2015, "U-Net: Convolutional Networks for
Biomedical Image Segmentation", eq. 2, without its class-balancing term):
w(x) = 1 + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2)), d1 and d2 the distances (pixels) to
the nearest and second-nearest cell (4-connected component of the cell class). The paper
uses w0 = 10, sigma = 5 px.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.measure import label, regionprops


def border_weights(cell: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """The U-Net paper's weight map (module docstring) of one slice's labels.

    ``cell`` (H, W) boolean, True = cell. Returns (H, W) float32 >= 1; all ones when the
    slice has fewer than two cells. Each cell's distances are computed within its
    bounding box grown by 4 sigma: farther pixels add under ``w0 * exp(-8)`` (0.0034 at
    w0 = 10) to the weight, which is left out.
    """
    cells = label(cell, connectivity=1)
    if cells.max() < 2:
        return np.ones(cell.shape, np.float32)
    reach = math.ceil(4 * sigma)
    nearest = np.full(cell.shape, np.inf, np.float32)
    second = np.full(cell.shape, np.inf, np.float32)
    for region in regionprops(cells):
        top, left, bottom, right = region.bbox
        window = (slice(max(top - reach, 0), bottom + reach), slice(max(left - reach, 0), right + reach))
        distance = ndimage.distance_transform_edt(cells[window] != region.label).astype(np.float32)
        near, next_near = nearest[window], second[window]
        next_near[...] = np.minimum(next_near, np.maximum(near, distance))
        near[...] = np.minimum(near, distance)
    return (1 + w0 * np.exp(-((nearest + second) ** 2) / (2 * sigma**2))).astype(np.float32)


def dice_bce_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, dice_weight: float, dice_on: str
) -> tuple[torch.Tensor, dict[str, float]]:
    """``dice_weight`` x soft Dice loss + (1 - dice_weight) x BCE; returns the loss and its
    parts.

    Tensors are (B, 1, H, W): logits of the cell class, target 1 = cell, and each pixel's
    weight: 0 where augmentation filled the pixel in (left out of both terms), else 1 or
    its border weight. The BCE is the weighted mean over pixels; soft Dice, unweighted
    over the pixels of weight > 0, is computed over the whole batch for the cell class
    (``dice_on='cell'``) or as the mean over the cell and membrane classes (``'both'``),
    with a smoothing of 1 so empty classes give 0.
    """
    logits = logits.float()
    weight = weight.float()
    valid = (weight > 0).float()
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum()
    bce = bce / weight.sum().clamp_min(1.0)
    cell = torch.sigmoid(logits)

    def soft_dice_loss(prob: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        overlap = (prob * truth * valid).sum()
        return 1 - (2 * overlap + 1) / ((prob * valid).sum() + (truth * valid).sum() + 1)

    dice = soft_dice_loss(cell, target)
    if dice_on == "both":
        dice = (dice + soft_dice_loss(1 - cell, 1 - target)) / 2
    loss = dice_weight * dice + (1 - dice_weight) * bce
    return loss, {"bce": bce.item(), "dice": dice.item()}


def affinity_targets(
    segments: torch.Tensor, valid: torch.Tensor, offsets: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Affinity targets and their mask, (B, K, h, w) float32 each, for ``offsets`` (K of
    (dy, dx)).

    ``segments`` (B, 1, h, w) integers: the cell segments of each crop (connected cell
    regions numbered 1..; 0 = membrane, which belongs to no segment); ``valid`` (B, 1,
    h, w) > 0 where the crop's pixel is real (not filled in by augmentation). The target
    of offset o at p is 1 where p and p + o lie in one segment, else 0; the mask is 1
    where both p and p + o lie inside the crop and are valid, so the loss never reads a
    pair that leaves the crop or the labelled area.
    """
    height, width = segments.shape[-2:]
    real = valid > 0
    targets, masks = [], []
    for dy, dx in offsets:
        other = torch.zeros_like(segments)
        other_real = torch.zeros_like(real)
        if abs(dy) < height and abs(dx) < width:
            here = (..., slice(max(0, -dy), height - max(0, dy)), slice(max(0, -dx), width - max(0, dx)))
            there = (..., slice(max(0, dy), height - max(0, -dy)), slice(max(0, dx), width - max(0, -dx)))
            other[here] = segments[there]
            other_real[here] = real[there]
        targets.append(((segments == other) & (segments > 0)).float())
        masks.append((real & other_real).float())
    return torch.cat(targets, dim=1), torch.cat(masks, dim=1)
