"""Every way of making cells, on one finished run's held-out predictions, no retraining.

    .venv/bin/python -m benchmarks.methods results/default [--out DIR]

For each method the run's network allows (watershed and agglomerate always; mutex where it
predicts affinities), every held-out slice is segmented as the ``segment_held_out`` rule
does, merge thresholds chosen per fold on the other folds' slices, and scored as a
segmentation (``evaluate.evaluate_held_out``). Beside them, the run's probability map
thresholded (``v_rand_thinned``, ``v_info_thinned``: the challenge's score of a map).
Writes ``methods.tsv`` (one row per method: mean and 95 % interval over the folds of the
cells' V_Rand and V_Info, each fold's threshold, seconds) and ``methods_per_fold.tsv`` to
``--out`` (default ``<run>/methods``) and prints them. The run's segment settings are kept
but for the method. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellseg.config import defaults
from cellseg.datasets import unpacked_id
from cellseg.evaluate import evaluate_held_out, summary_table
from cellseg.folds import read_folds
from cellseg.layout import model_files
from cellseg.model import affinity_offsets
from cellseg.selection import ALL_FOLDS, segment_held_out

SCORES = ("cells_v_rand", "cells_v_info")
MAP_SCORES = ("v_rand_thinned", "v_info_thinned")


def compare_methods(run: Path, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The methods' table and their per-fold scores (see the module) for the run in ``run``
    (``results/<experiment>``), its cells written under ``out``."""
    record = json.loads(model_files(run)[0].with_suffix(".json").read_text())
    config = record["config"]
    offsets = affinity_offsets(record["model"])
    folds_path = run / "folds.tsv"
    folds = sorted(read_folds(folds_path).fold.unique())
    predictions = {fold: run / "predictions/held_out" / f"fold{fold}" for fold in folds}
    workdir = run.resolve().parents[1]  # the run's results/<experiment> lies in its working directory
    labels = np.load(workdir / f"resources/unpacked/{unpacked_id(config['data'], 'train')}/train_labels.npy")
    methods = ["watershed", "agglomerate"] + (["mutex"] if offsets else [])
    rows, per_fold = [], []
    for method in methods:
        settings = {**defaults("segment"), **config["segment"], "method": method, "stacks": {}}
        cells = {fold: out / method / f"fold{fold}" for fold in folds}
        began = time.perf_counter()
        thresholds, _ = segment_held_out(folds_path, predictions, labels, settings, offsets, cells)
        seconds = time.perf_counter() - began
        per_slice, _ = evaluate_held_out(folds_path, predictions, labels, config["eval"]["threshold"], cells)
        summary = summary_table(per_slice).set_index("metric")
        chosen = thresholds.set_index("fold").merge_threshold
        rows.append(
            {
                "method": method,
                **{
                    f"{score}{part}": summary.loc[score, column]
                    for score in SCORES
                    for part, column in (("", "mean"), ("_low", "ci95_low"), ("_high", "ci95_high"))
                },
                "thresholds": " ".join(f"{chosen[f]:g}" for f in folds) if method != "watershed" else "",
                "threshold_all": chosen[ALL_FOLDS],
                "seconds": seconds,
            }
        )
        fold_means = per_slice.groupby("fold")[list(SCORES)].mean().reset_index()
        per_fold.append(fold_means.assign(method=method))
    map_summary = summary_table(per_slice).set_index("metric")
    rows.append(
        {
            "method": "probability map thresholded",
            **{
                f"{score}{part}": map_summary.loc[map_score, column]
                for score, map_score in zip(SCORES, MAP_SCORES, strict=True)
                for part, column in (("", "mean"), ("_low", "ci95_low"), ("_high", "ci95_high"))
            },
        }
    )
    return pd.DataFrame(rows), pd.concat(per_fold, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished run: results/<experiment>")
    parser.add_argument("--out", type=Path, help="default: <run>/methods")
    args = parser.parse_args()
    out = args.out or args.run / "methods"
    table, per_fold = compare_methods(args.run, out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "methods.tsv", sep="\t", index=False, float_format="%.6g")
    per_fold.to_csv(out / "methods_per_fold.tsv", sep="\t", index=False, float_format="%.6g")
    print(table.to_markdown(index=False, floatfmt=".4g"))
    print(per_fold.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
