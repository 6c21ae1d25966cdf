"""The UNet (Ronneberger, Fischer and Brox, 2015, arXiv:1505.04597), written out by hand.

DoubleConv blocks (3x3 convolution, optional normalisation, ReLU, twice), max-pool down,
transposed-convolution up, skips concatenated, and a 1x1 head giving one logit per pixel
(cell interior). Padding keeps each convolution's output the size of its input, and
inputs whose sides are not a multiple of 2**depth are padded by reflection and cropped
back, so any slice size works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

NORMS = ("none", "batch", "group")
GROUPS = 8


class _Relayout(torch.autograd.Function):
    """A tensor in another memory format, whose gradient goes back in the input's format
    (``Tensor.contiguous`` passes the gradient through in whatever format it arrives)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layout: torch.memory_format, back: torch.memory_format) -> torch.Tensor:
        ctx.back = back
        return x.contiguous(memory_format=layout)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad.contiguous(memory_format=ctx.back), None, None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that, in training, normalises channels_last CPU tensors of
    fewer than 16 channels in the contiguous layout.

    PyTorch's CPU training kernels for channels_last vectorise over channels, and with 8
    of them they are slow: forward and backward of 8 x 8 x 256 x 256 bf16 took 14 ms
    against 6.6 ms with the two layout changes (16 channels: 1.5 ms direct, 4.4 ms with
    them). Evaluation's kernel is a plain scale and shift, fast in either layout. The
    result and its gradient keep the input's layout, so the convolutions around it stay
    in channels_last, where they are fastest.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slow_layout = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if not self.training or x.device.type != "cpu" or self.num_features >= 16 or not slow_layout:
            return super().forward(x)
        contiguous = _Relayout.apply(x, torch.contiguous_format, torch.channels_last)
        return _Relayout.apply(super().forward(contiguous), torch.channels_last, torch.contiguous_format)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(GROUPS, channels), channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """(3x3 conv, normalisation, ReLU) twice; spatial size unchanged."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none") -> None:
        bias = norm == "none"  # a following normalisation makes a bias redundant
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none") -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, norm))


class Up(nn.Module):
    """2x2 transposed convolution, concatenation with the skip, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "none") -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """A 2-D UNet for one grey-scale channel in and one logit per pixel out.

    Args:
        depth: number of max-pool steps (the seed design has 3).
        base_channels: channels of the first DoubleConv, doubled at every step down.
        norm: ``"none"``, ``"batch"`` or ``"group"`` (GroupNorm with up to 8 groups).
    """

    def __init__(self, depth: int = 3, base_channels: int = 64, norm: str = "none") -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.inc = DoubleConv(1, widths[0], norm)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], norm) for i in range(depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the cell class, (B, 1, H, W), for images (B, 1, H, W) of any H, W."""
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if min(height, width) > max(pad_h, pad_w) else "replicate")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)[..., :height, :width]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(spec: dict) -> nn.Module:
    """The network a ``model`` config section describes: our UNet, or MONAI's BasicUNet
    (its defaults: features 32-32-64-128-256, batch norm) as a peer to compare with."""
    if spec["architecture"] == "monai_basicunet":
        try:
            from monai.networks.nets import BasicUNet
        except ImportError as error:
            raise InputError("model.architecture 'monai_basicunet' needs MONAI: pip install -e '.[peers]'") from error
        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1)
    return UNet(spec["depth"], spec["base_channels"], spec["norm"])
