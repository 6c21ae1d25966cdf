"""The UNet: the seed design's size, odd input shapes, normalisations; affinities and their test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellseg.loss import affinity_targets
from cellseg.model import (
    BatchNorm2d,
    Ensemble,
    UNet,
    affinity_turns,
    build_model,
    channels,
    count_parameters,
    shifted,
)


def test_seed_design_has_the_classic_parameter_count():
    assert count_parameters(UNet(depth=3, base_channels=64, norm="none")) == 7_696_193


@pytest.mark.parametrize("shape", [(37, 45), (5, 3), (64, 64), (1, 1), (100, 17)])
@pytest.mark.parametrize("norm", ["none", "batch", "group"])
def test_output_is_one_logit_per_input_pixel_for_any_size(shape, norm):
    model = UNet(depth=3, base_channels=4, norm=norm).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *shape))
    assert out.shape == (2, 1, *shape) and torch.isfinite(out).all()


def test_padding_does_not_leak_between_images_of_a_batch():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, norm="none").eval()
    x = torch.rand(3, 1, 21, 30)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    model = UNet(depth=3, base_channels=8, norm="batch").eval()
    x = torch.rand(2, 1, 48, 40)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        fast = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(reference, fast, atol=1e-5)


@pytest.mark.parametrize("channels", [8, 16])
def test_batch_norm_in_channels_last_matches_torchs_and_keeps_the_layout(channels):
    torch.manual_seed(0)
    ours, reference = BatchNorm2d(channels), torch.nn.BatchNorm2d(channels)
    for norm in (ours, reference):
        norm.weight.data = torch.linspace(0.5, 1.5, channels)
        norm.bias.data = torch.linspace(-1, 1, channels)
    x = (3 * torch.randn(4, channels, 16, 12) + 1).contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)  # channels_last, as a following convolution sends it
    results = []
    for norm in (ours, reference):
        x_copy = x.detach().clone().requires_grad_(True)
        y = norm(x_copy)
        y.backward(grad)
        results.append((y, x_copy.grad, norm.weight.grad, norm.running_var))
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert x_copy.grad.is_contiguous(memory_format=torch.channels_last)
    for ours_tensor, reference_tensor in zip(*results, strict=True):
        assert torch.allclose(ours_tensor, reference_tensor, atol=1e-5)
    ours.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="norm"):
        UNet(3, 8, norm="layer")
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0, base_channels=8, norm="none")


def test_build_model_gives_our_unet_or_monais_basicunet_as_a_peer():
    from conftest import require

    assert isinstance(build_model({"architecture": "unet", "depth": 2, "base_channels": 4, "norm": "batch"}), UNet)
    try:
        import monai  # noqa: F401
    except ImportError:
        require(False, "MONAI (the optional extra .[peers]) is not installed")
    peer = build_model({"architecture": "monai_basicunet", "depth": 4, "base_channels": 8, "norm": "batch"})
    with torch.no_grad():
        assert peer.eval()(torch.rand(1, 1, 64, 48)).shape == (1, 1, 64, 48)


OFFSETS = [[-1, 0], [0, -1], [-3, 0], [0, -3]]


class ExactAffinities(torch.nn.Module):
    """A stand-in network that reads a label image and gives, in its own frame, the exact
    affinities of ``OFFSETS`` as logits (+-20), channel 0 the labels' cell mask: any
    test-time variant brought back must give the untransformed map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = x[:, :1]
        outputs = [(labels > 0).float()]
        for dy, dx in OFFSETS:
            other = shifted(labels, dy, dx)
            inside = shifted(torch.ones_like(labels), dy, dx) > 0
            outputs.append(((labels == other) & (labels > 0) & inside).float())
        return (torch.cat(outputs, dim=1) - 0.5) * 40


def test_shifted_moves_a_map_by_its_offset():
    x = torch.arange(12.0).reshape(1, 3, 4)
    assert shifted(x, 1, 0)[0].tolist() == [[4, 5, 6, 7], [8, 9, 10, 11], [0, 0, 0, 0]]
    assert shifted(x, 0, -1)[0].tolist() == [[0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10]]
    assert not shifted(x, 5, 0).any()


def test_a_flip_turns_an_offset_around_and_its_map_is_shifted_back():
    # A hand-made map in the flipped frame (left-right): affinity to the left, (0, -1),
    # of pixel q there is the affinity of pixel p = flip(q) to its right, (0, +1), which
    # is channel (0, -1) of the pixel to its right: the map moved one pixel.
    folds = [{"depth": 1, "base_channels": 2, "norm": "none", "mean": 0.0, "std": 1.0, "output": "affinities"}]
    ensemble = Ensemble([{**folds[0], "offsets": [[-1, 0], [0, -1]]}], tta=2)
    assert ensemble.turns[1] == [[1, 0, 0], [2, 0, -1]]
    flipped = torch.zeros(1, 3, 2, 4)
    flipped[0, 2] = torch.tensor([[0.0, 1, 2, 3], [4, 5, 6, 7]])
    back = ensemble._undo(flipped, 1)
    # Undo the flip: [[3, 2, 1, 0], ...]; then channel (0, -1) at p is that at p + (0, -1).
    assert back[0, 2].tolist() == [[0, 3, 2, 1], [0, 7, 6, 5]]


def test_test_time_augmentation_of_affinities_is_exact_for_an_equivariant_network():
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(1, 4, (1, 1, 12, 12)).astype(np.float32))
    labels = labels.repeat_interleave(3, -1)[..., :12].repeat_interleave(2, -2)[..., :12, :]
    fold = {"mean": 0.0, "std": 1.0, "output": "affinities", "offsets": OFFSETS}
    plain = Ensemble([fold], tta=1, nets=[ExactAffinities()])(labels)
    augmented = Ensemble([fold], tta=8, nets=[ExactAffinities()])(labels)
    # Pixels whose offset leaves the image have no affinity; every other agrees exactly.
    for channel, (dy, dx) in enumerate(OFFSETS, start=1):
        inside = shifted(torch.ones(12, 12), dy, dx) > 0
        torch.testing.assert_close(plain[0, channel][inside], augmented[0, channel][inside], atol=1e-6, rtol=0)
    torch.testing.assert_close(plain[:, 0], augmented[:, 0], atol=1e-6, rtol=0)
    assert plain[0, 1:].max() > 0.99 and plain[0, 1:].min() < 0.01


def test_offsets_whose_turns_are_not_offsets_are_refused():
    with pytest.raises(ValueError, match="not an offset"):
        affinity_turns([[-1, 0], [0, -1], [-5, 0]], 8)
    assert affinity_turns([[-1, 0], [0, -1], [-5, 0]], 1) == [[[1, 0, 0], [2, 0, 0], [3, 0, 0]]]


def test_affinity_targets_are_masked_where_the_pair_leaves_the_crop_or_the_valid_pixels():
    segments = torch.tensor([[[[1, 1, 0, 2], [1, 1, 0, 2]]]], dtype=torch.int32)
    valid = torch.ones_like(segments, dtype=torch.float32)
    valid[..., 0, 3] = 0  # filled in by augmentation
    targets, mask = affinity_targets(segments, valid, [[0, -1], [-1, 0]])
    # To the left: same segment 1 | membrane belongs to none | 2 vs membrane.
    assert targets[0, 0].tolist() == [[0, 1, 0, 0], [0, 1, 0, 0]]
    assert mask[0, 0].tolist() == [[0, 1, 1, 0], [0, 1, 1, 1]]
    assert targets[0, 1].tolist() == [[0, 0, 0, 0], [1, 1, 0, 1]]
    assert mask[0, 1].tolist() == [[0, 0, 0, 0], [1, 1, 1, 0]]


def test_channels_follow_the_model_section():
    spec = {"architecture": "unet", "depth": 2, "base_channels": 4, "norm": "batch"}
    assert channels(spec) == (1, 1)
    affinities = {**spec, "output": "affinities", "offsets": OFFSETS, "context_sections": 1}
    assert channels(affinities) == (3, 5)
    assert build_model(affinities)(torch.zeros(2, 3, 20, 20)).shape == (2, 5, 20, 20)
