"""Prediction: dihedral TTA, tiles that cover and blend, bounded memory, file formats."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from cellseg.model import UNet, dihedral, undo_dihedral
from cellseg.predict import Predictor, predict_held_out, predict_volume, tile_starts


def save_model(path, seed=0, depth=2, channels=4):
    torch.manual_seed(seed)
    model = UNet(depth, channels, "batch").eval()
    spec = {"architecture": "unet", "depth": depth, "base_channels": channels, "norm": "batch"}
    torch.save({"state_dict": model.state_dict(), "model": spec, "normalisation": {"mean": 0.5, "std": 0.25}}, path)
    return path


def recipe(**overrides):
    return {
        "tta": 1,
        "tile_size": 512,
        "tile_overlap": 0.25,
        "device": "cpu",
        "precision": "fp32",
        "channels_last": True,
        **overrides,
    }


@pytest.mark.parametrize("index", range(8))
def test_each_dihedral_transform_is_undone(index):
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    assert torch.equal(undo_dihedral(dihedral(x, index), index), x)
    assert len({dihedral(x, i).flatten().tolist().__repr__() for i in range(8)}) == 8


def test_full_tta_makes_the_prediction_equivariant(tmp_path):
    model = save_model(tmp_path / "m.pt")
    image = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    predictor = Predictor([model], recipe(tta=8))
    plain = predictor.predict_slice(image)
    assert np.allclose(predictor.predict_slice(image[:, ::-1]), plain[:, ::-1], atol=1e-5)
    assert np.allclose(predictor.predict_slice(image.T), plain.T, atol=1e-5)
    single = Predictor([model], recipe(tta=1)).predict_slice(image)
    assert not np.allclose(single[:, ::-1], Predictor([model], recipe(tta=1)).predict_slice(image[:, ::-1]), atol=1e-5)


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
    whole = Predictor([model], recipe(tile_size=512)).predict_slice(image)
    tiled = Predictor([model], recipe(tile_size=64, tile_overlap=0.5)).predict_slice(image)
    assert whole.shape == tiled.shape == (200, 150)
    # A depth-2 UNet sees ~20 px around a pixel: tile interiors agree, edges blend.
    assert np.abs(whole - tiled).mean() < 0.02


def test_ensemble_is_the_mean_of_its_models(tmp_path):
    a, b = save_model(tmp_path / "a.pt", seed=0), save_model(tmp_path / "b.pt", seed=1)
    image = np.random.default_rng(2).random((32, 48), dtype=np.float32)
    both = Predictor([a, b], recipe()).predict_slice(image)
    mean = (Predictor([a], recipe()).predict_slice(image) + Predictor([b], recipe()).predict_slice(image)) / 2
    assert np.allclose(both, mean, atol=1e-6)


def test_outputs_are_float32_tiffs_in_the_label_convention(tmp_path):
    model = save_model(tmp_path / "m.pt")
    images = np.random.default_rng(3).random((5, 33, 47), dtype=np.float32)
    paths = predict_held_out(model, images, [1, 3], tmp_path / "held", recipe(tta=2))
    assert [p.name for p in paths] == ["slice_001.tif", "slice_003.tif"]
    held = tifffile.imread(paths[0])
    assert held.dtype == np.float32 and held.shape == (33, 47) and 0 <= held.min() and held.max() <= 1
    other = save_model(tmp_path / "other.pt", seed=1)
    predict_volume([model, other], images, tmp_path / "volume.tif", tmp_path / "spread.tif", recipe())
    volume, spread = tifffile.imread(tmp_path / "volume.tif"), tifffile.imread(tmp_path / "spread.tif")
    assert volume.shape == spread.shape == (5, 33, 47) and volume.dtype == spread.dtype == np.float32
    # The mean and the population sd of the two fold models' probabilities, pixel by pixel.
    each = [Predictor([path], recipe()).predict_slice(images[1]) for path in (model, other)]
    assert np.allclose(volume[1], (each[0] + each[1]) / 2, atol=1e-6)
    assert np.allclose(spread[1], np.abs(each[0] - each[1]) / 2, atol=1e-6) and spread[1].max() > 0


MEMORY_PROBE = """
import resource, sys, numpy as np, torch
from cellseg.predict import Predictor
torch.set_num_threads(2)
image = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
probability = Predictor([sys.argv[1]], dict(tta=1, tile_size=512, tile_overlap=0.25, device="cpu",
                        precision="fp32", channels_last=True)).predict_slice(image)
assert probability.shape == (4096, 4096)
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
