"""Prediction: dihedral TTA, tiles that cover and blend, one ensemble, bounded memory, file formats."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from cellseg.cells import CellRecipe, instance_labels
from cellseg.inference import FoldEnsemble, fold_spread, predict_tiled, resampled, tile_starts
from cellseg.model import UNet, build_model, dihedral, undo_dihedral
from cellseg.predict import predict_held_out, predict_volume
from cellseg.records import UNCALIBRATED, FoldModel, InferenceSettings, TrainingInput, VoxelSize


def recipe(**overrides) -> InferenceSettings:
    return InferenceSettings(
        **{
            "tta": 1,
            "tile_size": 512,
            "tile_overlap": 0.25,
            "device": "cpu",
            "precision": "fp32",
            "channels_last": True,
            **overrides,
        }
    )


def save_model(path, seed=0, depth=2, channels=4, voxel_size=None, **model_keys):
    """A model file as training writes one: weights and a ``FoldModel`` record (trained
    on a stack of ``voxel_size``, unknown by default); ``model_keys`` more keys of its
    model section (``output``, ``offsets``, ``context_sections``)."""
    torch.manual_seed(seed)
    spec = {"architecture": "unet", "depth": depth, "base_channels": channels, "norm": "batch", **model_keys}
    model = build_model(spec).eval()
    record = FoldModel(
        model=spec,
        standardisation={"mean": 0.5, "std": 0.25},
        input=TrainingInput(voxel_size=voxel_size or VoxelSize()),
        config={"predict": recipe().to_json()},
        seed=seed,
        fold=0,
        train_slices=[],
        versions={},
        device="cpu",
        precision="fp32",
        steps=0,
        wall_seconds=0.0,
        crops_per_second=0.0,
    )
    torch.save({"state_dict": model.state_dict(), **record.to_json()}, path)
    return path


def predict_slice(models, settings, image):
    return FoldEnsemble(models, settings).predict(image[None])[0][0]


@pytest.mark.parametrize("index", range(8))
def test_each_dihedral_transform_is_undone(index):
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    assert torch.equal(undo_dihedral(dihedral(x, index), index), x)
    assert len({dihedral(x, i).flatten().tolist().__repr__() for i in range(8)}) == 8


def test_full_tta_makes_the_prediction_equivariant(tmp_path):
    model = save_model(tmp_path / "m.pt")
    image = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    plain = predict_slice([model], recipe(tta=8), image)
    assert np.allclose(predict_slice([model], recipe(tta=8), image[:, ::-1]), plain[:, ::-1], atol=1e-5)
    assert np.allclose(predict_slice([model], recipe(tta=8), image.T), plain.T, atol=1e-5)
    single = predict_slice([model], recipe(tta=1), image)
    assert not np.allclose(single[:, ::-1], predict_slice([model], recipe(tta=1), image[:, ::-1]), atol=1e-5)


@pytest.mark.parametrize("length, tile", [(512, 512), (513, 128), (1000, 256), (100, 256), (4096, 512)])
def test_tiles_cover_every_pixel(length, tile):
    starts = tile_starts(length, tile, 0.25)
    covered = np.zeros(length, bool)
    for start in starts:
        covered[start : start + tile] = True
    assert covered.all() and starts[0] == 0 and max(starts) + min(tile, length) == length


def test_tiled_prediction_agrees_with_whole_slice_prediction(tmp_path):
    model = save_model(tmp_path / "m.pt")
    image = np.random.default_rng(1).random((200, 150), dtype=np.float32)
    whole = predict_slice([model], recipe(tile_size=512), image)
    tiled = predict_slice([model], recipe(tile_size=64, tile_overlap=0.5), image)
    assert whole.shape == tiled.shape == (200, 150)
    # A depth-2 UNet sees ~20 px around a pixel: tile interiors agree, edges blend.
    assert np.abs(whole - tiled).mean() < 0.02


def test_ensemble_is_the_mean_of_its_models(tmp_path):
    a, b = save_model(tmp_path / "a.pt", seed=0), save_model(tmp_path / "b.pt", seed=1)
    image = np.random.default_rng(2).random((32, 48), dtype=np.float32)
    both = predict_slice([a, b], recipe(), image)
    mean = (predict_slice([a], recipe(), image) + predict_slice([b], recipe(), image)) / 2
    assert np.allclose(both, mean, atol=1e-6)


def test_the_pipeline_runs_the_network_the_package_ships(tmp_path):
    # One path: FoldEnsemble's maps are model.Ensemble's forward, the module exported.
    paths = [save_model(tmp_path / f"{k}.pt", seed=k) for k in range(3)]
    image = np.random.default_rng(4).random((48, 40), dtype=np.float32)
    ensemble = FoldEnsemble(paths, recipe(tta=4, channels_last=False))
    probability, spread = ensemble.predict(image[None], uncertainty=True)
    with torch.inference_mode():
        shipped = ensemble.network(torch.from_numpy(image)[None, None])[0, 0].numpy()
        per_fold = ensemble.network.per_fold(torch.from_numpy(image)[None, None])[:, 0, 0].numpy()
    assert np.array_equal(probability[0], shipped)
    # The folds' mean and disagreement are numpy's own, to the bit.
    assert np.array_equal(probability[0], per_fold.mean(axis=0))
    assert np.array_equal(spread[0], per_fold.std(axis=0))
    assert np.array_equal(fold_spread(torch.from_numpy(per_fold)), per_fold.std(axis=0))


def test_tiles_blend_an_output_of_several_channels_channel_by_channel():
    image = torch.from_numpy(np.random.default_rng(5).random((70, 90), dtype=np.float32))

    def channels(tile):  # a nonlinear map of the tile, so that each channel blends its own values
        return torch.stack([tile, tile**2, torch.sin(3 * tile)])

    blended = predict_tiled(channels, image, 32, 0.5)
    assert blended.shape == (3, 70, 90)
    for index in range(3):
        alone = predict_tiled(lambda tile, i=index: channels(tile)[i], image, 32, 0.5)
        assert torch.allclose(blended[index], alone)
    assert torch.allclose(blended[1], image**2, atol=1e-6)  # a pixelwise map blends to itself


def test_outputs_are_float32_probability_tiffs_and_the_volumes_are_mean_and_sd(tmp_path):
    model = save_model(tmp_path / "m.pt")
    images = np.random.default_rng(3).random((5, 33, 47), dtype=np.float32)
    paths = predict_held_out(model, images, [1, 3], tmp_path / "held", recipe(tta=2), UNCALIBRATED)
    assert [p.name for p in paths] == ["slice_001.tif", "slice_003.tif"]
    held = tifffile.imread(paths[0])
    assert held.dtype == np.float32 and held.shape == (33, 47) and 0 <= held.min() and held.max() <= 1
    other = save_model(tmp_path / "other.pt", seed=1)
    outputs = {"probability": tmp_path / "volume.tif", "uncertainty": tmp_path / "spread.tif"}
    outputs["cells"] = tmp_path / "cells.tif"
    predict_volume([model, other], images, outputs, recipe(), {}, CellRecipe({"method": "watershed"}))
    volume, spread = tifffile.imread(tmp_path / "volume.tif"), tifffile.imread(tmp_path / "spread.tif")
    # The cells of the mean probability, by the recipe's method.
    assert np.array_equal(tifffile.imread(outputs["cells"]), instance_labels(volume))
    assert volume.shape == spread.shape == (5, 33, 47) and volume.dtype == spread.dtype == np.float32
    # The mean and the population sd of the two fold models' probabilities, pixel by pixel.
    each = [predict_slice([path], recipe(), images[1]) for path in (model, other)]
    assert np.allclose(volume[1], (each[0] + each[1]) / 2, atol=1e-6)
    assert np.allclose(spread[1], np.abs(each[0] - each[1]) / 2, atol=1e-6) and spread[1].max() > 0


MEMORY_PROBE = """
import resource, sys, numpy as np, torch
from cellseg.inference import FoldEnsemble
torch.set_num_threads(2)
image = np.random.default_rng(0).random((1, 4096, 4096), dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
probability, _ = FoldEnsemble([sys.argv[1]], dict(tta=1, tile_size=512, tile_overlap=0.25, device="cpu",
                              precision="fp32", channels_last=True)).predict(image)
assert probability.shape == (1, 4096, 4096)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def test_a_4096_slice_predicts_in_under_2_gib(tmp_path):
    model = save_model(tmp_path / "m.pt", depth=3, channels=8)
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(model)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    peak_gib = float(result.stdout.split()[-1])
    assert peak_gib < 2.0, f"peak resident memory {peak_gib:.2f} GiB"


def test_an_ensemble_of_two_output_channels_averages_each_channel():
    # The next issue's affinities: a head of several channels runs through the same path.
    from torch import nn

    from cellseg.model import Ensemble

    torch.manual_seed(0)
    net = UNet(2, 4, "none")
    net.head = nn.Conv2d(4, 2, 1)
    ensemble = Ensemble([{"mean": 0.5, "std": 0.25}], tta=2, nets=[net]).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        per_fold = ensemble.per_fold(x)
        by_hand = (torch.sigmoid(net((x - 0.5) / 0.25)) + torch.sigmoid(net(((x - 0.5) / 0.25).flip(-1))).flip(-1)) / 2
    assert per_fold.shape == (1, 1, 2, 32, 32)
    assert torch.allclose(per_fold[0], by_hand, atol=1e-6)


def test_resampling_keeps_the_range_and_returns_to_the_grid():
    image = torch.rand(2, 37, 45)
    up = resampled(image, (74, 90))
    assert up.shape == (2, 74, 90) and up.min() >= image.min() - 1e-6 and up.max() <= image.max() + 1e-6
    # A constant stays constant both ways, and a smooth ramp comes back close to itself.
    assert torch.allclose(resampled(torch.full((30, 40), 0.7), (15, 20)), torch.tensor(0.7))
    ramp = torch.linspace(0, 1, 64)[None, :].repeat(48, 1)
    back = resampled(resampled(ramp, (96, 128)), (48, 64))
    assert (back - ramp)[:, 2:-2].abs().max() < 0.01


def test_a_stack_of_another_pixel_size_is_predicted_at_the_models(tmp_path, caplog):

    nm = 1e-3
    model = save_model(tmp_path / "m.pt", voxel_size=VoxelSize(0.05, 4 * nm, 4 * nm))
    ensemble = FoldEnsemble([model], recipe())
    coarse = VoxelSize(0.05, 8 * nm, 8 * nm)
    scale = ensemble.pixel_zoom(coarse, "coarse.tif")
    assert scale.zoom == pytest.approx((2.0, 2.0)) and not scale.warning
    assert "coarse.tif: its pixels are 8 x 8 nm, the training stack's 4 x 4 nm: each section resampled by 2 x 2" in (
        scale.note
    )
    # 4.1 nm is 4 nm rounded; unknown sizes cannot be checked: a warning, predicted as is.
    assert ensemble.pixel_zoom(VoxelSize(None, 4.1 * nm, 4.1 * nm), "s").zoom is None
    with caplog.at_level("WARNING"):
        unknown = ensemble.pixel_zoom(VoxelSize(), "plain.tif")
    assert unknown.zoom is None and unknown.warning
    assert "the pixel size of the stack is unknown, so the scale cannot be checked" in caplog.text
    assert FoldEnsemble([model], recipe(match_pixel_size=False)).pixel_zoom(coarse, "s").warning
    # Predicted at 4 nm: the same as predicting the section upsampled by hand, brought back.
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (1, 40, 48), dtype=np.uint8)
    matched = ensemble.predict_raw(stack, zoom=scale.zoom)
    intensities = ensemble.intensities(stack)
    by_hand = ensemble.predict_section(resampled(torch.from_numpy(intensities.apply(stack)[0]), (80, 96)).numpy())
    assert np.allclose(matched[0], resampled(by_hand[:, 0], (40, 48)).mean(0).numpy(), atol=1e-6)
    assert not np.allclose(matched, ensemble.predict_raw(stack), atol=1e-3)
    # The cells are made at 4 nm too: a speck of 12 pixels at 8 nm is 48 at 4 nm, a cell
    # to min_size_px 20 there, but not at the stack's own pixel size.
    probability = np.full((1, 40, 48), 0.02, np.float32)
    probability[0, 5:35, 5:20] = 0.98  # a cell
    probability[0, 20:23, 30:34] = 0.98  # 12 pixels
    cells = CellRecipe({"method": "watershed", "min_size_px": 20})
    assert cells.of(probability).max() == 1
    labels = cells.of(probability, scale.zoom)
    assert labels.shape == (1, 40, 48) and labels.dtype == np.uint32 and labels.max() == 2
    assert labels[0, 21, 32] == 2 and labels[0, 10, 10] == 1 and labels[0, 2, 2] == 0
