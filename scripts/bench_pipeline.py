#!/usr/bin/env python
"""Run the whole pipeline for a configuration on this machine, time it, and score it.

    .venv/bin/python scripts/bench_pipeline.py [--configfile FILE ...] [--cores 2]

Snakemake runs in a fresh copy of the workflow beside a link to ../shared, so fetching and
unpacking count too. Held-out probability maps are scored at threshold 0.5 against the
labels. Writes results/bench/pipeline-<host>-<date>-<experiment>/ with per_fold.tsv,
rules.tsv (seconds per job from the rules' benchmark files) and summary.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch

from cellseg.folds import held_out_slices, read_folds
from cellseg.metrics import pixel_scores

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="config files on top of config/config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary working copy")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cellseg-bench-"))
    work = scratch / "work"
    work.mkdir()
    shutil.copy2(REPO / "Snakefile", work)
    for folder in ("workflow", "config"):
        shutil.copytree(REPO / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (scratch / "shared").symlink_to((REPO.parent / "shared").resolve(), target_is_directory=True)
    configfiles = [str(Path(f).resolve()) for f in args.configfile]

    command = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), "--resources", "gpu=1"]
    if configfiles:
        command += ["--configfile", *configfiles]
    began = time.perf_counter()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if result.returncode != 0:
        sys.exit(f"snakemake failed after {wall:.0f} s:\n{result.stderr[-3000:]}")

    (folds_path,) = work.glob("results/*/folds.tsv")
    experiment = folds_path.parent.name
    results = folds_path.parent
    folds = read_folds(folds_path)
    labels = np.load(work / "resources/unpacked/train_labels.npy", mmap_mode="r")
    rows = []
    for fold in sorted(folds[folds.role == "cv"].fold.unique()):
        model = torch.load(results / f"models/fold{fold}.pt", weights_only=True)
        scores = pd.DataFrame(
            pixel_scores(tifffile.imread(results / f"predictions/held_out/fold{fold}/slice_{s:03d}.tif"), labels[s])
            for s in held_out_slices(folds, fold)
        ).mean()
        rows.append({
            "fold": int(fold),
            "membrane_dice": scores.membrane_dice,
            "cell_dice": scores.cell_dice,
            "pixel_error": scores.pixel_error,
            "train_seconds": model["wall_seconds"],
            "crops_per_second": model["crops_per_second"],
            "device": model["device"],
            "precision": model["precision"],
        })
    per_fold = pd.DataFrame(rows)
    rules = pd.concat(
        [pd.read_csv(path, sep="\t").assign(job=str(path.relative_to(results / "benchmarks"))) for path in sorted((results / "benchmarks").rglob("*.tsv"))],
        ignore_index=True,
    )[["job", "s", "max_rss"]]

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    out = REPO / "results" / "bench" / f"pipeline-{platform.node()}-{stamp}-{experiment}"
    out.mkdir(parents=True, exist_ok=True)
    per_fold.to_csv(out / "per_fold.tsv", sep="\t", index=False, float_format="%.4f")
    rules.to_csv(out / "rules.tsv", sep="\t", index=False, float_format="%.1f")
    mean = per_fold.mean(numeric_only=True)
    summary = [
        f"# Pipeline benchmark: {experiment}",
        "",
        f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} CPUs, torch {torch.__version__}; "
        f"`snakemake --cores {args.cores} --resources gpu=1` {' '.join(args.configfile)}",
        "",
        f"Whole pipeline (fetch to test-volume prediction): {wall / 60:.1f} min",
        "",
        "Held-out slices, threshold 0.5, mean over each fold's slices:",
        "",
        "```",
        per_fold.to_string(index=False, float_format="%.4f"),
        "```",
        "",
        f"Mean over folds: membrane Dice {mean.membrane_dice:.4f}, cell Dice {mean.cell_dice:.4f}, "
        f"pixel error {mean.pixel_error:.4f}, {mean.crops_per_second:.1f} crops/s in training.",
        "",
        "Seconds per job:",
        "",
        "```",
        rules.to_string(index=False, float_format="%.1f"),
        "```",
    ]
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"\nwritten to {out}")
    if not args.keep:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
