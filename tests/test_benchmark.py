"""Benchmark measurements (the benchmarks package) on tiny sizes: they measure what they say."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np
import torch

from benchmarks.tools import (
    PHASES,
    Budget,
    StepVariant,
    inference_code,
    matmul_peak,
    measure_in_subprocess,
    step_flops,
    time_convolutions,
    time_training,
)
from cellseg.config import load_config, merged
from cellseg.records import TrainingInput
from cellseg.train import TrainingData
from conftest import REPO, copy_workflow

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def tiny_config(crop: int = 32) -> dict:
    config = load_config([REPO / "config/config.yaml", REPO / "config/smoke.yaml"], SCHEMA)
    return merged(config, {"train": {"crop_size": crop, "batch_size": 2}})


def test_matmul_peak_agrees_with_a_product_timed_by_hand():
    rate = matmul_peak(torch.float32, torch.device("cpu"), max_size=256, seconds=0.2)
    # The same 256 x 256 product timed here, best of 50: 2 n^3 floating-point operations.
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(50):
        began = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    by_hand = 2 * 256**3 / best / 1e9
    # Both are best-of-many timings of one kernel: a factor of 2 (FLOPs miscounted) or of
    # 1000 (units) falls outside; the machine's noise does not.
    assert 0.6 < rate / by_hand < 1.67, (rate, by_hand)


def test_step_flops_count_convolutions_forward_and_backward():
    small, large = (step_flops(tiny_config(crop), torch.device("cpu")) for crop in (32, 64))
    # Every layer is a convolution over the crop: four times the pixels, four times the FLOPs.
    assert large == 4 * small
    # The first 3x3 convolution alone (1 -> 4 channels over 2 x 32 x 32) is 2*9*4*2048 forward.
    assert small > 3 * 2 * 9 * 4 * 2 * 32 * 32


def test_convolutions_timed_alone_add_up_to_the_step():
    config = tiny_config()
    rows = time_convolutions(config, torch.device("cpu"), "fp32", True, seconds_per_layer=0.01)
    # smoke model: depth 2 -> 2 (inc) + 2 x 2 (downs) + 2 x 3 (ups) + 1 (head) convolutions
    assert len(rows) == 13
    assert [r["in_channels"] for r in rows[:3]] == [1, 4, 4] and rows[-1]["out_channels"] == 1
    # Every FLOP of a step is a convolution's, counted with the same gradients.
    assert math.isclose(sum(r["gflop"] for r in rows) * 1e9, step_flops(config, torch.device("cpu")))
    assert all(r["seconds"] > 0 and r["gflops_achieved"] > 0 for r in rows)


def test_training_timing_splits_a_step_into_its_phases():
    rng = np.random.default_rng(0)
    images = rng.random((4, 48, 48), dtype=np.float32)
    labels = (rng.random((4, 48, 48)) > 0.3).astype(np.uint8)
    timing = time_training(
        tiny_config(),
        TrainingData(images, labels, TrainingInput()),
        [0, 1, 2],
        StepVariant(torch.device("cpu"), "fp32", True),
        Budget(warmup=1, min_seconds=0.2, max_steps=5),
    )
    # Crops a second is the batch (2 crops) over the seconds a step takes.
    assert 1 <= timing["steps"] <= 5 and math.isclose(timing["crops_per_second"] * timing["step_seconds"], 2)
    phases = [timing[f"{phase}_seconds"] for phase in PHASES]
    assert all(p > 0 for p in phases) and sum(phases) <= timing["step_seconds"] * 1.05


def test_measure_in_subprocess_reports_the_childs_own_peak_memory():
    parents_block = np.ones(600_000_000 // 8)  # touched: the parent's peak is above 600 MB
    measured = measure_in_subprocess(
        "import numpy as np\nblock = np.ones(50_000_000 // 8)\nresult = {'n': int(block.size)}"
    )
    assert measured["n"] == 50_000_000 // 8 and 45 < measured["peak_rss_mb"] < 400
    assert parents_block[-1] == 1


def test_inference_code_times_a_slice_in_the_precision_asked(tmp_path):
    from test_predict import save_model

    model = str(save_model(tmp_path / "m.pt"))
    # 8-fold TTA runs the network 8 times where 1 runs it once: the time a slice takes
    # grows with it (by 8 for the network; less for the tiling around it).
    # Alternated and the fastest of three of each, so that a burst of load on a shared
    # machine (seen: a ratio of 1.2 while a package installed) does not decide the ratio.
    timings = {1: [], 8: []}
    for _ in range(3):
        for tta in timings:
            timings[tta].append(
                measure_in_subprocess(inference_code(model, 192, tta, 64, "fp32", repeats=3))["seconds_per_slice"]
            )
    one, eight = min(timings[1]), min(timings[8])
    assert 3 < eight / one < 12, timings
    bf16 = measure_in_subprocess(inference_code(model, 96, 2, 64, "bf16"))
    assert math.isfinite(bf16["seconds_per_slice"]) and bf16["peak_rss_mb"] > 45


def test_every_benchmark_module_imports_without_nnunet():
    """nnU-Net is an optional peer: only its two step modules use it, and only when run."""
    modules = sorted(f"benchmarks.{p.stem}" for p in (REPO / "benchmarks").glob("*.py") if p.stem != "__init__")
    code = f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
    code += "assert 'nnunetv2' not in sys.modules, 'nnunetv2 imported'"
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "benchmarks.nnunet_train" in modules and "benchmarks.tools" in modules


def test_bench_script_refuses_an_unknown_section_or_peer():
    import subprocess
    import sys

    for option, value, message in (
        ("--sections", "peaks,speed", "unknown sections ['speed']"),
        ("--peers", "seed,nnformer", "unknown peers ['nnformer']"),
    ):
        finished = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench", option, value], capture_output=True, text=True
        )
        assert finished.returncode == 2 and message in finished.stderr


def test_gpu_check_runs_every_stage_on_a_cpu_with_the_tiny_recipe(isbi_dir, tmp_path):
    """benchmarks.gpu_check --tiny: the check a lent GPU runs, end to end on the smoke
    recipe in a copy of the workflow (its own ../shared), every stage reported."""
    (tmp_path / "shared").symlink_to(isbi_dir.parent, target_is_directory=True)
    work = copy_workflow(tmp_path / "work")
    shutil.copytree(REPO / "benchmarks", work / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out"
    # Run from the copy, `-m` finds the copy's benchmarks before the installed one: the check
    # runs Snakemake in the checkout that holds it, the copy, never this one.
    check = ["benchmarks.gpu_check", "--tiny", "--minutes", "15", "--gpu-jobs", "2", "--out", str(out)]
    finished = subprocess.run(
        [sys.executable, "-m", *check],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert (work / "results/smoke/metrics/summary.tsv").is_file()
    stages = json.loads((out / "stages.json").read_text())
    assert [row["dtype"] for row in stages["peaks"]] == ["fp32", "bf16"]
    assert stages["ceiling"][0]["steps_per_second"] > 0 and stages["loader"][0]["crops_per_second"] > 0
    assert stages["fold_run"]["finished"] and stages["pipeline_run"]["finished"]
    fold = stages["fold"]
    assert fold["steps"] == 4 and fold["slices"] == 15 and 0 <= fold["membrane_dice"] <= 1
    assert 0 <= fold["challenge_pixel_error"] <= 1 and fold["tflops"] > 0
    assert [row["fold"] for row in stages["per_fold"]] == [0, 1]
    summary = (out / "summary.md").read_text()
    for title in ("Peaks", "Ceiling", "Real training step", "Fold 0 through snakemake", "Whole pipeline", "Every way"):
        assert f"## {title}" in summary
    # The methods stage made the cells again, each fold's threshold chosen on the other fold.
    methods = {row["method"]: row for row in stages["methods"]}
    assert list(methods) == ["watershed", "agglomerate", "probability map thresholded"]
    assert len(methods["agglomerate"]["thresholds"].split()) == 2 and 0 <= methods["watershed"]["cells_v_rand"] <= 1
    with tarfile.open(out / "results.tar.gz") as archive:
        assert "smoke/metrics/summary.tsv" in archive.getnames() and "smoke/report.html" in archive.getnames()
    with tarfile.open(out / "predictions_odd_folds.tar.gz") as archive:
        assert "smoke/predictions/held_out/fold1/slice_015.tif" in archive.getnames()
