"""Training: the loss, determinism, exact resume, and held-out slices never read."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from cellseg.config import load_schema, schema_defaults
from cellseg.loss import border_weights, dice_bce_loss
from cellseg.records import FoldModel, TrainingInput
from cellseg.runtime import cpu_has_fast_bf16, resolve_precision
from cellseg.train import CropSampler, TrainingData, train_fold
from conftest import REPO


def tiny_config(data_workers: int = 0, **train) -> dict:
    config = schema_defaults(load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    config["model"].update(depth=2, base_channels=4)
    config["train"].update(crop_size=32, batch_size=2, steps=12, precision="fp32", **train)
    config["resources"].update(checkpoint_every=4, log_every_seconds=0, data_workers=data_workers)
    return {key: config[key] for key in ("seed", "model", "train", "augment", "resources")}


@pytest.fixture(scope="module")
def stacks():
    rng = np.random.default_rng(0)
    labels = (rng.random((6, 40, 48)) > 0.3).astype(np.uint8)
    images = (labels * 0.5 + rng.random(labels.shape) * 0.5).astype(np.float32)
    return images, labels


def run(stacks, folder, config, slices=(0, 1, 2, 3)):
    images, labels = stacks
    metadata = train_fold(TrainingData(images, labels, TrainingInput()), list(slices), config, 0, paths(folder))
    return torch.load(folder / "m.pt", weights_only=True)["state_dict"], metadata


def paths(folder: Path) -> dict[str, Path]:
    return {"model": folder / "m.pt", "curve": folder / "c.tsv", "checkpoint": folder / "ck.pt"}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_is_zero_for_a_confident_right_answer_and_ignores_invalid_pixels():
    target = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    logits = (target * 2 - 1) * 30
    loss, parts = dice_bce_loss(logits, target, torch.ones_like(target), 0.5, "both")
    assert loss.item() < 1e-3 and parts["bce"] < 1e-3
    wrong = -logits
    assert dice_bce_loss(wrong, target, torch.ones_like(target), 0.5, "both")[0].item() > 10
    # Where valid is 0 (filled in by augmentation) even a wrong answer costs nothing.
    valid = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    half_wrong = logits.clone()
    half_wrong[0, 0, 0, 1] = 30.0
    assert dice_bce_loss(half_wrong, target, valid, 0.5, "both")[0].item() < 1e-3


def test_dice_weight_mixes_the_two_terms():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    valid = torch.ones_like(target)
    bce_only, parts = dice_bce_loss(logits, target, valid, 0.0, "cell")
    dice_only, _ = dice_bce_loss(logits, target, valid, 1.0, "cell")
    mixed, _ = dice_bce_loss(logits, target, valid, 0.25, "cell")
    assert bce_only.item() == pytest.approx(parts["bce"])
    assert mixed.item() == pytest.approx(0.25 * dice_only.item() + 0.75 * bce_only.item(), rel=1e-5)


def test_border_weights_by_hand():
    # Two cells (columns 0-3 and 5-8) and a membrane column 4 between them.
    cell = np.ones((6, 9), bool)
    cell[:, 4] = False
    weights = border_weights(cell, 10.0, 5.0)
    # Membrane pixel: one pixel to each cell, d1 + d2 = 2; a cell's pixel beside the
    # membrane: inside its own cell (0) and two pixels from the other; a pixel at the far
    # edge: 0 and 5.
    assert weights[2, 4] == pytest.approx(1 + 10 * np.exp(-4 / 50), rel=1e-6)
    assert weights[2, 3] == pytest.approx(1 + 10 * np.exp(-4 / 50), rel=1e-6)
    assert weights[2, 0] == pytest.approx(1 + 10 * np.exp(-25 / 50), rel=1e-6)
    assert (border_weights(np.ones((6, 9), bool), 10.0, 5.0) == 1).all()  # one cell: nothing between cells


def test_weighted_cross_entropy_is_the_weighted_mean_and_dice_ignores_the_weights():
    target = torch.tensor([[[[1.0, 0.0]]]])
    logits = torch.tensor([[[[0.3, 0.4]]]])
    per_pixel = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten()
    weight = torch.tensor([[[[1.0, 3.0]]]])
    _, parts = dice_bce_loss(logits, target, weight, 0.5, "both")
    assert parts["bce"] == pytest.approx(((per_pixel[0] + 3 * per_pixel[1]) / 4).item(), rel=1e-6)
    assert parts["dice"] == pytest.approx(
        dice_bce_loss(logits, target, torch.ones_like(weight), 0.5, "both")[1]["dice"]
    )


def test_crop_sampler_carries_the_border_weights_through_augmentation(stacks):
    images, labels = stacks
    plain = tiny_config()
    weighted = tiny_config(loss={**plain["train"]["loss"], "border_weight": 10.0})
    for config in (plain, weighted):
        config["augment"].update(
            flips=False, rot90=False, rotation_degrees=0, elastic_probability=0, brightness=0, contrast=0
        )
    image, target, weight = CropSampler(images, labels, [0, 1], weighted, 0, 0).batch(3)
    same_image, same_target, ones = CropSampler(images, labels, [0, 1], plain, 0, 0).batch(3)
    assert torch.equal(image, same_image) and torch.equal(target, same_target) and (ones == 1).all()
    assert weight.min() >= 1 and weight.max() > 2
    # Augmented: the weights move with the labels and stay 0 where pixels are filled in.
    weighted["augment"].update(rotation_degrees=30)
    _, _, rotated = CropSampler(images, labels, [0, 1], weighted, 0, 0).batch(3)
    assert (rotated == 0).any() and rotated.max() > 2


def test_two_cpu_runs_with_one_seed_give_identical_weights(stacks, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, metadata = run(stacks, tmp_path / "a", tiny_config())
    second, _ = run(stacks, tmp_path / "b", tiny_config())
    assert same_weights(first, second)
    other = tiny_config()
    other["seed"] = 1
    (tmp_path / "c").mkdir()
    assert not same_weights(first, run(stacks, tmp_path / "c", other)[0])
    assert metadata.seed == 0 and metadata.versions["torch"] == torch.__version__
    assert not (tmp_path / "a" / "ck.pt").exists()  # removed once the model is written
    # The metadata beside the weights, as JSON, is the model file's, for readers without torch.
    beside = json.loads((tmp_path / "a" / "m.json").read_text())
    stored = torch.load(tmp_path / "a" / "m.pt", weights_only=True)
    assert (
        beside == {k: v for k, v in stored.items() if k != "state_dict"} == json.loads(json.dumps(metadata.to_json()))
    )
    assert FoldModel.from_json(beside) == metadata  # the record round-trips through JSON
    assert beside["train_slices"] == [0, 1, 2, 3] and beside["steps"] == 12 and beside["wall_seconds"] > 0


def test_batches_made_by_worker_processes_give_the_same_weights(stacks, tmp_path):
    (tmp_path / "in_process").mkdir(), (tmp_path / "workers").mkdir()
    in_process, _ = run(stacks, tmp_path / "in_process", tiny_config())
    by_workers, _ = run(stacks, tmp_path / "workers", tiny_config(data_workers=2))
    assert same_weights(in_process, by_workers)


@pytest.mark.parametrize("schedule", ["onecycle", "plateau", "constant"])
def test_resuming_from_a_checkpoint_ends_with_identical_weights(stacks, tmp_path, schedule):
    config = tiny_config(schedule=schedule)
    (tmp_path / "whole").mkdir(), (tmp_path / "parts").mkdir()
    whole, _ = run(stacks, tmp_path / "whole", config)
    # Stop the same 12-step run right after its checkpoint at step 8, as a kill would.
    images, labels = stacks
    from cellseg import train as train_module

    class Killed(Exception):
        pass

    original = train_module.save_atomically

    def save_then_die(payload, path):
        original(payload, path)
        if payload.get("step") == 8:
            raise Killed

    train_module.save_atomically = save_then_die
    try:
        with pytest.raises(Killed):
            train_fold(
                TrainingData(images, labels, TrainingInput()), [0, 1, 2, 3], config, 0, paths(tmp_path / "parts")
            )
    finally:
        train_module.save_atomically = original
    assert (tmp_path / "parts/ck.pt").exists() and not (tmp_path / "parts/m.pt").exists()
    # A checkpoint is data: it loads without unpickling arbitrary objects.
    assert torch.load(tmp_path / "parts/ck.pt", weights_only=True)["step"] == 8
    resumed, _ = run(stacks, tmp_path / "parts", config)
    assert same_weights(whole, resumed)


def test_a_checkpoint_that_is_not_plain_data_is_ignored(stacks, tmp_path, caplog):
    config = tiny_config()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    reference, _ = run(stacks, tmp_path / "a", config)
    # As older versions wrote them: numpy's random state pickled as an ndarray.
    torch.save({"fingerprint": "x", "rng": {"numpy": np.random.get_state()}}, tmp_path / "b" / "ck.pt")
    assert same_weights(reference, run(stacks, tmp_path / "b", config)[0])
    assert "does not load as plain data" in caplog.text


def test_a_checkpoint_of_another_configuration_is_ignored(stacks, tmp_path, caplog):
    caplog.set_level("INFO")
    config = tiny_config()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    reference, _ = run(stacks, tmp_path / "a", config)
    torch.save({"fingerprint": "another run", "step": 8}, tmp_path / "b" / "ck.pt")
    assert same_weights(reference, run(stacks, tmp_path / "b", config)[0])
    assert "belongs to another configuration" in caplog.text


def test_held_out_slices_are_never_read(stacks, tmp_path):
    images, labels = stacks
    poisoned = images.copy()
    poisoned[4:] = np.nan  # slices 4 and 5 are held out
    state, _ = run((poisoned, labels), tmp_path, tiny_config(), slices=(0, 1, 2, 3))
    assert all(torch.isfinite(v.float()).all() for v in state.values())


def test_progress_log_shows_loss_rate_throughput_and_eta(stacks, tmp_path, caplog):
    caplog.set_level("INFO")
    run(stacks, tmp_path, tiny_config())
    line = next(r.getMessage() for r in caplog.records if "step 12/12" in r.getMessage())
    for part in ("loss", "lr", "crops/s", "elapsed", "ETA"):
        assert part in line


def test_random_states_survive_a_weights_only_checkpoint(tmp_path):
    import random

    from cellseg.train import restore_rng_states, rng_states

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    torch.save({"rng": rng_states()}, tmp_path / "ck.pt")
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_states(torch.load(tmp_path / "ck.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1]) and drawn[2] == again[2]


@pytest.mark.skipif(
    not Path("/proc/cpuinfo").exists() or platform.machine() != "x86_64", reason="reads x86 Linux flags"
)
def test_auto_precision_picks_bf16_only_where_the_cpu_has_bf16_instructions():
    # oneDNN says bf16 is supported on any AVX-512 CPU, but without AVX512_BF16 or AMX it
    # emulates it and training ran at half the fp32 speed (docs/benchmarks.md).
    flags = set(Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split())
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert cpu_has_fast_bf16() is native
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
