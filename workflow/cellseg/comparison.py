"""A study's statistics: each experiment's scores, and paired differences to the reference.

Experiments of a study are scored on the same held-out slices, so they are compared slice
by slice: for every labelled slice the difference of its score under an experiment and
under the reference (each averaged over the repeats first, repeat r paired with repeat r).
Each mean difference gets a paired bootstrap 95 % interval (percentile, resampling slices)
and a two-sided Wilcoxon signed-rank p-value (scipy), Holm-corrected over the experiments
compared with the reference, separately for each score. With two repeats or more the
reference's repeat 1 against its repeat 0 shows what the seed alone changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .evaluate import summary_table
from .scores import MAIN_SCORES, better

# Scores a study compares, with the direction that is better.
STUDY_SCORES = {score: better(score) for score in MAIN_SCORES}
SEED_NOISE = "seed noise"
ALPHA = 0.05


def bootstrap_interval(differences: np.ndarray, samples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired differences."""
    differences = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    # Chunks keep memory flat for many slices and resamples.
    for start in range(0, samples, 1000):
        chunk = min(1000, samples - start)
        means[start : start + chunk] = differences[rng.integers(0, len(differences), (chunk, len(differences)))].mean(
            axis=1
        )
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1 when every difference is zero."""
    differences = np.asarray(differences, dtype=float)
    if not np.any(differences != 0):
        return 1.0
    return float(stats.wilcoxon(differences).pvalue)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of p-values, in their given order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def slice_scores(per_slice_runs: list[pd.DataFrame]) -> pd.DataFrame:
    """The study's scores per slice, averaged over an experiment's repeats."""
    frames = [table.set_index("slice")[list(STUDY_SCORES)] for table in per_slice_runs]
    return sum(frames) / len(frames)


def experiment_row(name: str, per_slice_runs: list[pd.DataFrame], training_seconds: list[float]) -> dict:
    """Mean and 95 % interval of each study score, as the experiment's own summary, with
    every repeat's folds counted as folds; training minutes summed over folds, averaged
    over repeats."""
    folds = per_slice_runs[0].fold.nunique()
    pooled = pd.concat(
        [table.assign(fold=table.fold + repeat * folds) for repeat, table in enumerate(per_slice_runs)],
        ignore_index=True,
    )
    summary = summary_table(pooled).set_index("metric")
    row = {
        "experiment": name,
        "repeats": len(per_slice_runs),
        "folds": folds,
        "training_minutes": sum(training_seconds) / len(per_slice_runs) / 60,
    }
    for score in STUDY_SCORES:
        row |= {f"{score}_{column}": summary.loc[score, column] for column in ("mean", "ci95_low", "ci95_high")}
    return row


def difference_row(pair: tuple[str, str, str], score: str, differences: pd.Series, bootstrap: tuple[int, int]) -> dict:
    """One row of the differences table: ``pair`` (experiment, reference, kind), the
    per-slice ``differences`` of ``score``, their mean with its bootstrap interval
    (``bootstrap``: samples, seed) and Wilcoxon p-value."""
    experiment, reference, kind = pair
    low, high = bootstrap_interval(differences.to_numpy(), *bootstrap)
    return {
        "experiment": experiment,
        "reference": reference,
        "kind": kind,
        "score": score,
        "better": STUDY_SCORES[score],
        "slices": len(differences),
        "difference": float(differences.mean()),
        "ci95_low": low,
        "ci95_high": high,
        "wilcoxon_p": wilcoxon_p(differences.to_numpy()),
    }


def compare_experiments(
    per_slice: dict[str, list[pd.DataFrame]],
    training_seconds: dict[str, list[float]],
    reference: str,
    samples: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study's two tables: one row per experiment, and one per (experiment, score)
    difference to the reference (``kind`` "change", or "seed noise" for the reference's
    repeat 1 against its repeat 0), with its ``verdict``.

    ``per_slice[name]`` holds the per_slice tables of the experiment's repeats in order.
    """
    experiments = pd.DataFrame([experiment_row(name, runs, training_seconds[name]) for name, runs in per_slice.items()])
    reference_scores = slice_scores(per_slice[reference])
    rows = []
    for name, runs in per_slice.items():
        if name == reference:
            continue
        scores = slice_scores(runs)
        if not scores.index.equals(reference_scores.index):
            raise ValueError(f"experiments '{name}' and '{reference}' were not scored on the same slices")
        rows += [
            difference_row((name, reference, "change"), score, scores[score] - reference_scores[score], (samples, seed))
            for score in STUDY_SCORES
        ]
    if len(per_slice[reference]) > 1:
        first, second = (run.set_index("slice") for run in per_slice[reference][:2])
        rows += [
            difference_row(
                (f"{reference} repeat 1", f"{reference} repeat 0", SEED_NOISE),
                score,
                second[score] - first[score],
                (samples, seed),
            )
            for score in STUDY_SCORES
        ]
    columns = [
        "experiment",
        "reference",
        "kind",
        "score",
        "better",
        "slices",
        "difference",
        "ci95_low",
        "ci95_high",
        "wilcoxon_p",
        "holm_p",
    ]
    comparisons = pd.DataFrame(rows, columns=columns[:-1])
    comparisons["holm_p"] = np.nan
    changes = comparisons.kind == "change"
    for score in STUDY_SCORES:
        family = changes & (comparisons.score == score)
        if family.any():
            comparisons.loc[family, "holm_p"] = holm(comparisons.loc[family, "wilcoxon_p"])
    comparisons["verdict"] = [verdict(row) for row in comparisons.itertuples()]
    return experiments, comparisons


def verdict(row) -> str:
    """better or worse than the reference where Holm's p is below 0.05, else no clear
    difference; empty for the seed-noise rows, which test no change."""
    if row.kind != "change":
        return ""
    if not row.holm_p < ALPHA:
        return "no clear difference"
    improved = row.difference > 0 if row.better == "higher" else row.difference < 0
    return "better" if improved else "worse"


def read_runs(
    runs: dict[str, list[str]], per_slice_paths: dict[str, str | Path], model_records: dict[str, dict[int, str | Path]]
) -> tuple[dict[str, list[pd.DataFrame]], dict[str, list[float]]]:
    """Each experiment's per_slice tables and training seconds, repeat by repeat.

    ``runs`` maps each experiment to its runs (repeat 0 first); ``per_slice_paths[run]`` is
    a run's ``metrics/per_slice.tsv``, ``model_records[run][k]`` its fold k's model
    metadata (``models/fold<k>.json``). The training seconds are the sum over folds.
    """
    tables = {run: pd.read_csv(path, sep="\t") for run, path in per_slice_paths.items()}
    seconds = {
        run: sum(json.loads(Path(path).read_text())["wall_seconds"] for path in folds.values())
        for run, folds in model_records.items()
    }
    return (
        {name: [tables[run] for run in repeats] for name, repeats in runs.items()},
        {name: [seconds[run] for run in repeats] for name, repeats in runs.items()},
    )
