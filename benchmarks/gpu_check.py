"""The GPU recipe on a real card, in one call of a few minutes: what it costs and buys.

    benchmarks/gpu_check.sh prepare            # here: wheels and data into .gpu/ (ignored)
    benchmarks/gpu_check.sh run [--minutes 8]  # there: on the card, with .gpu carried

``run`` takes the stages below in order, each only if the time left allows, and writes
``summary.md`` (the figures), ``stages.json`` and ``results.tar.gz`` (the experiment's
metrics, logs, benchmarks, curves and report) to ``--out``:

  peaks     dense matrix products in fp32, bf16 and fp16: the card's ceilings here
  ceiling   training steps of the recipe's model on one batch already on the card (no
            data loading): steps/s, achieved TFLOP/s and % of the bf16 peak, per batch
            size, eager and torch.compile
  loader    the real training step (crop sampler, augmentation in ``resources.data_workers``
            processes, model, loss, optimizer) with 4 and 12 workers: crops/s, and how
            long a step waits for its batch
  fold      ``snakemake`` trains and predicts fold 0 of the recipe: steps/s, crops/s,
            TFLOP/s and % of the bf16 peak over the whole training, wall time, and the
            fold's held-out scores
  pipeline  the whole ``snakemake`` run (5 folds, test volume, report) in the time left,
            ``--gpu-jobs`` trainings at a time: wall time, per-fold scores and the summary
  methods   every way of making cells on that run's held-out predictions
            (``benchmarks/methods.py``): the cells' V_Rand and V_Info of each

Try it on a CPU with ``run --tiny`` (the smoke recipe, a few seconds a stage), or without
the shell script: ``.venv/bin/python -m benchmarks.gpu_check --tiny``. Snakemake runs in
the checkout that holds this ``benchmarks/``. Nothing here asserts a time: it measures and
reports.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.methods import compare_methods
from benchmarks.tools import (
    REPO,
    SCHEMA,
    Budget,
    StepVariant,
    isbi_stacks,
    peaks,
    step_flops,
    synchronize,
    time_training,
)
from cellseg.config import load_config
from cellseg.datasets import unpacked_id
from cellseg.evaluate import evaluate_held_out, per_fold_table
from cellseg.layout import AFFINITIES_SUFFIX, HELD_OUT, MODEL_NAME
from cellseg.loss import dice_bce_loss
from cellseg.model import build_model
from cellseg.records import FoldModel
from cellseg.runtime import autocast, device_name, resolve_device, resolve_precision, versions
from cellseg.train import make_optimizer

RESULT_PARTS = ("metrics", "logs", "benchmarks", "folds.tsv", "report.html")


class Clock:
    """Seconds left of the check's budget."""

    def __init__(self, minutes: float) -> None:
        self.end = time.monotonic() + minutes * 60

    def left(self) -> float:
        return self.end - time.monotonic()


def ceiling(
    config: dict, how: StepVariant, variants: list[tuple[int, bool]], clock: Clock, seconds: float, bf16_peak: float
) -> list[dict]:
    """Training steps on one random batch resident on the device (``how``'s device and
    precision, channels-last): the rate a step reaches when data loading costs nothing.
    ``variants``: (batch size, torch.compile or not)."""
    device, precision = how.device, how.precision
    rows = []
    side = config["train"]["crop_size"]
    for batch, compile_model in variants:
        if clock.left() < 120:
            break
        torch.manual_seed(0)
        model = build_model(config["model"]).to(device=device, memory_format=torch.channels_last)
        network = torch.compile(model) if compile_model else model
        optimizer = make_optimizer(model.parameters(), config["train"])
        image = torch.randn(batch, 1, side, side, device=device).to(memory_format=torch.channels_last)
        target = (torch.rand(batch, 1, side, side, device=device) > 0.3).float()
        valid = torch.ones_like(target)

        # Bound as defaults: the function is called only within this iteration.
        def step(network=network, image=image, target=target, valid=valid, optimizer=optimizer) -> None:
            with autocast(device, precision):
                logits = network(image)
            loss, _ = dice_bce_loss(
                logits, target, valid, config["train"]["loss"]["dice_weight"], config["train"]["loss"]["dice_on"]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        began = time.perf_counter()
        for _ in range(3):
            step()
        synchronize(device)
        warmup = time.perf_counter() - began
        steps, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds or steps < 2:
            step()
            steps += 1
            if steps % 10 == 0:
                synchronize(device)
        synchronize(device)
        per_step = (time.perf_counter() - began) / steps
        flops = step_flops({**config, "train": {**config["train"], "batch_size": batch}}, device)
        rows.append(
            {
                "batch": batch,
                "compiled": compile_model,
                "precision": precision,
                "steps_per_second": 1 / per_step,
                "crops_per_second": batch / per_step,
                "tflops": flops / per_step / 1e12,
                "pct_of_bf16_peak": 100 * flops / per_step / 1e12 / bf16_peak,
                "warmup_seconds": warmup,
            }
        )
        print(
            f"ceiling batch {batch} compiled={compile_model}: {1 / per_step:.1f} steps/s, "
            f"{batch / per_step:.0f} crops/s, {flops / per_step / 1e12:.1f} TFLOP/s",
            flush=True,
        )
    return rows


def loader(
    config: dict, device: torch.device, precision: str, workers: list[int], clock: Clock, seconds: float
) -> list[dict]:
    """The real training step, batches made by ``workers`` processes."""
    data = isbi_stacks()
    rows = []
    for count in workers:
        if clock.left() < 60:
            break
        run_config = {**config, "resources": {**config["resources"], "data_workers": count}}
        timing = time_training(
            run_config,
            data,
            list(range(6, 30)),
            StepVariant(device, precision, config["train"]["channels_last"]),
            Budget(min_seconds=seconds, max_steps=400),
        )
        rows.append({"data_workers": count, **timing})
        print(
            f"loader {count} workers: {timing['crops_per_second']:.0f} crops/s, "
            f"{1 / timing['step_seconds']:.1f} steps/s, waiting {timing['data_seconds'] * 1e3:.1f} ms "
            "a step for its batch",
            flush=True,
        )
    return rows


def snakemake(
    configfiles: list[str], targets: list[str], cores: int, seconds: float, log: Path, gpu_jobs: int = 1
) -> dict:
    """Run Snakemake in the repository, ``gpu_jobs`` GPU jobs (trainings, predictions) at
    a time on the one card; stop it (and its jobs) after ``seconds``."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        str(cores),
        "--resources",
        f"gpu={gpu_jobs}",
        "--scheduler",
        "greedy",
        "--configfile",
        *configfiles,
        "--",
        *targets,
    ]
    began = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=max(seconds, 1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            code = None
    return {"returncode": code, "finished": code == 0, "wall_seconds": time.perf_counter() - began}


def fold_figures(results: Path, config: dict, flops_per_step: float, bf16_peak_tflops: float) -> dict:
    """Training rate of fold 0 from its model file, and its held-out scores."""
    fold = 0
    record = FoldModel.from_json(json.loads((results / MODEL_NAME.format(fold=fold)).with_suffix(".json").read_text()))
    steps, batch = record.steps, record.config["train"]["batch_size"]
    steps_per_second = record.crops_per_second / batch
    tflops = flops_per_step * steps_per_second / 1e12
    per_fold = results / "metrics/per_fold.tsv"
    if per_fold.is_file():  # the pipeline's own scores, its cells' among them
        scores = pd.read_csv(per_fold, sep="\t").set_index("fold").loc[fold].to_dict()
    else:  # a pipeline stopped early: fold 0's probability maps, scored alone (no cells)
        labels = np.load(REPO / f"resources/unpacked/{unpacked_id(config['data'], 'train')}/train_labels.npy")
        per_slice, _ = evaluate_held_out(
            results / "folds.tsv",
            {fold: REPO / HELD_OUT.format(experiment=config["experiment"], fold=fold)},
            labels,
            config["eval"]["threshold"],
        )
        scores = per_fold_table(per_slice).iloc[0].to_dict()
    return {
        "fold": fold,
        "device": record.device,
        "precision": record.precision,
        "steps": steps,
        "train_seconds": record.wall_seconds,
        "steps_per_second": steps_per_second,
        "crops_per_second": record.crops_per_second,
        "tflops": tflops,
        "pct_of_bf16_peak": 100 * tflops / bf16_peak_tflops if bf16_peak_tflops else float("nan"),
        **{k: v for k, v in scores.items() if k != "fold"},
    }


def pack(results: Path, out: Path) -> None:
    """The run's small outputs into results.tar.gz; its held-out probability maps (to
    score again here; not the affinities, 8 times their size) into two archives, odd and
    even folds, each under the 16 MB a file that comes back from the card may have."""
    with tarfile.open(out / "results.tar.gz", "w:gz") as archive:
        for part in RESULT_PARTS:
            if (results / part).exists():
                archive.add(results / part, arcname=f"{results.name}/{part}")
        for curve in sorted(results.glob("models/*_curve.tsv")):
            archive.add(curve, arcname=f"{results.name}/models/{curve.name}")
    folders = sorted((results / "predictions/held_out").glob("fold*"))
    for parity in ("even", "odd"):
        with tarfile.open(out / f"predictions_{parity}_folds.tar.gz", "w:gz") as archive:
            for folder in folders:
                if int(folder.name.removeprefix("fold")) % 2 == (parity == "odd"):
                    for path in sorted(folder.glob("*.tif")):
                        if not path.name.endswith(AFFINITIES_SUFFIX):
                            archive.add(path, arcname=f"{results.name}/predictions/held_out/{folder.name}/{path.name}")


def markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".4g") if len(table) else "(not run: no time left)"


STAGES = ("peaks", "ceiling", "loader", "fold", "pipeline", "methods")


def run(args: argparse.Namespace) -> None:
    clock = Clock(args.minutes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = args.stages.split(",")
    configfiles = [str(REPO / "config/gpu.yaml")]
    if args.tiny:
        tiny = out.resolve() / "tiny.yaml"
        tiny.write_text("train:\n  steps: 4\npredict:\n  tta: 1\n")
        configfiles = [str(REPO / "config/smoke.yaml"), str(tiny)]
    config = load_config([REPO / "config/config.yaml", *configfiles], SCHEMA)
    device = resolve_device(config["train"]["device"])
    precision = resolve_precision(config["train"]["precision"], device)
    results = REPO / "results" / config["experiment"]
    flops = step_flops(config, device)
    stages: dict = {
        "device": device_name(device),
        "versions": versions(),
        "cpu_count": os.cpu_count(),
        "configfiles": configfiles,
        "precision": precision,
        "minutes": args.minutes,
        "step_tflop": flops / 1e12,
    }
    print(
        f"gpu_check on {stages['device']}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"recipe {configfiles} in {precision}, stages {wanted}",
        flush=True,
    )
    lines = [
        f"# gpu_check: {stages['device']}, {stages['cpu_count']} CPU cores, torch {torch.__version__}",
        f"Recipe {configfiles}, {precision}; one training step {flops / 1e12:.4g} TFLOP.",
        "",
    ]

    def report(title: str, table: pd.DataFrame) -> None:
        lines.extend([f"## {title}", markdown(table), ""])
        print(f"## {title}\n{markdown(table)}", flush=True)

    bf16_peak = args.bf16_peak
    if "peaks" in wanted:
        peak = peaks(device)
        bf16_peak = float(peak.loc[peak.dtype == "bf16", "gflops"].iloc[0]) / 1e3
        stages["peaks"] = peak.to_dict("records")
        report("Peaks (GFLOP/s)", peak)
    seconds = 1 if args.tiny else 5
    if "ceiling" in wanted:
        variants = [(2, False)] if args.tiny else [(16, False), (64, False), (16, True)]
        stages["ceiling"] = ceiling(config, StepVariant(device, precision, True), variants, clock, seconds, bf16_peak)
        report("Ceiling: training steps on one batch resident on the card", pd.DataFrame(stages["ceiling"]))
    if "loader" in wanted:
        stages["loader"] = loader(config, device, precision, [0] if args.tiny else [4, 12], clock, seconds)
        report("Real training step (sampler, augmentation, model, loss, optimizer)", pd.DataFrame(stages["loader"]))

    log = out / "snakemake.log"
    cores = args.cores or os.cpu_count()
    # A training job takes train_threads + data_workers cores: Snakemake runs no more of
    # them at a time than the cores hold, whatever --gpu-jobs allows (seen: --gpu-jobs 3 on
    # 12 cores with the GPU recipe's 4 + 4 ran one at a time).
    per_training = config["resources"]["train_threads"] + config["resources"]["data_workers"]
    at_once = max(1, min(args.gpu_jobs, cores // max(per_training, 1)))
    print(f"trainings at a time: {at_once} ({cores} cores, {per_training} a training, --gpu-jobs {args.gpu_jobs})")
    if "fold" in wanted:
        fold_target = f"results/{config['experiment']}/predictions/held_out/fold0"
        stages["fold_run"] = snakemake(configfiles, [fold_target], cores, clock.left() - 60, log)
        if stages["fold_run"]["finished"]:
            stages["fold"] = fold_figures(results, config, flops, bf16_peak)
        report(f"Fold 0 through snakemake ({stages['fold_run']})", pd.DataFrame([stages.get("fold", {})]))
    if "pipeline" in wanted and clock.left() > 90:
        stages["pipeline_run"] = snakemake(configfiles, [], cores, clock.left() - 45, log, args.gpu_jobs)
        if stages["pipeline_run"]["finished"]:
            stages["per_fold"] = pd.read_csv(results / "metrics/per_fold.tsv", sep="\t").to_dict("records")
            stages["summary"] = pd.read_csv(results / "metrics/summary.tsv", sep="\t").to_dict("records")
        stages["benchmarks"] = {
            str(p.relative_to(results / "benchmarks")): float(pd.read_csv(p, sep="\t").s.iloc[0])
            for p in sorted((results / "benchmarks").rglob("*.tsv"))
        }
        report(f"Whole pipeline ({stages['pipeline_run']})", pd.DataFrame(stages.get("per_fold", [])))
        report("Summary over folds", pd.DataFrame(stages.get("summary", [])))
        report("Seconds of each job", pd.DataFrame(stages["benchmarks"].items(), columns=["job", "seconds"]))
    if "methods" in wanted and (results / "metrics/per_fold.tsv").is_file() and clock.left() > 120:
        table, per_fold = compare_methods(results, results / "methods")
        stages["methods"], stages["methods_per_fold"] = table.to_dict("records"), per_fold.to_dict("records")
        report("Every way of making cells on the run's held-out predictions (benchmarks/methods.py)", table)
        report("Their per-fold means", per_fold)
    pack(results, out)
    (out / "stages.json").write_text(json.dumps(stages, indent=1, default=str))
    (out / "summary.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="budget of the whole check")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "results/gpu_check"))
    parser.add_argument("--cores", type=int, default=0, help="Snakemake's --cores (default: every core)")
    parser.add_argument("--tiny", action="store_true", help="the smoke recipe on whatever device is here")
    parser.add_argument("--gpu-jobs", type=int, default=1, help="trainings at a time on the card in the pipeline stage")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, of " + ", ".join(STAGES))
    parser.add_argument(
        "--bf16-peak",
        type=float,
        default=float("nan"),
        help="TFLOP/s, for the percentages when the peaks stage is not run",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
