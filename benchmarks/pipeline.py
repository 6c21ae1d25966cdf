"""Run the whole pipeline for a configuration on this machine, time it, and score it.

    .venv/bin/python -m benchmarks.pipeline [--configfile FILE ...] [--cores 2] [--fresh-clone]

Snakemake runs the default target (up to report.html) in a fresh copy of the workflow
beside a link to ../shared, so fetching and unpacking count too. With --fresh-clone it
runs README command 1 instead: a git clone of this checkout's HEAD, `scripts/setup.sh`
there (timed on its own: a new virtualenv from the package registries) and the clone's
`.venv/bin/snakemake`. Writes
results/bench/pipeline-<host>-<date>-<experiment>/ with per_fold.tsv (the run's own
per-fold scores with each fold's training time and throughput), summary.tsv (the run's
summary table), cell_thresholds.tsv (how the cells' merge thresholds were chosen), rules.tsv
(seconds per job from the rules' benchmark files) and summary.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.tools import PEER_SCORES, REPO, copy_workflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="config files on top of config/config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary working copy")
    parser.add_argument(
        "--fresh-clone",
        action="store_true",
        help="clone HEAD, time scripts/setup.sh there, run the clone's .venv/bin/snakemake",
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="cellseg-bench-"))
    (scratch / "shared").symlink_to((REPO.parent / "shared").resolve(), target_is_directory=True)
    configfiles = [str(Path(f).resolve()) for f in args.configfile]
    setup_seconds = None
    if args.fresh_clone:
        work = scratch / "cellseg"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(work)], check=True)
        began = time.perf_counter()
        subprocess.run(["scripts/setup.sh"], cwd=work, check=True)
        setup_seconds = time.perf_counter() - began
        snakemake = [str(work / ".venv/bin/snakemake")]
    else:
        work = copy_workflow(REPO, scratch / "work")
        snakemake = [sys.executable, "-m", "snakemake"]

    command = [*snakemake, "--cores", str(args.cores), "--resources", "gpu=1"]
    if configfiles:
        command += ["--configfile", *configfiles]
    began = time.perf_counter()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if result.returncode != 0:
        sys.exit(f"snakemake failed after {wall:.0f} s:\n{result.stderr[-3000:]}")

    (results,) = (path.parent for path in work.glob("results/*/report.html"))
    experiment = results.name
    per_fold = pd.read_csv(results / "metrics/per_fold.tsv", sep="\t")
    training = pd.DataFrame(
        {key: model[key] for key in ("fold", "wall_seconds", "crops_per_second", "device", "precision")}
        for model in (json.loads(path.read_text()) for path in sorted(results.glob("models/fold*.json")))
    )
    per_fold = per_fold.merge(training, on="fold")
    summary_table = pd.read_csv(results / "metrics/summary.tsv", sep="\t")
    thresholds = pd.read_csv(results / "metrics/cell_thresholds.tsv", sep="\t")
    report_mb = (results / "report.html").stat().st_size / 1e6
    rules = pd.concat(
        [
            pd.read_csv(path, sep="\t").assign(job=str(path.relative_to(results / "benchmarks")))
            for path in sorted((results / "benchmarks").rglob("*.tsv"))
        ],
        ignore_index=True,
    )[["job", "s", "max_rss"]]

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    out = REPO / "results" / "bench" / f"pipeline-{platform.node()}-{stamp}-{experiment}"
    out.mkdir(parents=True, exist_ok=True)
    per_fold.to_csv(out / "per_fold.tsv", sep="\t", index=False, float_format="%.4f")
    summary_table.to_csv(out / "summary.tsv", sep="\t", index=False, float_format="%.4f")
    thresholds.to_csv(out / "cell_thresholds.tsv", sep="\t", index=False)
    rules.to_csv(out / "rules.tsv", sep="\t", index=False, float_format="%.1f")
    summary = [
        f"# Pipeline benchmark: {experiment}",
        "",
        f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} CPUs, torch {torch.__version__}; "
        f"`snakemake --cores {args.cores} --resources gpu=1` {' '.join(args.configfile)}",
        "",
        *([f"Set-up on a fresh clone (scripts/setup.sh): {setup_seconds / 60:.1f} min"] if setup_seconds else []),
        f"Whole pipeline (fetch to report.html): {wall / 60:.1f} min; report.html {report_mb:.1f} MB",
        "",
        "Summary over folds (held-out slices; pixel scores at eval.threshold):",
        "",
        "```",
        summary_table.to_string(index=False, float_format="%.4f"),
        "```",
        "",
        "How the cells' merge thresholds were chosen (metrics/cell_thresholds.tsv):",
        "",
        "```",
        thresholds.to_string(index=False),
        "```",
        "",
        "Per fold:",
        "",
        "```",
        per_fold[["fold", *PEER_SCORES, "wall_seconds", "crops_per_second"]].to_string(
            index=False, float_format="%.4f"
        ),
        "```",
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
