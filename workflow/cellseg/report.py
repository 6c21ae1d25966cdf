"""The run's HTML report: one self-contained file rendered from a jinja2 template.

Figures are embedded as base64 data URIs, so the page opens offline and can be mailed or
archived as it is.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from .provenance import installed_versions
from .scores import CHALLENGE_COLUMNS, MAIN_SCORES, SCORE_LABELS, SKIMAGE_COLUMNS, better
from .stackio import describe_voxel_size
from .stacks import apply_normalisation
from .viewer import UNCERTAINTY_FULL, VIEWER_SECTIONS, spread_sections, volume_layers

WORST_SLICES = 3
# The columns of a segmented stack's summary (``segment.summary_table``): a plain name
# and the decimals shown.
SEGMENT_SUMMARY_COLUMNS = {
    "section": ("section", 0),
    "cells": ("cells", 0),
    "median_cell_area_px": ("median cell area (pixels)", 1),
    "median_cell_area_um2": ("median cell area (µm²)", 4),
    "membrane_fraction": ("membrane fraction", 3),
    "mean_uncertainty": ("mean fold disagreement (sd)", 4),
}
# The segmentation report's viewer shows sections at most this many pixels a side (larger
# ones at every n-th pixel), so that the page stays small.
VIEWER_SIDE = 1024
# The headline's scores, in the order a microscopist reads them.
HEADLINE = ("membrane_dice", "v_rand_thinned", "v_info_thinned", "challenge_pixel_error", "misclassified_fraction")
# Columns of the per-fold and per-slice tables, split in two so neither needs scrolling.
COLUMN_GROUPS = (
    {
        "id": "membrane",
        "title": "membrane and the challenge's scores",
        "columns": [c for c in SCORE_LABELS if c.startswith("membrane")]
        + CHALLENGE_COLUMNS
        + ["misclassified_fraction"],
    },
    {
        "id": "cell",
        "title": "cell and scikit-image's scores",
        "columns": [c for c in SCORE_LABELS if c.startswith("cell")] + SKIMAGE_COLUMNS,
    },
)
# A training whose loss over its last tenth of steps is not this much below its first
# tenth's did not learn.
LOSS_FELL_BY = 0.05


def headline_cards(summary: pd.DataFrame) -> list[dict]:
    """The headline's scores: mean, interval, folds, plain name, description, range and
    which way is better, from ``summary`` (``evaluate.summary_table``)."""
    rows = summary.set_index("metric")
    return [
        {
            "name": name,
            "label": SCORE_LABELS[name][0],
            "description": SCORE_LABELS[name][1],
            "mean": rows.loc[name, "mean"],
            "ci95_low": rows.loc[name, "ci95_low"],
            "ci95_high": rows.loc[name, "ci95_high"],
            "folds": int(rows.loc[name, "folds"]),
            "range": "0 to 1",
            "better": better(name),
        }
        for name in HEADLINE
        if name in rows.index
    ]


def representative_slice(per_slice: pd.DataFrame, flagged: set[int] = frozenset()) -> tuple[pd.Series, float]:
    """The held-out slice to show as typical, and the median membrane Dice of all the
    held-out slices: the slice closest to that median (the lower slice number on a tie)
    among those no warning names (``flagged``); among all where every slice is flagged."""
    median = float(per_slice.membrane_dice.median())
    candidates = per_slice[~per_slice.slice.isin(flagged)]
    candidates = per_slice if candidates.empty else candidates
    distance = (candidates.membrane_dice - median).abs()
    chosen = candidates.assign(distance=distance).sort_values(["distance", "slice"]).iloc[0]
    return chosen.drop("distance"), median


def training_warnings(curves: dict[int, pd.DataFrame]) -> list[dict]:
    """Folds whose training loss did not fall: the mean loss of the curve's last tenth of
    rows is not ``LOSS_FELL_BY`` below its first tenth's. One dict per fold (``fold``,
    ``message``)."""
    rows = []
    for fold, curve in sorted(curves.items()):
        tenth = max(1, len(curve) // 10)
        first, last = curve.loss.iloc[:tenth].mean(), curve.loss.iloc[-tenth:].mean()
        if not last < (1 - LOSS_FELL_BY) * first:
            rows.append(
                {
                    "fold": fold,
                    "message": (
                        f"fold {fold}'s training loss did not fall: {first:.4f} over its first tenth of steps, "
                        f"{last:.4f} over its last. Its model learnt little; check train.learning_rate, "
                        "train.steps and the labels."
                    ),
                }
            )
    return rows


def linked_warnings(
    messages: list[str], result_rows: pd.DataFrame, training_rows: list[dict], per_slice: pd.DataFrame
) -> list[dict]:
    """Every warning as {message, set, slice}: ``messages`` (the data's) without a link,
    the evaluation's rows (``evaluate.result_warnings``) and the training's
    (``training_warnings``) linked to their slice, or to their fold's worst slice."""
    worst = per_slice.sort_values("membrane_dice").groupby("fold").slice.first()
    warnings = [{"message": m, "set": None, "slice": None} for m in dict.fromkeys(messages)]
    for row in [*result_rows.to_dict("records"), *training_rows]:
        slice_ = row.get("slice")
        if slice_ is None or pd.isna(slice_):
            fold = row.get("fold")
            slice_ = worst.get(int(fold)) if fold is not None and not pd.isna(fold) else None
        warnings.append(
            {"message": row["message"], "set": "held_out", "slice": None if slice_ is None else int(slice_)}
        )
    return warnings


def git_state(directory: str | Path) -> dict[str, str]:
    """Commit of the workflow's checkout and whether a tracked file had uncommitted
    changes; untracked files (a user's own config, results) do not count: the config is
    recorded in full beside it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": "yes" if git("status", "--porcelain", "--untracked-files=no") else "no",
        }
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown (not a git checkout)", "dirty": "unknown"}


def data_uri(path: str | Path) -> str:
    """The file as a data URI, so the page needs nothing beside it."""
    mime = "image/jpeg" if Path(path).suffix == ".jpg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def benchmark_table(paths: list[str | Path], root: str | Path) -> pd.DataFrame:
    """Wall time and peak memory of each job that wrote a Snakemake benchmark file."""
    rows = []
    for path in sorted(map(Path, paths)):
        record = pd.read_csv(path, sep="\t").iloc[0]
        rows.append(
            {
                "job": str(path.relative_to(root).with_suffix("")),
                "seconds": record["s"],
                "max_rss_mb": record["max_rss"],
            }
        )
    return pd.DataFrame(rows, columns=["job", "seconds", "max_rss_mb"])


def template(path: str | Path) -> jinja2.Template:
    """The jinja2 template at ``path``; its ``num`` filter prints a number or n/a, and the
    viewer's colour scale (``UNCERTAINTY_FULL``) is known to every template."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(path).parent),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = lambda value, digits=4: (
        "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"
    )
    environment.globals["UNCERTAINTY_FULL"] = UNCERTAINTY_FULL
    return environment.get_template(Path(path).name)


def generated_at() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def summary_rows(summary: pd.DataFrame) -> list[dict]:
    return [{**record, "better": better(record["metric"])} for record in summary.to_dict("records")]


def render_report(
    template_path: str | Path,
    output: str | Path,
    *,
    experiment: str,
    config: dict,
    summary: pd.DataFrame,
    per_fold: pd.DataFrame,
    per_slice: pd.DataFrame,
    challenge_thresholds: pd.DataFrame,
    figures_dir: str | Path,
    benchmark_paths: list[str | Path],
    benchmarks_root: str | Path,
    model_records: dict[int, str | Path],
    curves: dict[int, pd.DataFrame],
    viewer: list[dict],
    data_records: list[str | Path],
    training_record: str | Path,
    warnings: pd.DataFrame,
    workflow_dir: str | Path,
) -> None:
    """Render the report of one experiment to ``output`` (one self-contained HTML file).

    ``model_records`` are fold k's model metadata (``models/fold<k>.json``, written by
    ``train.train_fold``), ``curves`` its training curve, ``viewer`` the slice viewer's
    sets (``viewer.run_sets``), ``data_records`` the fetch records of its stacks,
    ``training_record`` the unpacked labelled set's (normalisation, voxel size);
    ``warnings`` the evaluation's (``evaluate.result_warnings``), shown at the top with
    the data's own and the training's (``training_warnings``), each linked to its slice
    in the viewer."""
    figures_dir = Path(figures_dir)
    worst = per_slice.nsmallest(WORST_SLICES, "membrane_dice").slice.tolist()
    trained = training_warnings(curves)
    # Not typical: a slice a warning names, or any slice of a fold a warning names.
    flagged_folds = {*warnings.fold[warnings.slice.isna()].dropna().astype(int), *(w["fold"] for w in trained)}
    flagged = {*warnings.slice.dropna().astype(int), *per_slice.slice[per_slice.fold.isin(flagged_folds)]}
    representative, median_dice = representative_slice(per_slice, flagged)
    models = [json.loads(Path(model_records[fold]).read_text()) for fold in sorted(model_records)]
    # A record's file is <stack>-<digest>.json (cellseg.datasets): the stack is its name.
    data = [{"stack": Path(p).stem.rsplit("-", 1)[0], **json.loads(Path(p).read_text())} for p in data_records]
    input_record = json.loads(Path(training_record).read_text())
    html = template(template_path).render(
        experiment=experiment,
        generated=generated_at(),
        summary=summary_rows(summary),
        per_fold=per_fold.to_dict("records"),
        per_slice=per_slice.to_dict("records"),
        challenge=challenge_thresholds.to_dict("records"),
        headline=headline_cards(summary),
        representative={
            "slice": int(representative.slice),
            "fold": int(representative.fold),
            "dice": representative.membrane_dice,
            "median": median_dice,
            "uri": data_uri(figures_dir / "slices" / f"slice_{int(representative.slice):03d}.jpg"),
        },
        viewer=viewer,
        labels=SCORE_LABELS,
        column_groups=COLUMN_GROUPS,
        worst=worst,
        figures={
            "metrics": data_uri(figures_dir / "metrics_by_fold.png"),
            "curves": data_uri(figures_dir / "training_curves.png"),
        },
        benchmarks=benchmark_table(benchmark_paths, benchmarks_root).to_dict("records"),
        models=models,
        data=data,
        warnings=linked_warnings(
            [*(w for d in data for w in d.get("warnings", [])), *input_record["warnings"]],
            warnings,
            trained,
            per_slice,
        ),
        input_record=input_record,
        describe_voxel_size=describe_voxel_size,
        label_cell_value=config["data"]["label_cell_value"],
        config_yaml=yaml.safe_dump(config, sort_keys=False),
        seed=config["seed"],
        threshold=config["eval"]["threshold"],
        git=git_state(workflow_dir),
        versions=models[0]["versions"],  # what trained the models
    )
    Path(output).write_text(html)


def render_study_report(
    template_path: str | Path,
    output: str | Path,
    *,
    study: str,
    reference: str,
    experiments: pd.DataFrame,
    comparisons: pd.DataFrame,
    forest_path: str | Path,
    cost_path: str | Path,
    experiment_reports: dict[str, str | Path],
    differences: dict[str, dict],
    samples: int,
    workflow_dir: str | Path,
) -> None:
    """Render a study's report to ``output``: its experiments, their paired differences to
    the reference, and links to each experiment's own report."""
    output = Path(output)
    links = {name: os.path.relpath(path, output.parent) for name, path in experiment_reports.items()}
    html = template(template_path).render(
        study=study,
        reference=reference,
        generated=generated_at(),
        experiments=experiments.to_dict("records"),
        comparisons=comparisons.to_dict("records"),
        scores=MAIN_SCORES,
        labels=SCORE_LABELS,
        forest=data_uri(forest_path),
        cost=data_uri(cost_path),
        links=links,
        differences={name: yaml.safe_dump(diff, sort_keys=False) if diff else "" for name, diff in differences.items()},
        samples=samples,
        git=git_state(workflow_dir),
        versions=installed_versions(),
    )
    output.write_text(html)


def render_segment_report(
    template_path: str | Path,
    output: str | Path,
    *,
    experiment: str,
    name: str,
    stack: np.ndarray,
    stack_record: dict,
    plan: dict,
    segmentation: dict,
    summary: pd.DataFrame,
    scores: pd.DataFrame,
    segment_config: dict,
    workflow_dir: str | Path,
    sections: int = VIEWER_SECTIONS,
) -> None:
    """The report of one segmented stack: the slice viewer over up to ``sections``
    sections evenly spread (image, probability, cells, fold disagreement; sections
    wider than ``VIEWER_SIDE`` px shown at every n-th pixel), the per-section summary,
    and the provenance (the models of ``plan`` and their cross-validated ``scores``, the
    normalisation, versions). ``stack`` (N, H, W) raw and ``segmentation``
    (``segment.read_outputs``: probability, uncertainty, labels, N x H x W) may be lazy:
    only the sections shown are read. One self-contained HTML file."""
    shown = spread_sections(len(stack), sections)
    stride = max(1, -(-max(stack.shape[1:]) // VIEWER_SIDE))
    images = {index: apply_normalisation(np.asarray(stack[index]), plan["normalisation"]) for index in shown}
    viewer = [
        {
            "id": "sections",
            "name": f"sections of {name}",
            "describe": "section {index}",
            "layers": ["outlines", "prediction", "probability", "uncertainty"],
            "default_on": ["outlines"],
            "slices": volume_layers(
                images,
                segmentation["probability"],
                segmentation["uncertainty"],
                segment_config["threshold"],
                shown,
                segmentation["labels"],
                stride,
            ),
        }
    ]
    warnings = list(stack_record.get("warnings", []))
    empty = summary.section[summary.cells == 0].tolist()
    if empty:
        warnings.append(
            f"No cell was found in {len(empty)} of {len(summary)} sections ({', '.join(map(str, empty[:10]))}"
            f"{', ...' if len(empty) > 10 else ''}): no pixel there is above segment.seed_threshold "
            f"({segment_config['seed_threshold']}). Lower it, or check that the stack looks like the training data."
        )
    html = template(template_path).render(
        warnings=warnings,
        experiment=experiment,
        name=name,
        generated=generated_at(),
        record=stack_record,
        describe_voxel_size=describe_voxel_size,
        viewer=viewer,
        stride=stride,
        summary=summary.to_dict("records"),
        summary_columns=[(column, *SEGMENT_SUMMARY_COLUMNS[column]) for column in summary.columns],
        scores=[r for r in scores.to_dict("records") if r["metric"] in MAIN_SCORES],
        score_names=MAIN_SCORES,
        models=plan["models"],
        normalisation=plan["normalisation"],
        slabs=len(plan["slabs"]),
        segment=segment_config,
        git=git_state(workflow_dir),
        versions=installed_versions(),
    )
    Path(output).write_text(html)
