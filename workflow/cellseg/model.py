"""The UNet (Ronneberger, Fischer and Brox, 2015, arXiv:1505.04597), written out by hand.

DoubleConv blocks (3x3 convolution, optional normalisation, ReLU, twice), max-pool down,
transposed-convolution up, skips concatenated, and a 1x1 head giving one logit per pixel
(cell interior). Padding keeps each convolution's output the size of its input, and
inputs whose sides are not a multiple of 2**depth are padded by reflection and cropped
back, so any slice size works.

This module imports only torch: a shared bioimage.io package ships it as its network's
architecture (``modelzoo``), loaded outside cellseg.
"""

from __future__ import annotations

from typing import List  # noqa: UP035 (TorchScript)

import torch
import torch.nn.functional as F
from torch import nn

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

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
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

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, norm))


class Up(nn.Module):
    """2x2 transposed convolution, concatenation with the skip, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """A 2-D UNet: grey-scale channels in (a section, and its neighbours for 2.5-D), one
    logit per output channel and pixel out.

    Args (no defaults but the channels': the config schema's ``model`` section is their
    one source, ``channels`` derives the channels from it):
        depth: number of max-pool steps (the seed design has 3).
        base_channels: channels of the first DoubleConv, doubled at every step down.
        norm: ``"none"``, ``"batch"`` or ``"group"`` (GroupNorm with up to 8 groups).
        in_channels: input channels (1 + 2 x the neighbouring sections on each side).
        out_channels: outputs (1: the cell class; affinities add one per offset).
    """

    def __init__(self, depth: int, base_channels: int, norm: str, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.inc = DoubleConv(in_channels, widths[0], norm)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], norm) for i in range(depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, out_channels, H, W) for images (B, in_channels, H, W) of any H, W."""
        height, width = x.shape[-2:]
        multiple = 1 << self.depth  # an int in TorchScript too, where 2**n is a float
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)[..., :height, :width]


def dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    """The ``index``-th (0-7) of the 8 flips and transposes of the last two axes."""
    if index & 4:
        x = x.transpose(-2, -1)
    if index & 1:
        x = x.flip(-1)
    if index & 2:
        x = x.flip(-2)
    return x


def channels(spec: dict) -> tuple[int, int]:
    """The input and output channels of the network a ``model`` section (or a model
    record's) describes: the section and ``context_sections`` neighbours on each side in;
    the cell class, and one affinity per offset for ``output: affinities``, out. Records
    of a cellseg before these keys have one of each."""
    inputs = 1 + 2 * int(spec.get("context_sections", 0))
    outputs = 1 + len(spec["offsets"]) if spec.get("output", "boundary") == "affinities" else 1
    return inputs, outputs


def affinity_offsets(spec: dict) -> list[list[int]]:
    """The affinity offsets (dy, dx) of the network's channels 1.. (none for a boundary map)."""
    if spec.get("output", "boundary") != "affinities":
        return []
    return [[int(dy), int(dx)] for dy, dx in spec["offsets"]]


def undo_offset(offset: list[int], index: int) -> list[int]:
    """Where an offset (dy, dx) seen in the frame of ``dihedral(x, index)`` points in the
    input's frame: the linear part of ``undo_dihedral``, step by step."""
    dy, dx = offset[0], offset[1]
    if index & 2:
        dy = -dy
    if index & 1:
        dx = -dx
    if index & 4:
        dy, dx = dx, dy
    return [dy, dx]


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]``, 0 where that lies outside."""
    height, width = x.shape[-2], x.shape[-1]
    out = torch.zeros_like(x)
    if abs(dy) >= height or abs(dx) >= width:
        return out
    out[..., max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] = x[
        ..., max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)
    ]
    return out


def affinity_turns(offsets: list[list[int]], variants: int) -> list[list[list[int]]]:
    """For each test-time variant, how its output's affinity channels come back: per
    channel c' of the input's frame, ``[source channel, dy, dx]`` such that channel c' is
    the source channel (brought back by ``undo_dihedral``) shifted by (dy, dx)
    (``shifted``), both counted from 1 (channel 0 is the cell class).

    A variant's channel c relates q and q + o_c in its own frame, so, brought back, p and
    p + o' with o' = ``undo_offset(o_c)``. If o' is an offset o_c', that is channel c';
    if it is -o_c', the map relates p and p - o_c', and channel c' at p is its value at
    p + o_c' (a shift by o_c'). Raises ``ValueError`` when neither is an offset."""
    turns = []
    for variant in range(variants):
        mapping = [[0, 0, 0] for _ in offsets]
        for source, offset in enumerate(offsets):
            back = undo_offset(offset, variant)
            if back in offsets:
                mapping[offsets.index(back)] = [source + 1, 0, 0]
            elif [-back[0], -back[1]] in offsets:
                target = offsets.index([-back[0], -back[1]])
                mapping[target] = [source + 1, offsets[target][0], offsets[target][1]]
            else:
                raise ValueError(f"offset {offset} turned by test-time variant {variant} is {back}, not an offset")
        turns.append(mapping)
    return turns


def undo_dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    """The inverse of ``dihedral(x, index)``."""
    if index & 2:
        x = x.flip(-2)
    if index & 1:
        x = x.flip(-1)
    if index & 4:
        x = x.transpose(-2, -1)
    return x


class Ensemble(nn.Module):
    """A run's fold models as one network, the one way cellseg predicts: each UNet
    standardises its input with its own training mean and sd, its output is averaged
    over ``tta`` flips and transposes (each undone on the output), and the ensemble's is
    the mean over folds.

    Args:
        folds: one mapping per fold, with ``depth``, ``base_channels``, ``norm`` (the
            UNet's) and ``mean``, ``std`` (its standardisation), as a model file records
            them.
        tta: test-time augmentation, 1 to 8 variants (``dihedral``).
        channels_last: run the UNets on channels-last activations (faster convolutions);
            the result is the same.
        nets: the fold networks, when they are not cellseg's UNet (a peer such as
            MONAI's BasicUNet); then ``folds`` needs only ``mean`` and ``std``.

    ``forward`` takes images (B, C_in, H, W) float32 normalised as the training stack
    was (``records.Intensities.apply``; C_in = 1, or the section between its neighbours
    for 2.5-D) and returns the probabilities (B, C, H, W) float32 in [0, 1]: channel 0
    the cell class, then one affinity per offset for a network of affinities (a flip
    turns an offset around, so each variant's affinity maps are shifted and their
    channels swapped back: ``affinity_turns``); ``per_fold`` returns each fold's
    (F, B, C, H, W), whose spread is the folds' disagreement.
    Self-contained (torch only) and TorchScript-compatible in eval mode once its batch
    norms are plain ``nn.BatchNorm2d``: the bioimage.io package ships this file.
    """

    def __init__(
        self, folds: list[dict], tta: int, channels_last: bool = False, nets: list[nn.Module] | None = None
    ) -> None:
        super().__init__()
        if not folds or not 1 <= tta <= 8:
            raise ValueError(f"an ensemble needs a fold and tta 1 to 8, not {len(folds)} folds and tta {tta}")
        if nets is None:
            nets = [UNet(f["depth"], f["base_channels"], f["norm"], *channels(f)) for f in folds]
        self.nets = nn.ModuleList(nets)
        # Python floats, not float32 buffers: the standardisation is computed exactly as
        # the weights were trained and evaluated with.
        self.means = [float(f["mean"]) for f in folds]
        self.stds = [float(f["std"]) for f in folds]
        self.tta = tta
        self.channels_last = channels_last
        self.turns = affinity_turns(affinity_offsets(folds[0]), tta)

    def _undo(self, y: torch.Tensor, variant: int) -> torch.Tensor:
        """An output of the ``variant``-th flip or transpose, brought back to the input's frame."""
        back = undo_dihedral(y, variant)
        if len(self.turns[variant]) == 0:
            return back
        parts = [back[:, :1]]
        for turn in self.turns[variant]:
            parts.append(shifted(back[:, turn[0] : turn[0] + 1], turn[1], turn[2]))
        return torch.cat(parts, dim=1)

    def per_fold(self, x: torch.Tensor) -> torch.Tensor:
        """Each fold's outputs, (F, B, C, H, W) float32: the mean over its ``tta``
        variants, summed in order."""
        outputs = []
        for index, net in enumerate(self.nets):
            standard = (x - self.means[index]) / self.stds[index]
            total = standard  # replaced by the first variant's output, whatever its channels
            for variant in range(self.tta):
                flipped = dihedral(standard, variant)
                if self.channels_last:
                    flipped = flipped.contiguous(memory_format=torch.channels_last)
                else:
                    flipped = flipped.contiguous()
                output = self._undo(torch.sigmoid(net(flipped).float()), variant)
                total = output if variant == 0 else total + output
            outputs.append(total / self.tta)
        return torch.stack(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fold_mean(self.per_fold(x))


# TorchScript cannot infer the type of a list of empty lists (a boundary map's turns), and
# reads no string annotation (this module's are, by its __future__ import): the type itself.
Ensemble.__annotations__["turns"] = List[List[List[int]]]  # noqa: UP006


def fold_mean(per_fold: torch.Tensor) -> torch.Tensor:
    """The mean over the first axis, summed in order as numpy sums it."""
    total = per_fold[0].clone()
    for index in range(1, per_fold.shape[0]):
        total += per_fold[index]
    return total / per_fold.shape[0]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe_model(spec: dict) -> str:
    """The network a ``model`` config section describes, in words for logs."""
    if spec["architecture"] == "monai_basicunet":
        return "MONAI BasicUNet (its defaults: features 32-32-64-128-256, batch norm)"
    inputs, outputs = channels(spec)
    text = f"UNet depth {spec['depth']}, {spec['base_channels']} base channels, norm {spec['norm']}"
    if inputs > 1:
        text += f", {inputs} sections in (2.5-D)"
    if outputs > 1:
        text += f", the cell class and {outputs - 1} affinities {affinity_offsets(spec)} out"
    return text


def build_model(spec: dict) -> nn.Module:
    """The network a ``model`` config section describes: our UNet, or MONAI's BasicUNet
    (its defaults: features 32-32-64-128-256, batch norm) as a peer to compare with."""
    if spec["architecture"] == "monai_basicunet":
        from .errors import InputError

        try:
            from monai.networks.nets import BasicUNet
        except ImportError as error:
            raise InputError("model.architecture 'monai_basicunet' needs MONAI: pip install -e '.[peers]'") from error
        inputs, outputs = channels(spec)
        return BasicUNet(spatial_dims=2, in_channels=inputs, out_channels=outputs)
    return UNet(spec["depth"], spec["base_channels"], spec["norm"], *channels(spec))
