"""Snakemake end to end: the smoke config on the ISBI stacks, own stacks, and bad input.

Every run happens in a temporary copy of the workflow; nothing here mocks Snakemake.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import yaml

from conftest import REPO, closed_port_url, copy_workflow, make_stacks, planned_jobs, snakemake, write_stack
from test_predict import recipe


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- the real ISBI stacks through the default sources -----------------------------------


def test_smoke_config_runs_end_to_end_on_isbi(isbi_run):
    work, result = isbi_run
    assert result.returncode == 0, result.stderr
    folds = pd.read_csv(work / "results/smoke/folds.tsv", sep="\t")
    assert folds.slice.tolist() == list(range(30)) and folds.fold.tolist() == [0] * 15 + [1] * 15
    for stack in ("train_images", "train_labels", "test_images"):
        (log,) = (work / "resources/logs/fetch_stack").glob(f"{stack}-*.log")
        assert "../shared/isbi2012/" in log.read_text() and "verified against data.sha256" in log.read_text()
    (labels,) = (work / "resources/unpacked").glob("*/train_labels.npy")
    assert np.load(labels).shape == (30, 512, 512)


def test_second_run_has_nothing_to_do(isbi_run):
    work, _ = isbi_run
    result = snakemake(work, "--configfile", "config/smoke.yaml", "-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


DOWNSTREAM_OF_PREDICTION = {
    "segment_held_out": 1,
    "evaluate": 1,
    "draw_figures": 1,
    "encode_viewer": 1,
    "render_report": 1,
    "all": 1,
}
# A pixel threshold changes the pixel scores, not the cells.
DOWNSTREAM_OF_THRESHOLD = {k: v for k, v in DOWNSTREAM_OF_PREDICTION.items() if k != "segment_held_out"}


@pytest.mark.parametrize(
    "override, expected_jobs",
    [
        # More folds: new splits, models and predictions, but nothing fetched again.
        (
            "cv:\n  folds: 3\n",
            {
                "split_folds": 1,
                "train_unet": 3,
                "predict_held_out": 3,
                "predict_test_volume": 1,
                **DOWNSTREAM_OF_PREDICTION,
            },
        ),
        # Prediction settings never retrain.
        ("predict:\n  tta: 8\n", {"predict_held_out": 2, "predict_test_volume": 1, **DOWNSTREAM_OF_PREDICTION}),
        # The threshold reruns evaluation, figures and report only.
        ("eval:\n  threshold: 0.4\n", DOWNSTREAM_OF_THRESHOLD),
    ],
    ids=["folds", "tta", "threshold"],
)
def test_a_config_change_reruns_only_what_depends_on_it(isbi_run, override, expected_jobs):
    work, _ = isbi_run
    (work / "override.yaml").write_text(override)
    result = snakemake(work, "--configfile", "config/smoke.yaml", "override.yaml", "-n")
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result.stdout) == expected_jobs


def test_how_a_training_runs_never_retrains(isbi_run):
    work, _ = isbi_run
    (work / "run_settings.yaml").write_text(
        "resources:\n  train_threads: 1\n  train_gpus: 0\n  data_workers: 1\n"
        "  checkpoint_every: 7\n  log_every_seconds: 3\n"
    )
    result = snakemake(work, "--configfile", "config/smoke.yaml", "run_settings.yaml", "-n")
    assert result.returncode == 0, result.stderr
    # Only the report, which shows the config it was made with.
    assert planned_jobs(result.stdout) == {"render_report": 1, "all": 1}


def test_smoke_run_writes_finite_metric_tables(isbi_run):
    work, _ = isbi_run
    metrics = work / "results/smoke/metrics"
    per_slice = pd.read_csv(metrics / "per_slice.tsv", sep="\t")
    assert per_slice.slice.tolist() == list(range(30)) and per_slice.fold.tolist() == [0] * 15 + [1] * 15
    for column in (
        "cell_dice",
        "membrane_dice",
        "membrane_iou",
        "misclassified_fraction",
        "challenge_pixel_error",
        "skimage_adapted_rand_error",
    ):
        assert np.isfinite(per_slice[column]).all() and per_slice[column].between(0, 1).all()
    assert pd.read_csv(metrics / "per_fold.tsv", sep="\t").fold.tolist() == [0, 1]
    summary = pd.read_csv(metrics / "summary.tsv", sep="\t")
    assert np.isfinite(summary[["mean", "sd", "ci95_low", "ci95_high", "pooled"]].to_numpy()).all()


def test_smoke_run_trains_and_predicts_every_fold(isbi_run):
    work, _ = isbi_run
    results = work / "results/smoke"
    folds = pd.read_csv(results / "folds.tsv", sep="\t")
    (labels_path,) = (work / "resources/unpacked").glob("*/train_labels.npy")
    labels = np.load(labels_path)
    for fold in (0, 1):
        model = torch.load(results / f"models/fold{fold}.pt", weights_only=True)
        held_out = folds[folds.fold == fold].slice.tolist()
        assert model["train_slices"] == [s for s in range(30) if s not in held_out]
        assert model["config"]["model"]["depth"] == 2 and model["versions"]["torch"]
        curve = pd.read_csv(results / f"models/fold{fold}_curve.tsv", sep="\t")
        assert curve.step.iloc[-1] == 40 and np.isfinite(curve.loss).all()
        maps = sorted((results / f"predictions/held_out/fold{fold}").glob("slice_*.tif"))
        assert [int(p.stem[6:]) for p in maps] == held_out
        probability = tifffile.imread(maps[0])
        assert probability.dtype == np.float32 and probability.shape == (512, 512)
        # The label convention, 1 = cell: even 40 steps put cells above membranes.
        truth = labels[held_out[0]]
        assert probability[truth == 1].mean() > probability[truth == 0].mean() + 0.1
        assert (results / f"benchmarks/train_unet/fold{fold}.tsv").exists()
    volume = tifffile.imread(results / "predictions/test_volume.tif")
    assert volume.shape == (30, 512, 512) and volume.dtype == np.float32
    assert 0 <= volume.min() and volume.max() <= 1


def test_a_killed_training_resumes_to_identical_weights(isbi_run, tmp_path):
    """SIGKILL the smoke training after its first checkpoint, start again, compare with
    the uninterrupted run of isbi_run: bitwise equal weights (and so also determinism)."""
    work, _ = isbi_run
    fresh = copy_workflow(tmp_path / "work")
    (tmp_path / "shared").symlink_to((work.parent / "shared").resolve(), target_is_directory=True)
    target = "results/smoke/models/fold0.pt"
    checkpoint = fresh / "results/smoke/models/fold0.checkpoint.pt"
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile", "config/smoke.yaml"],
        cwd=fresh,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (fresh / target).exists(), "training was not caught mid-run"

    assert snakemake(fresh, "--unlock", "--configfile", "config/smoke.yaml").returncode == 0
    result = snakemake(fresh, target, "--rerun-incomplete", "--configfile", "config/smoke.yaml")
    assert result.returncode == 0, result.stderr
    assert (
        "resuming fold 0 from its checkpoint at step" in (fresh / "results/smoke/logs/train_unet/fold0.log").read_text()
    )
    resumed = torch.load(fresh / target, weights_only=True)["state_dict"]
    uninterrupted = torch.load(work / target, weights_only=True)["state_dict"]
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    assert not checkpoint.exists()


def test_the_folds_do_not_depend_on_the_test_stack(isbi_run, tmp_path):
    work, _ = isbi_run
    images, _ = make_stacks(tmp_path / "other", slices=3, height=64, width=64)
    for test_images in ([], [str(images)]):
        (work / "test_stack.yaml").write_text(yaml.safe_dump({"data": {"test_images": test_images}}))
        result = snakemake(work, "--configfile", "config/smoke.yaml", "test_stack.yaml", "-n")
        assert result.returncode == 0, result.stderr
        jobs = planned_jobs(result.stdout)
        assert "train_unet" not in jobs and "split_folds" not in jobs and "predict_held_out" not in jobs
        assert jobs.get("predict_test_volume", 0) == (1 if test_images else 0)


def test_experiments_on_other_data_sit_side_by_side(isbi_run, tmp_path):
    """A on ISBI, then B on other stacks in the same folder, then A again with only its
    threshold changed: B fetches and trains its own, and A reruns evaluation only."""
    work, _ = isbi_run
    fresh = tmp_path / "work"
    shutil.copytree(work, fresh, symlinks=True)
    (tmp_path / "shared").symlink_to((work.parent / "shared").resolve(), target_is_directory=True)
    images, labels = make_stacks(tmp_path / "b", slices=4, height=40, width=48)
    (fresh / "b.yaml").write_text(
        yaml.safe_dump(
            {
                "experiment": "b",
                "data": {"train_images": [str(images)], "train_labels": [str(labels)], "test_images": []},
            }
        )
    )
    planned = snakemake(fresh, "--configfile", "config/smoke.yaml", "b.yaml", "-n")
    assert planned_jobs(planned.stdout)["fetch_stack"] == 2, planned.stdout
    result = snakemake(fresh, "--configfile", "config/smoke.yaml", "b.yaml")
    assert result.returncode == 0, result.stderr
    (fresh / "threshold.yaml").write_text("eval:\n  threshold: 0.4\n")
    again = snakemake(fresh, "--configfile", "config/smoke.yaml", "threshold.yaml", "-n")
    assert again.returncode == 0, again.stderr
    assert planned_jobs(again.stdout) == DOWNSTREAM_OF_THRESHOLD


def test_the_same_sample_as_uint8_uint16_or_float_predicts_the_same(isbi_run, isbi_dir):
    """The issue's case: a 16-bit export of 8-bit data. Per-stack normalisation gives the
    model the same input whatever the dtype; scaling by the dtype's range does not."""
    from cellseg.inference import FoldEnsemble
    from cellseg.stackio import read_source
    from cellseg.stacks import normalise_images

    work, _ = isbi_run
    raw = read_source(isbi_dir / "test-volume.tif").pixels[:2]
    stored = {"uint8": raw, "uint16": raw.astype(np.uint16), "float32": raw.astype(np.float32) / 255}
    ensemble = FoldEnsemble([work / "results/smoke/models/fold0.pt"], recipe(channels_last=False))

    def probabilities(method):
        return {
            name: ensemble.predict(normalise_images(stack, name, method, PERCENTILES)[0])[0]
            for name, stack in stored.items()
        }

    same = probabilities("percentile")
    assert max(np.abs(same[name] - same["uint8"]).max() for name in stored) < 1e-3
    scaled = probabilities("dtype_range")
    assert np.abs(scaled["uint16"] - scaled["uint8"]).mean() > 0.05


# The schema's default percentiles of the percentile normalisation.
PERCENTILES = (1.0, 99.8)


# -- own stacks: only the sources in the user's file -----------------------------------


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    images, labels = make_stacks(root / "data", slices=6, height=37, width=45)
    # The stack to segment as Fiji saves a calibrated stack: 4 nm pixels, 50 nm sections.
    test_images = root / "data" / "test" / "fiji.tif"
    test_images.parent.mkdir(parents=True)
    tifffile.imwrite(
        test_images,
        tifffile.imread(make_stacks(root / "data" / "raw", slices=3, seed=1)[0]),
        imagej=True,
        resolution=(250, 250),
        metadata={"axes": "ZYX", "spacing": 0.05, "unit": "micron"},
    )
    work = copy_workflow(root / "work")
    # The labelled stacks carry no calibration: the config gives their pixel size.
    mine = {
        "data": {
            "train_images": [str(images)],
            "train_labels": [str(labels)],
            "test_images": [str(test_images)],
            "voxel_size": {"y": 4, "x": 4, "unit": "nm"},
        }
    }
    (work / "mine.yaml").write_text(yaml.safe_dump(mine))
    return work, snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml")


def test_own_stacks_need_nothing_but_their_sources(own_run):
    work, result = own_run
    assert result.returncode == 0, result.stderr
    (log,) = (work / "resources/logs/fetch_stack").glob("train_images-*.log")
    assert "no expected hash in data.sha256" in log.read_text()
    (images,) = (work / "resources/unpacked").glob("*/train_images.npy")
    assert np.load(images).shape == (6, 37, 45)
    folds = pd.read_csv(work / "results/smoke/folds.tsv", sep="\t")
    assert folds.fold.tolist() == [0, 0, 0, 1, 1, 1]


def test_outputs_open_in_fiji_at_the_stacks_scale(own_run):
    work, _ = own_run
    with tifffile.TiffFile(work / "results/smoke/predictions/test_volume.tif") as tiff:
        metadata = tiff.imagej_metadata
        assert tiff.series[0].axes == "ZYX" and tiff.series[0].shape == (3, 37, 45)
        assert metadata["unit"] == "micron" and metadata["spacing"] == pytest.approx(0.05)
        assert (metadata["min"], metadata["max"]) == (0, 1)
        assert tiff.pages.first.get_resolution() == pytest.approx((250, 250))
    with tifffile.TiffFile(work / "results/smoke/predictions/held_out/fold0/slice_000.tif") as tiff:
        assert tiff.series[0].axes == "YX" and tiff.imagej_metadata["unit"] == "micron"
        assert tiff.pages.first.get_resolution() == pytest.approx((250, 250))
    report = (work / "results/smoke/report.html").read_text()
    assert "z 0.05, y 0.004, x 0.004 micron" in report and "z ?, y 0.004, x 0.004 micron" in report
    assert "the test stack: its pixels are 4 x 4 nm, the training stack&#39;s 4 x 4 nm: predicted at its own" in report


def test_a_single_section_to_segment_goes_through_to_the_report(own_run, tmp_path):
    from PIL import Image

    work = tmp_path / "work"
    shutil.copytree(own_run[0], work, symlinks=True)
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 50), dtype=np.uint8)).save(
        tmp_path / "one section.png"
    )
    (work / "one.yaml").write_text(yaml.safe_dump({"data": {"test_images": [str(tmp_path / "one section.png")]}}))
    result = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "one.yaml")
    assert result.returncode == 0, result.stderr
    assert "rule train_unet:" not in result.stderr  # the models stay as they were
    assert tifffile.imread(work / "results/smoke/predictions/test_volume.tif").shape == (40, 50)
    assert (work / "results/smoke/figures/test_volume.jpg").exists()


def test_no_test_stack_is_allowed(own_run, tmp_path):
    work = copy_workflow(tmp_path / "work")
    shutil.copy(own_run[0] / "mine.yaml", work)
    (work / "notest.yaml").write_text("data:\n  test_images: []\n")
    dry_run = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "notest.yaml", "-n")
    assert dry_run.returncode == 0, dry_run.stderr
    jobs = planned_jobs(dry_run.stdout)
    assert jobs["fetch_stack"] == 2 and "unpack_test_stack" not in jobs and "predict_test_volume" not in jobs
    result = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "notest.yaml")
    assert result.returncode == 0, result.stderr
    assert (work / "results/smoke/report.html").exists()
    assert not (work / "results/smoke/figures/test_volume.jpg").exists()


def test_a_source_replaced_under_the_same_name_is_fetched_again(own_run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(own_run[0], work, symlinks=True)
    mine = yaml.safe_load((work / "mine.yaml").read_text())
    test_stack = Path(mine["data"]["test_images"][0])
    mine["data"]["test_images"] = [str(tmp_path / "test.tif")]
    shutil.copy2(test_stack, tmp_path / "test.tif")
    (work / "mine.yaml").write_text(yaml.safe_dump(mine))
    assert snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml").returncode == 0
    records = [json.loads(p.read_text()) for p in (work / "resources/stacks").glob("test_images-*.json")]
    (record,) = [r for r in records if r["source"] == str(tmp_path / "test.tif")]
    size, mtime = record["files"][str(tmp_path / "test.tif")]
    assert size == (tmp_path / "test.tif").stat().st_size
    again = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # Another stack written under the same name, its modification time set back to the
    # old one's (as cp -p or an archive does): still seen, by its size.
    replacement = np.random.default_rng(5).integers(0, 255, (2, 30, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "test.tif", replacement, photometric="minisblack")
    os.utime(tmp_path / "test.tif", ns=(mtime, mtime))
    planned = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "-n")
    jobs = planned_jobs(planned.stdout)
    assert jobs["fetch_stack"] == 1 and jobs["predict_test_volume"] == 1 and "train_unet" not in jobs
    assert snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml").returncode == 0
    assert tifffile.imread(work / "results/smoke/predictions/test_volume.tif").shape == (2, 30, 30)
    # A source that is gone changes nothing: the fetched copy stands in for it.
    (tmp_path / "test.tif").unlink()
    gone = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "-n")
    assert gone.returncode == 0 and "Nothing to be done" in gone.stdout + gone.stderr


def test_two_existing_stacks_in_one_fallback_list_are_refused(own_run, tmp_path):
    work = copy_workflow(tmp_path / "work")
    mine = yaml.safe_load((own_run[0] / "mine.yaml").read_text())
    images = mine["data"]["train_images"][0]
    second, _ = make_stacks(tmp_path / "animal2")
    mine["data"]["train_images"] = [images, str(second)]
    (work / "mine.yaml").write_text(yaml.safe_dump(mine))
    result = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "-n")
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert f"data.train_images lists 2 sources that exist: {images}, {second}" in said, said
    assert "only the first that can be read is used" in said


# -- bad input: a clear error, a non-zero exit, earlier results untouched ---------------


def bad_case(name: str, case: Path, server_url: str):
    """(config override, expected message regex, result files the failed job may replace)."""
    mine = yaml.safe_load((case.parent / "work/mine.yaml").read_text())["data"]
    images = Path(mine["train_images"][0])
    case.mkdir()
    rng = np.random.default_rng(0)

    def images_from(array: np.ndarray) -> dict:
        return {"data": {"train_images": [str(write_stack(case / "bad.tif", array))]}}

    def labels_from(array: np.ndarray) -> dict:
        return {"data": {"train_labels": [str(write_stack(case / "bad.tif", array))]}}

    if name == "missing file":
        return {"data": {"train_images": [str(case / "absent.tif")]}}, r"absent\.tif: no such file", ()
    if name == "truncated file":
        (case / "cut.tif").write_bytes(images.read_bytes()[:-800])
        return {"data": {"train_images": [str(case / "cut.tif")]}}, "cut.tif is truncated", ()
    if name == "not a TIFF":
        (case / "notes.tif").write_text("pixels, honestly")
        return {"data": {"train_images": [str(case / "notes.tif")]}}, "notes.tif is not a TIFF file", ()
    if name == "RGB stack":
        return images_from(rng.integers(0, 255, (6, 37, 45, 3), dtype=np.uint8)), "3 colour samples", ()
    if name == "2-D image":
        image = rng.integers(0, 255, (37, 45), dtype=np.uint8)
        flat_images, flat_labels = (
            write_stack(case / "flat.tif", image),
            write_stack(case / "flat_labels.tif", image > 60),
        )
        return (
            {"data": {"train_images": [str(flat_images)], "train_labels": [str(flat_labels)]}},
            "has 1 labelled slices, fewer than cv.folds = 2",
            ("folds.tsv", "logs/split_folds.log"),
        )
    if name == "shapes differ":
        _, other = make_stacks(case / "other", slices=6, height=36, width=45)
        return {"data": {"train_labels": [str(other)]}}, f"{images} .* and the labels {other} .* differ in shape", ()
    if name == "three label values":
        return labels_from(rng.integers(0, 3, (6, 37, 45), dtype=np.uint8)), r"label values \{0, 1, 2\}", ()
    if name == "empty stack":
        return images_from(np.zeros((0, 37, 45), np.uint8)), r"is an empty stack of shape \(0, 37, 45\)", ()
    if name == "membrane as foreground":
        membrane = rng.random((6, 37, 45)) < 0.2
        return labels_from((membrane * 255).astype(np.uint8)), r"covers only 2\d\.\d % .*data\.label_cell_value: 0", ()
    if name == "pages of different shapes":
        with tifffile.TiffWriter(case / "mixed.tif") as tiff:
            for shape in [(37, 45)] * 4 + [(37, 50)] * 2:
                tiff.write(np.zeros(shape, np.uint8), photometric="minisblack", metadata=None)
        return {"data": {"train_images": [str(case / "mixed.tif")]}}, "has 6 pages of different shapes", ()
    if name == "two channels":
        tifffile.imwrite(case / "fiji.tif", np.zeros((6, 2, 37, 45), np.uint8), imagej=True, metadata={"axes": "ZCYX"})
        return {"data": {"train_images": [str(case / "fiji.tif")]}}, "has 2 channels .*data.channel", ()
    if name == "constant labels":
        return labels_from(np.ones((6, 37, 45), np.uint8)), "single label value", ()
    if name == "NaN pixels":
        array = rng.random((6, 37, 45)).astype(np.float32)
        array[2, 5, 7] = np.nan
        return images_from(array), "NaN or infinite pixels, the first in slice 2", ()
    if name == "fewer slices than folds":
        one_images, one_labels = make_stacks(case / "one", slices=1)
        override = {"data": {"train_images": [str(one_images)], "train_labels": [str(one_labels)]}}
        return override, "has 1 labelled slices, fewer than cv.folds = 2", ("folds.tsv", "logs/split_folds.log")
    if name == "hash mismatch":
        return {"data": {"sha256": {str(images): "0" * 64}}}, f"expected sha256 {'0' * 64}, found [0-9a-f]{{64}}", ()
    if name == "unknown key":
        return {"cv": {"fold": 3}}, "unknown config key 'cv.fold'; did you mean 'cv.folds'", ()
    if name == "wrong type":
        return {"cv": {"folds": "two"}}, "config key 'cv.folds': 'two' is not of type 'integer'", ()
    if name == "unreachable URL":
        return {"data": {"train_images": [closed_port_url()]}}, "Connection refused", ()
    if name == "HTTP error":
        return {"data": {"train_images": [f"{server_url}/files/nothing.tif"]}}, "HTTP 404", ()
    if name == "dropped connection":
        return {"data": {"train_images": [f"{server_url}/drop/images.tif"]}}, "connection closed after", ()
    raise AssertionError(name)


BAD_CASES = [
    "missing file",
    "truncated file",
    "not a TIFF",
    "RGB stack",
    "2-D image",
    "shapes differ",
    "three label values",
    "membrane as foreground",
    "pages of different shapes",
    "two channels",
    "empty stack",
    "constant labels",
    "NaN pixels",
    "fewer slices than folds",
    "hash mismatch",
    "unknown key",
    "wrong type",
    "unreachable URL",
    "HTTP error",
    "dropped connection",
]


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input_fails_clearly_and_keeps_earlier_results(name, own_run, stack_server, tmp_path):
    assert own_run[1].returncode == 0, own_run[1].stderr
    work = tmp_path / "work"
    shutil.copytree(own_run[0], work, symlinks=True)
    override, message, replaced = bad_case(name, tmp_path / "case", stack_server.url)
    override.setdefault("data", {})["download_retries"] = 0
    (work / "bad.yaml").write_text(yaml.safe_dump(override))
    before = snapshot(work / "results/smoke")

    result = snakemake(work, "--configfile", "config/smoke.yaml", "mine.yaml", "bad.yaml")

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.search(message, output), output
    after = snapshot(work / "results/smoke")
    assert {k: v for k, v in after.items() if k not in replaced} == {
        k: v for k, v in before.items() if k not in replaced
    }


# -- lint and format --------------------------------------------------------------------


def test_snakemake_lint_reports_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes_over_package_benchmarks_scripts_and_tests(command):
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [ruff, *command, "workflow", "benchmarks", "scripts", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_check_passes():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    result = subprocess.run([snakefmt, "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
