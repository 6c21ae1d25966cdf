"""Joint image/mask augmentation with ``torchvision.transforms.v2``.

An image crop travels with two masks: its labels and a ``valid`` mask of ones. Geometric
transforms fill pixels they bring in from outside the crop with 0, which would read as
membrane in the labels; those pixels are 0 in ``valid`` too, and the loss ignores them.

Elastic deformation follows the U-Net paper: random displacements on a coarse grid of
control points, drawn from a normal distribution with a standard deviation in pixels,
interpolated bicubically to every pixel. torchvision's own ``ElasticTransform`` blurs
per-pixel noise, which at its default alpha moves pixels by about a pixel and costs
hundreds of milliseconds per 256 x 256 crop for larger sigmas; this takes about a
millisecond and moves pixels by the amount configured.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


class RandomRot90(v2.Transform):
    """Rotate image and masks together by a random multiple of 90 degrees (exact)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"turns": int(torch.randint(4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["turns"] == 0 or not isinstance(inpt, torch.Tensor):
            return inpt
        return tv_tensors.wrap(torch.rot90(inpt, params["turns"], dims=(-2, -1)), like=inpt)


class GridElastic(v2.Transform):
    """Elastic deformation from normal displacements on a ``grid`` x ``grid`` lattice.

    Args:
        std_px: standard deviation of each control point's displacement, in pixels.
        grid: control points per side (the U-Net paper uses 3).
    """

    def __init__(self, std_px: float, grid: int) -> None:
        super().__init__()
        self.std_px = std_px
        self.grid = grid

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        control = torch.randn(1, 2, self.grid, self.grid) * self.std_px
        pixels = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)
        # torchvision wants (1, H, W, 2) in grid_sample units: x first, 2 / size per pixel.
        scale = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)
        return {"displacement": (pixels * scale).permute(0, 2, 3, 1)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        return TF.elastic(inpt, params["displacement"], fill=[0.0])


def build_augmentation(config: dict) -> v2.Compose:
    """The training augmentation described by the ``augment`` config section.

    Apply it to ``(tv_tensors.Image, tv_tensors.Mask labels, tv_tensors.Mask valid)``;
    intensity changes touch the image only.
    """
    transforms: list[v2.Transform] = []
    if config["flips"]:
        transforms += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if config["rot90"]:
        transforms.append(RandomRot90())
    if config["rotation_degrees"] > 0:
        transforms.append(
            v2.RandomRotation(config["rotation_degrees"], interpolation=v2.InterpolationMode.BILINEAR, fill=0)
        )
    if config["elastic_probability"] > 0:
        elastic = GridElastic(config["elastic_std_px"], config["elastic_grid"])
        transforms.append(v2.RandomApply([elastic], p=config["elastic_probability"]))
    if config["brightness"] > 0 or config["contrast"] > 0:
        transforms.append(v2.ColorJitter(brightness=config["brightness"], contrast=config["contrast"]))
    # Compose refuses an empty list: every augmentation switched off is no augmentation.
    return v2.Compose(transforms) if transforms else v2.Identity()


def displacement_rms(transform: v2.Transform, size: int = 256, samples: int = 8, margin: int = 32) -> float:
    """Root-mean-square displacement in pixels that ``transform`` applies, measured.

    Transforms images holding each pixel's own coordinates and compares, away from the
    border where fill values would distort the measurement.
    """
    rows, cols = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    coordinates = tv_tensors.Image(torch.stack([rows, cols]))
    total = 0.0
    for _ in range(samples):
        moved = (transform(coordinates) - coordinates)[:, margin:-margin, margin:-margin]
        total += moved.pow(2).sum(0).mean().item()
    return (total / samples) ** 0.5
