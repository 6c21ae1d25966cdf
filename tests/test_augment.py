"""Augmentation keeps image and masks aligned, moves pixels as configured, marks fills."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from cellseg.augment import GridElastic, RandomRot90, build_augmentation, displacement_rms

NOTHING = {
    "flips": False,
    "rot90": False,
    "rotation_degrees": 0,
    "elastic_probability": 0,
    "elastic_std_px": 6,
    "elastic_grid": 3,
    "brightness": 0,
    "contrast": 0,
}


def blocky_pair(seed: int = 0, size: int = 96):
    """An image that is its own label map (8 x 8 blocks), so any misalignment shows."""
    generator = torch.Generator().manual_seed(seed)
    blocks = (torch.rand(1, size // 8, size // 8, generator=generator) > 0.4).float()
    labels = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    return (
        tv_tensors.Image(labels.clone()),
        tv_tensors.Mask(labels.to(torch.uint8)),
        tv_tensors.Mask(torch.ones_like(labels, dtype=torch.uint8)),
    )


@pytest.mark.parametrize(
    "transform",
    [
        v2.RandomHorizontalFlip(p=1),
        v2.RandomVerticalFlip(p=1),
        RandomRot90(),
        v2.RandomRotation(15, interpolation=v2.InterpolationMode.BILINEAR, fill=0),
        GridElastic(std_px=6, grid=3),
        v2.ColorJitter(brightness=0.3, contrast=0.3),
        build_augmentation(
            {
                **NOTHING,
                "flips": True,
                "rot90": True,
                "rotation_degrees": 15,
                "elastic_probability": 1.0,
                "brightness": 0.1,
                "contrast": 0.1,
            }
        ),
    ],
    ids=["hflip", "vflip", "rot90", "rotation", "elastic", "jitter", "all"],
)
def test_image_and_mask_stay_aligned(transform):
    for seed in range(5):
        torch.manual_seed(seed)
        image, labels, valid = transform(*blocky_pair(seed))
        assert isinstance(labels, tv_tensors.Mask) and labels.dtype == torch.uint8
        inside = valid.bool()
        # The image's blocks, thresholded at the midpoint of their two (jittered) levels,
        # must match the labels wherever the pixel came from inside the crop. Bilinear
        # image against nearest-neighbour mask resampling differs at block edges only:
        # under 3 %, where a shift of a single pixel disagrees on about 6 %.
        low, high = image[inside & (labels == 0)].mean(), image[inside & (labels == 1)].mean()
        disagree = ((image > (low + high) / 2) != labels.bool()) & inside
        assert disagree.float().mean() < 0.03, f"seed {seed}: {disagree.float().mean():.3f} misaligned"


def test_a_shifted_mask_would_be_caught():
    image, labels, _ = blocky_pair()
    shifted = torch.roll(labels, 1, dims=-1)
    assert ((image > 0.5) != shifted.bool()).float().mean() > 0.03


def test_pixels_brought_in_from_outside_are_marked_invalid():
    torch.manual_seed(1)
    image, labels, valid = v2.RandomRotation((30, 30), fill=0)(*blocky_pair())
    outside = valid == 0
    assert 0.05 < outside.float().mean() < 0.5
    assert (labels[outside] == 0).all() and (image[outside] == 0).all()


def test_elastic_moves_pixels_by_about_the_configured_std():
    torch.manual_seed(0)
    for std in (3.0, 6.0, 10.0):
        measured = displacement_rms(GridElastic(std_px=std, grid=3))
        assert 0.6 * std < measured < 1.6 * std, (std, measured)


def test_torchvision_default_elastic_moves_pixels_by_only_about_a_pixel():
    # Why GridElastic exists: v2.ElasticTransform's defaults barely deform a 256 crop.
    torch.manual_seed(0)
    assert displacement_rms(v2.ElasticTransform()) < 1.5


def test_intensity_transforms_leave_masks_alone():
    torch.manual_seed(0)
    _, labels, valid = blocky_pair()
    _image2, labels2, valid2 = v2.ColorJitter(brightness=0.5, contrast=0.5)(*blocky_pair())
    assert torch.equal(labels, labels2) and torch.equal(valid, valid2)
