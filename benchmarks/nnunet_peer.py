"""nnU-Net v2's 2-D configuration as a peer: trained on exactly cellseg's folds for a
given wall time per fold, its held-out predictions scored by cellseg's evaluation.

    .venv/bin/python -m benchmarks.nnunet_peer --work DIR --folds-tsv results/default/folds.tsv \\
        --minutes 5 [--folds 0,1,2,3,4]

nnU-Net is an optional peer (``pip install nnunetv2``), not a dependency. What it does,
each step nnU-Net's own code:

1. Raw dataset ``Dataset501_ISBI2012`` under ``DIR/raw``: each ISBI training slice as a PNG
   (``isbi_NNN_0000.png``, the pixels as stored) and its labels as a PNG of 0 = membrane,
   1 = cell (``labels: background 0, cell 1``), so nnU-Net's class 1 probability is
   cellseg's cell probability.
2. ``nnUNetv2_plan_and_preprocess -c 2d``: nnU-Net's own plan (patch size, batch size,
   network), recorded.
3. ``splits_final.json`` written from ``folds.tsv``: fold k trains on every slice but fold
   k's held-out slices and validates on those, as cellseg's fold k does.
4. Equal wall time: one short calibration run (nnU-Net's trainer, 10 iterations) gives
   its seconds per iteration here; each fold then trains ``nnUNetTrainer`` for
   ``epochs x 10`` iterations (its poly learning-rate schedule over the whole run) with
   ``epochs`` filling ``--minutes``, 2 validation iterations an epoch
   (``benchmarks.nnunet_train``, in a fresh interpreter).
5. Prediction with ``nnUNetPredictor`` (its defaults: Gaussian sliding window, mirroring)
   of each held-out slice, the class-1 probability written as cellseg's
   ``slice_NNN.tif`` (``benchmarks.nnunet_predict``, in a fresh interpreter), scored by
   ``cellseg.evaluate.evaluate_held_out``.

Writes ``DIR/nnunet_peer.tsv`` (one row per fold: iterations, minutes, scores, scored as
``benchmarks.bench`` scores every peer) and ``DIR/plan.json`` (nnU-Net's 2-D plan and its
iterations per second). ``python -m benchmarks.bench --sections peers --peers default,nnunet``
calls it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.tools import ISBI, isbi_stacks, score_fold
from cellseg.stackio import read_source
from cellseg.stacks import binary_labels

DATASET_ID, DATASET = 501, "Dataset501_ISBI2012"
ITERATIONS_PER_EPOCH, VALIDATION_ITERATIONS = 10, 2


def environment(work: Path) -> dict[str, str]:
    """This process's environment with nnU-Net's folders, which ``nnunetv2.paths`` reads
    when it is imported: hence each nnU-Net step in a fresh interpreter."""
    return {
        **os.environ,
        "nnUNet_raw": str(work / "raw"),
        "nnUNet_preprocessed": str(work / "preprocessed"),
        "nnUNet_results": str(work / "trained"),
        "nnUNet_n_proc_DA": str(os.cpu_count() or 1),
    }


def python(module: str, *args: str, work: Path, log: Path) -> dict:
    """Run ``python -m module args`` in nnU-Net's environment; its last line of output is
    JSON (or nothing)."""
    with open(log, "a") as out:
        finished = subprocess.run(
            [sys.executable, "-m", module, *args], env=environment(work), stdout=subprocess.PIPE, stderr=out, text=True
        )
        out.write(finished.stdout)
    if finished.returncode != 0:
        raise RuntimeError(f"nnU-Net step failed (exit {finished.returncode}); see {log}")
    lines = finished.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


def write_raw_dataset(work: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """ISBI slices and labels (1 = cell) as nnU-Net's raw 2-D dataset of PNGs."""
    raw = work / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    for index in range(len(images)):
        Image.fromarray(np.asarray(images[index], np.uint8)).save(raw / "imagesTr" / f"isbi_{index:03d}_0000.png")
        Image.fromarray(np.asarray(labels[index], np.uint8)).save(raw / "labelsTr" / f"isbi_{index:03d}.png")
    (raw / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "EM"},
                "labels": {"background": 0, "cell": 1},
                "numTraining": len(images),
                "file_ending": ".png",
                "name": "ISBI 2012 membranes, cellseg's folds",
            },
            indent=1,
        )
    )
    return raw


def write_splits(work: Path, folds: pd.DataFrame) -> list[dict]:
    """nnU-Net's splits_final.json from cellseg's folds.tsv (``slice``, ``fold``)."""
    splits = [
        {
            "train": [f"isbi_{s:03d}" for s in folds.slice[folds.fold != k]],
            "val": [f"isbi_{s:03d}" for s in folds.slice[folds.fold == k]],
        }
        for k in sorted(folds.fold.unique())
    ]
    (work / "preprocessed" / DATASET / "splits_final.json").write_text(json.dumps(splits, indent=1))
    return splits


def plan_summary(work: Path) -> dict:
    plans = json.loads((work / "preprocessed" / DATASET / "nnUNetPlans.json").read_text())
    two_d = plans["configurations"]["2d"]
    architecture = two_d["architecture"]
    return {
        "patch_size": two_d["patch_size"],
        "batch_size": two_d["batch_size"],
        "network": architecture["network_class_name"].rsplit(".", 1)[-1],
        "stages": architecture["arch_kwargs"]["n_stages"],
        "features_per_stage": architecture["arch_kwargs"]["features_per_stage"],
        "normalization": two_d["normalization_schemes"],
    }


def train_and_predict(work: Path, folds_tsv: Path, minutes: float, fold_list: list[int]) -> list[dict]:
    """Steps 1 to 5 but the scoring: one dict per fold with ``fold``, ``iterations``,
    ``train_minutes``, ``predict_seconds`` and ``predictions`` (the folder of its held-out
    ``slice_NNN.tif`` cell probabilities)."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "nnunet.log"
    images = read_source(ISBI / "train-volume.tif").pixels
    labels = binary_labels(read_source(ISBI / "train-labels.tif").pixels, ISBI / "train-labels.tif")
    folds = pd.read_csv(folds_tsv, sep="\t")
    raw = write_raw_dataset(work, images, labels)
    began = time.perf_counter()
    with open(log, "a") as out:
        subprocess.run(
            [
                str(Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"),
                "-d",
                str(DATASET_ID),
                "-c",
                "2d",
                "-np",
                "2",
                "--verify_dataset_integrity",
            ],
            env=environment(work),
            stdout=out,
            stderr=out,
            check=True,
            cwd=work,
        )
    preprocess_seconds = time.perf_counter() - began
    write_splits(work, folds)

    def train(fold: int, epochs: int) -> dict:
        arguments = (str(DATASET_ID), str(fold), str(epochs), str(ITERATIONS_PER_EPOCH), str(VALIDATION_ITERATIONS))
        return python("benchmarks.nnunet_train", *arguments, work=work, log=log)

    calibration = train(fold_list[0], 1)
    epochs = max(1, int(minutes * 60 / calibration["epoch_seconds"]))
    plan = {
        **plan_summary(work),
        "iterations_per_second": ITERATIONS_PER_EPOCH / calibration["epoch_seconds"],
        "preprocess_seconds": preprocess_seconds,
        "epochs": epochs,
        "iterations_per_epoch": ITERATIONS_PER_EPOCH,
    }
    (work / "plan.json").write_text(json.dumps(plan, indent=1))
    print(f"nnU-Net plan {plan}; {epochs} epochs of {ITERATIONS_PER_EPOCH} iterations fill {minutes} min", flush=True)
    rows = []
    for fold in fold_list:
        trained = train(fold, epochs)
        out = work / "held_out" / f"fold{fold}"
        out.mkdir(parents=True, exist_ok=True)
        held_out = folds.slice[folds.fold == fold].tolist()
        paths = {str(s): str(raw / "imagesTr" / f"isbi_{s:03d}_0000.png") for s in held_out}
        predict_began = time.perf_counter()
        python(
            "benchmarks.nnunet_predict",
            str(Path(trained["output_folder"]).parent),
            str(fold),
            str(out),
            json.dumps(paths),
            work=work,
            log=log,
        )
        rows.append(
            {
                "fold": fold,
                "iterations": trained["iterations"],
                "train_minutes": trained["wall_seconds"] / 60,
                "predict_seconds": time.perf_counter() - predict_began,
                "predictions": out,
            }
        )
        print(
            f"nnU-Net fold {fold}: {trained['iterations']} iterations in {trained['wall_seconds'] / 60:.1f} min",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for nnU-Net's raw, preprocessed and trained data"
    )
    parser.add_argument("--folds-tsv", type=Path, required=True, help="a run's folds.tsv (slice, fold)")
    parser.add_argument("--minutes", type=float, required=True, help="training wall time per fold")
    parser.add_argument("--folds", default="0,1,2,3,4")
    args = parser.parse_args()
    rows = train_and_predict(args.work, args.folds_tsv, args.minutes, [int(f) for f in args.folds.split(",")])
    folds = pd.read_csv(args.folds_tsv, sep="\t")
    labels = isbi_stacks()[1]
    table = pd.DataFrame(
        [
            {
                **{k: v for k, v in row.items() if k != "predictions"},
                **score_fold(folds.slice[folds.fold == row["fold"]].tolist(), row["predictions"], labels),
            }
            for row in rows
        ]
    )
    table.to_csv(args.work / "nnunet_peer.tsv", sep="\t", index=False, float_format="%.6g")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
