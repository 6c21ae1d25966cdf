"""The UNet: the seed design's size, odd input shapes, normalisations."""

from __future__ import annotations

import pytest
import torch

from cellseg.model import BatchNorm2d, UNet, build_model, count_parameters


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
