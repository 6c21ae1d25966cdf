"""Benchmarks of this machine, side by side in one run: what the pipeline costs and buys.

    .venv/bin/python -m benchmarks.bench [--sections peaks,training,...] [--peer-minutes 10]
        [--peer-folds 0,1,2,3,4] [--peers seed,monai,default]

Sections (all by default):
  peaks      dense matmul GFLOP/s in fp32 and bf16 (and fp16 on a GPU)
  training   crops/s and achieved GFLOP/s of the default and seed models in fp32 and bf16,
             with and without channels_last (and torch.compile), and on a GPU of
             config/gpu.yaml's recipe too, and where a step's time goes (torch.profiler
             regions: data, forward, backward, optimizer)
  convolutions
             each convolution of the default and seed models timed alone, forward and
             backward, with channels_last in the precision `auto` picks (bf16 where it
             is native): the ceiling of a training step whose every other operation
             were free
  inference  seconds per 512 x 512 slice with and without TTA, in fp32 and in the
             precision `predict.precision: auto` picks here; seconds and peak memory of
             tiled prediction for 512 to 4096 px slices in that precision
  peers      the seed recipe, MONAI's BasicUNet, nnU-Net v2's 2-D configuration (optional,
             benchmarks/nnunet_peer.py) and the default trained for the same wall
             time on each of --peer-folds (fold 0 by default), scored on that fold's
             held-out slices
  pipeline   `snakemake -n` time for the default config and for a study of 10 experiments
  scaling    rule times of the smoke config on 30, 60 and 120 slices (the ISBI slices
             repeated with flips)
  segment    segmenting new stacks: sections per second of the default recipe's five fold
             models (predict's defaults) on 512 and 2048 px sections, one slab job's work
  segment_memory
             peak memory (each job's high-water mark, from its log) and wall time of
             `snakemake segment` on 100, 400 and 1600 generated sections of 1024 x 1024
             uint8, with the smoke config's models predicting whole sections

Writes results/bench/<host>-<date>/ with one TSV per section and summary.md. Nothing
here asserts a time: it measures and reports.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch

from benchmarks.nnunet_peer import train_and_predict
from benchmarks.tools import (
    ISBI,
    REPO,
    SCHEMA,
    Budget,
    StepVariant,
    copy_workflow,
    inference_code,
    isbi_stacks,
    measure_in_subprocess,
    peaks,
    score_fold,
    step_flops,
    time_convolutions,
    time_training,
)
from cellseg.config import load_config, merged
from cellseg.folds import assign_folds
from cellseg.inference import FoldEnsemble
from cellseg.layout import slice_file
from cellseg.records import UNCALIBRATED, InferenceSettings
from cellseg.runtime import cpu_has_fast_bf16, device_name, resolve_device, resolve_precision, set_threads
from cellseg.stackio import read_source
from cellseg.train import TrainingData, train_fold

SECTIONS = (
    "peaks",
    "training",
    "convolutions",
    "inference",
    "peers",
    "pipeline",
    "scaling",
    "segment",
    "segment_memory",
)


# The seed recipe as written; MONAI's BasicUNet (its defaults) trained by our loop with the
# default training config; the default config.
PEERS = {
    "seed": lambda: config_of("seed.yaml"),
    "monai": lambda: config_of({"model": {"architecture": "monai_basicunet"}}),
    "default": lambda: config_of(),
    # nnU-Net v2's own 2-D configuration, its own training (benchmarks/nnunet_peer.py).
    "nnunet": None,
}


def config_of(*overrides: str | dict) -> dict:
    """config/config.yaml merged with config files (paths relative to config/) or dicts."""
    config = load_config([REPO / "config/config.yaml"], SCHEMA)
    for override in overrides:
        if isinstance(override, str):
            override = load_config([REPO / "config/config.yaml", REPO / "config" / override], SCHEMA)
        config = merged(config, override)
    return config


def training(device: torch.device, data: TrainingData, bf16_peak: float, fp32_peak: float) -> pd.DataFrame:
    rows = []
    slices = list(range(6, 30))
    variants = [("fp32", True, False), ("fp32", False, False), ("bf16", True, False), ("bf16", False, False)]
    emulated_bf16 = device.type == "cpu" and not cpu_has_fast_bf16()
    models = {
        "default": (config_of(), [*variants, ("fp32", True, True), ("bf16", True, True)]),
        "seed": (config_of("seed.yaml"), variants),
    }
    if device.type == "cuda":
        # The GPU recipe as it trains: 32 channels, batches of 16 made by 4 worker processes.
        models["gpu"] = (config_of("gpu.yaml"), [("bf16", True, False), ("bf16", True, True)])
    for name, (config, model_variants) in models.items():
        flops = step_flops(config, device)
        for precision, channels_last, compiled in model_variants:
            if name == "seed" and precision == "bf16" and not channels_last and emulated_bf16:
                # Measured on an AVX2 CPU: one emulated step ran over 20 minutes.
                rows.append(
                    {
                        "model": name,
                        "precision": precision,
                        "channels_last": False,
                        "compiled": False,
                        "note": "skipped: emulated bf16 without channels_last, over 20 min a step",
                    }
                )
                continue
            variant = f"training {name} {precision} channels_last={channels_last} compiled={compiled}"
            print(variant, flush=True)
            began = time.perf_counter()
            timing = time_training(
                config,
                data,
                slices,
                StepVariant(device, precision, channels_last, compiled),
                Budget(warmup=1 if precision == "bf16" and emulated_bf16 else 2),
            )
            achieved = flops / timing["step_seconds"] / 1e9
            # Each variant's figures as soon as they are measured: a run cut short (a lent
            # GPU's time running out) still reports the variants it finished.
            print(
                f"{variant}: {timing['crops_per_second']:.1f} crops/s, {achieved:.0f} GFLOP/s = "
                f"{100 * achieved / bf16_peak:.1f} % "
                f"of the bf16 peak; warm-up {timing['warmup_seconds']:.1f} s, {timing['steps']} steps timed, "
                f"{time.perf_counter() - began:.0f} s in all",
                flush=True,
            )
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "channels_last": channels_last,
                    "compiled": compiled,
                    "crops_per_second": timing["crops_per_second"],
                    "gflops_achieved": achieved,
                    "pct_of_bf16_peak": 100 * achieved / bf16_peak,
                    "pct_of_fp32_peak": 100 * achieved / fp32_peak,
                    "step_gflop": flops / 1e9,
                    "steps_timed": timing["steps"],
                    "warmup_seconds": timing["warmup_seconds"],
                    **{
                        k: timing[k]
                        for k in (
                            "step_seconds",
                            "data_seconds",
                            "forward_seconds",
                            "backward_seconds",
                            "optimizer_seconds",
                        )
                    },
                }
            )
    return pd.DataFrame(rows)


def convolutions(device: torch.device, bf16_peak: float) -> pd.DataFrame:
    precision = resolve_precision("auto", device)
    tables = []
    for name, config in (("default", config_of()), ("seed", config_of("seed.yaml"))):
        print(f"convolutions of {name}, {precision}, channels_last", flush=True)
        layers = pd.DataFrame(time_convolutions(config, device, precision, channels_last=True))
        total = {"layer": "all, one after another", "gflop": layers.gflop.sum(), "seconds": layers.seconds.sum()}
        total["gflops_achieved"] = total["gflop"] / total["seconds"]
        layers = pd.concat([layers, pd.DataFrame([total])], ignore_index=True)
        layers.insert(0, "model", name)
        layers.insert(1, "precision", precision)
        layers["pct_of_bf16_peak"] = 100 * layers.gflops_achieved / bf16_peak
        layers["pct_of_step_gflop"] = 100 * layers.gflop / total["gflop"]
        tables.append(layers)
    return pd.concat(tables, ignore_index=True)


def trained_default(work: Path, data: TrainingData) -> Path:
    """A default-config model (a few steps: speed does not depend on the weights)."""
    config = config_of({"train": {"steps": 2}})
    path = work / "speed_model.pt"
    train_fold(
        data, list(range(6, 30)), config, 0, {"model": path, "curve": work / "curve.tsv", "checkpoint": work / "ck.pt"}
    )
    return path


def inference(work: Path, data: TrainingData, device: torch.device) -> pd.DataFrame:
    """Prediction in fp32 and in what ``predict.precision: auto`` picks here."""
    model = str(trained_default(work, data))
    pipelines = resolve_precision(config_of()["predict"]["precision"], device)
    rows = []
    for precision in dict.fromkeys(("fp32", pipelines)):
        for tta in (1, 8):
            measured = measure_in_subprocess(inference_code(model, 512, tta, 512, precision, repeats=5))
            rows.append(
                {"what": f"512 x 512 slice, TTA {tta}", "precision": precision, "size": 512, "tta": tta, **measured}
            )
    for size in (512, 1024, 2048, 4096):
        measured = measure_in_subprocess(inference_code(model, size, 1, 512, pipelines, repeats=3))
        rows.append(
            {
                "what": f"{size} x {size} slice, tiles of 512, TTA 1",
                "precision": pipelines,
                "size": size,
                "tta": 1,
                **measured,
            }
        )
    return pd.DataFrame(rows)


def peers(
    work: Path, data: TrainingData, minutes: float, device: torch.device, folds: list[int], names: list[str]
) -> pd.DataFrame:
    """Each peer trained on each fold for ``minutes`` and scored on the fold's held-out
    slices; the number of steps comes from the peer's own step time, measured first.
    nnU-Net (``nnunet``, benchmarks/nnunet_peer.py) calibrates its own iterations."""
    candidates = {name: PEERS[name]() for name in names if PEERS[name] is not None}
    default = config_of()
    fold_of = assign_folds(len(data.images), default["cv"]["folds"], default["cv"]["scheme"], default["seed"])
    rows = []
    for fold in folds:
        held_out = [int(i) for i in np.flatnonzero(fold_of == fold)]
        train_slices = [int(i) for i in np.flatnonzero(fold_of != fold)]
        for name, config in candidates.items():
            train = config["train"]
            precision = resolve_precision(train["precision"], device)
            timing = time_training(
                config,
                data,
                train_slices,
                StepVariant(device, precision, train["channels_last"]),
                Budget(min_seconds=20),
            )
            steps = max(1, int(minutes * 60 / timing["step_seconds"]))
            config = merged(config, {"train": {"steps": steps}, "resources": {"checkpoint_every": steps + 1}})
            print(f"peer {name}, fold {fold}: {steps} steps for {minutes} min", flush=True)
            folder = work / f"peer{len(rows)}"
            (folder / "held_out").mkdir(parents=True)
            paths = {
                "model": folder / "model.pt",
                "curve": folder / "curve.tsv",
                "checkpoint": folder / "checkpoint.pt",
            }
            metadata = train_fold(data, train_slices, config, fold, paths)
            probabilities, _ = FoldEnsemble([paths["model"]], config["predict"]).predict(data.images, indices=held_out)
            for index, probability in zip(held_out, probabilities, strict=True):
                tifffile.imwrite(folder / "held_out" / slice_file(index), probability)
            rows.append(
                {
                    "peer": name,
                    "fold": fold,
                    "steps": steps,
                    "train_minutes": metadata.wall_seconds / 60,
                    "crops_per_second": metadata.crops_per_second,
                    **score_fold(held_out, folder / "held_out", data.labels),
                }
            )
    if "nnunet" in names:
        rows += nnunet_rows(work, fold_of, minutes, folds, data.labels)
    table = pd.DataFrame(rows)
    if len(folds) > 1:
        means = table.groupby("peer", sort=False).mean(numeric_only=True).drop(columns="fold").reset_index()
        table = pd.concat([table, means.assign(fold="mean")], ignore_index=True)
    return table


def nnunet_rows(work: Path, fold_of: np.ndarray, minutes: float, folds: list[int], labels: np.ndarray) -> list[dict]:
    """nnU-Net v2's 2-D configuration on the same folds for the same minutes, if installed."""
    import importlib.util

    if importlib.util.find_spec("nnunetv2") is None:
        print("peer nnunet skipped: nnU-Net is not installed (pip install nnunetv2)", flush=True)
        return [{"peer": "nnunet", "fold": fold, "note": "not installed (pip install nnunetv2)"} for fold in folds]
    folds_tsv = work / "folds.tsv"
    pd.DataFrame({"slice": range(len(fold_of)), "fold": fold_of}).to_csv(folds_tsv, sep="\t", index=False)
    rows = []
    for row in train_and_predict(work / "nnunet", folds_tsv, minutes, folds):
        held_out = [int(i) for i in np.flatnonzero(fold_of == row["fold"])]
        rows.append(
            {
                "peer": "nnunet",
                "fold": row["fold"],
                "steps": row["iterations"],
                "train_minutes": row["train_minutes"],
                **score_fold(held_out, row["predictions"], labels),
            }
        )
    plan = json.loads((work / "nnunet/plan.json").read_text())
    rows[0]["note"] = (
        f"nnU-Net's plan: patch {plan['patch_size']}, batch {plan['batch_size']}, {plan['network']} of "
        f"{plan['stages']} stages {plan['features_per_stage']}, {plan['iterations_per_second']:.3g} "
        f"iterations/s here, {plan['epochs']} epochs of {plan['iterations_per_epoch']} iterations"
    )
    return rows


def smoke_run_seconds(workdir: Path, configfile: str, target: str) -> float:
    """Wall seconds of snakemake on 2 cores in ``workdir``, the smoke config with
    ``configfile`` on top, up to ``target``."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=1"]
    began = time.perf_counter()
    subprocess.run(
        [*command, "--configfile", "config/smoke.yaml", configfile, "--", target],
        cwd=workdir,
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - began


def snakemake_dry_run_seconds(workdir: Path, *args: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--cores", "2", *args],
            cwd=workdir,
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - began)
    return statistics.median(times)


# A study of 10 experiments: 5 learning rates times elastic deformation on or off.
STUDY_OF_10 = """study:
  name: ten
  experiments: {}
  grid:
    train.learning_rate: [0.0003, 0.001, 0.003, 0.01, 0.03]
    augment.elastic_probability: [0, 0.5]
"""


def pipeline(work: Path) -> pd.DataFrame:
    (work / "shared").symlink_to(ISBI.parent, target_is_directory=True)
    copy = copy_workflow(REPO, work / "pipeline")
    (copy / "ten.yaml").write_text(STUDY_OF_10)
    return pd.DataFrame(
        [
            {"what": "snakemake -n, default config (median of 3)", "seconds": snakemake_dry_run_seconds(copy)},
            {
                "what": "snakemake -n, study of 10 experiments (median of 3)",
                "seconds": snakemake_dry_run_seconds(copy, "--configfile", "ten.yaml"),
            },
        ]
    )


def scaling(work: Path, data: TrainingData) -> pd.DataFrame:
    images, labels = data.images, data.labels
    rows = []
    for count in (30, 60, 120):
        repeats = count // 30
        stack_images = np.concatenate([images[:, :, ::-1] if r % 2 else images for r in range(repeats)])
        stack_labels = np.concatenate([labels[:, :, ::-1] if r % 2 else labels for r in range(repeats)])
        copy = copy_workflow(REPO, work / f"scaling{count}")
        tifffile.imwrite(copy / "images.tif", (stack_images * 255).round().astype(np.uint8))
        tifffile.imwrite(copy / "labels.tif", stack_labels * 255)
        (copy / "own.yaml").write_text(
            "data:\n  train_images: [images.tif]\n  train_labels: [labels.tif]\n  test_images: []\n"
        )
        wall = smoke_run_seconds(copy, "own.yaml", "results/smoke/metrics/summary.tsv")
        benchmarks = copy / "results/smoke/benchmarks"
        seconds = {p.relative_to(benchmarks).parts[0].removesuffix(".tsv"): 0.0 for p in benchmarks.rglob("*.tsv")}
        for path in benchmarks.rglob("*.tsv"):
            seconds[path.relative_to(benchmarks).parts[0].removesuffix(".tsv")] += pd.read_csv(path, sep="\t").s.iloc[0]
        rows.append(
            {"slices": count, "pipeline_seconds": wall, **{f"{k}_seconds": v for k, v in sorted(seconds.items())}}
        )
    return pd.DataFrame(rows)


def em_sections(count: int, size: int):
    """``count`` uint8 sections of ``size`` x ``size`` pixels, one at a time: the ISBI test
    sections tiled (mirrored to join) and cycled, so that every section looks like EM."""
    test = read_source(ISBI / "test-volume.tif").pixels
    for index in range(count):
        section = test[index % len(test)]
        tile = np.block([[section, section[:, ::-1]], [section[::-1], section[::-1, ::-1]]])
        yield np.tile(tile, (size // tile.shape[0] + 1, size // tile.shape[1] + 1))[:size, :size]


def segment(work: Path) -> pd.DataFrame:
    """Sections per second of segmenting: a slab job's work, with the default recipe."""
    from cellseg.segment import plan_segmentation, segment_slab

    rows = []
    # Speed: the default recipe's five fold models (two steps each: speed does not depend
    # on the weights), predicting as the default predict section says.
    model = trained_default(work, isbi_stacks())
    models = [shutil.copy(model, work / f"fold{k}.pt") for k in range(5)]
    predict = config_of()["predict"]
    for size, count in ((512, 8), (2048, 2)):
        np.save(work / "speed.npy", np.stack(list(em_sections(count, size))))
        stack = np.load(work / "speed.npy", mmap_mode="r")
        plan = plan_segmentation(stack, "speed", UNCALIBRATED, models, count)
        settings = config_of()["segment"]
        seconds = []
        for _ in range(3):
            began = time.perf_counter()
            segment_slab(
                stack,
                plan,
                0,
                InferenceSettings.from_config(predict),
                settings,
                {
                    k: work / f"slab.{k}.{'tsv' if k == 'summary' else 'npy'}"
                    for k in ("probability", "uncertainty", "labels", "summary")
                },
            )
            seconds.append(time.perf_counter() - began)
        rows.append(
            {
                "what": f"{size} x {size} sections, 5 default fold models, TTA {predict['tta']}, "
                f"precision {resolve_precision(predict['precision'], resolve_device('auto'))}",
                "sections": count,
                "seconds": statistics.median(seconds),
                "sections_per_second": count / statistics.median(seconds),
            }
        )
    return pd.DataFrame(rows)


def segment_memory(work: Path) -> pd.DataFrame:
    """The segment target's peak memory (every job's) and wall time against stack length.
    The smoke models predict whole 1024 x 1024 sections (predict.tile_size 1024, TTA 1):
    what is measured is the data's path, not the network's speed (section segment)."""
    rows = []
    (work / "shared").symlink_to(ISBI.parent, target_is_directory=True)
    copy = copy_workflow(REPO, work / "segment")
    for count in (100, 400, 1600):
        tifffile.imwrite(
            copy / "stack.tif",
            em_sections(count, 1024),
            shape=(count, 1024, 1024),
            dtype=np.uint8,
            photometric="minisblack",
        )
        # TIFF and OME-Zarr of 1600 sections would need about 60 GB of disk with the slabs.
        formats = ["ome-zarr"] if count > 400 else ["tiff", "ome-zarr"]
        (copy / "stack.yaml").write_text(
            f"predict:\n  tta: 1\n  tile_size: 1024\n"
            f"segment:\n  formats: {formats}\n  stacks:\n    stack{count}: [stack.tif]\n"
        )
        wall = smoke_run_seconds(copy, "stack.yaml", "segment")
        # Each step logs its process's high-water mark (cellseg.logs.logged_step).
        peaks = {}
        for path in [
            *(copy / "resources/logs/fetch_stack").glob("segment-*.log"),
            *(copy / f"results/smoke/logs/segment/stack{count}").glob("*.log"),
        ]:
            rule = (
                "fetch" if path.stem.startswith("segment-") else "slab" if path.stem.startswith("slab") else path.stem
            )
            found = re.findall(r"peak resident memory of this step: (\d+) MB", path.read_text())
            peaks[rule] = max(peaks.get(rule, 0.0), float(found[-1]))
        rows.append(
            {
                "what": f"snakemake segment, {count} sections of 1024 x 1024 uint8 ({', '.join(formats)})",
                "sections": count,
                "seconds": wall,
                "sections_per_second": count / wall,
                "peak_rss_mb": max(peaks.values()),
                **{f"{k}_rss_mb": v for k, v in sorted(peaks.items())},
            }
        )
        for path in (copy / "resources/stacks").glob("segment-*"):
            path.unlink()
        shutil.rmtree(copy / f"results/smoke/segment/stack{count}")
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, of: " + ", ".join(SECTIONS))
    parser.add_argument("--peer-minutes", type=float, default=10.0, help="training wall time of each peer")
    parser.add_argument("--peer-folds", default="0", help="comma-separated folds each peer trains on")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated, of: " + ", ".join(PEERS))
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    unknown = set(args.peers.split(",")) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {tuple(PEERS)}")

    set_threads(args.threads)
    device = resolve_device("auto")
    out = REPO / "results/bench" / f"{platform.node()}-{datetime.datetime.now():%Y%m%d-%H%M}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cellseg-bench-"))
    data = isbi_stacks()
    lines = [
        f"# Benchmarks, {datetime.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"Machine: {platform.node()}, {device_name(device)}, {args.threads} threads, native CPU bf16: "
        f"{cpu_has_fast_bf16()}; torch {torch.__version__}, Python {platform.python_version()}.",
    ]
    results: dict[str, pd.DataFrame] = {}
    for section in sections:
        print(f"== {section}", flush=True)
        began = time.perf_counter()
        if section == "peaks" or (section in ("training", "convolutions") and "peaks" not in results):
            results["peaks"] = peaks(device)
        by_dtype = results["peaks"].set_index("dtype").gflops if "peaks" in results else None
        if section == "training":
            results[section] = training(device, data, by_dtype["bf16"], by_dtype["fp32"])
        elif section == "convolutions":
            results[section] = convolutions(device, by_dtype["bf16"])
        elif section == "inference":
            results[section] = inference(work, data, device)
        elif section == "peers":
            results[section] = peers(
                work,
                data,
                args.peer_minutes,
                device,
                [int(f) for f in args.peer_folds.split(",")],
                args.peers.split(","),
            )
        elif section == "pipeline":
            results[section] = pipeline(work)
        elif section == "scaling":
            results[section] = scaling(work, data)
        elif section == "segment":
            results[section] = segment(work)
        elif section == "segment_memory":
            results[section] = segment_memory(work)
        results[section].to_csv(out / f"{section}.tsv", sep="\t", index=False, float_format="%.5g")
        lines += [
            "",
            f"## {section} ({time.perf_counter() - began:.0f} s)",
            "",
            results[section].to_string(index=False),
        ]
        (out / "summary.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines[-3:]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
