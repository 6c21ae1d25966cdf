"""The run's HTML report: one self-contained file rendered from a jinja2 template.

Figures are embedded as base64 data URIs, so the page opens offline and can be mailed or
archived as it is.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from .layout import slice_file
from .provenance import installed_versions
from .records import SegmentationPlan, Volume, VoxelSize, pixel_scale
from .scores import BY_NAME, HEADLINE, MAIN_SCORES, SCORE_LABELS, TABLES, better
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
# Columns of the per-fold and per-slice tables, split in two so neither needs scrolling.
COLUMN_GROUPS = (
    {"id": "cells", "title": "the cells (segment.method), scored as a segmentation", "columns": TABLES["cells"]},
    {"id": "membrane", "title": "membrane and the challenge's scores", "columns": TABLES["membrane"]},
    {"id": "cell", "title": "cell and scikit-image's scores", "columns": TABLES["cell"]},
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
            "label": BY_NAME[name].label,
            "description": BY_NAME[name].description,
            "mean": rows.loc[name, "mean"],
            "ci95_low": rows.loc[name, "ci95_low"],
            "ci95_high": rows.loc[name, "ci95_high"],
            "folds": int(rows.loc[name, "folds"]),
            "range": BY_NAME[name].range,
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


def describe_voxel_size(voxel_size: dict | None) -> str:
    """A record's voxel size (``records.VoxelSize`` as JSON) in words, for the templates."""
    return VoxelSize.from_json(voxel_size).describe()


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


@dataclass(frozen=True)
class RunTables:
    """A run's score tables (``metrics/*.tsv``, written by ``evaluate``; ``cell_thresholds``
    by ``selection.segment_held_out``)."""

    summary: pd.DataFrame
    per_fold: pd.DataFrame
    per_slice: pd.DataFrame
    challenge_thresholds: pd.DataFrame
    warnings: pd.DataFrame
    cell_thresholds: pd.DataFrame

    @classmethod
    def read(cls, paths: dict[str, str | Path]) -> RunTables:
        """The tables from ``paths[name]`` for each field's name."""
        return cls(**{f.name: pd.read_csv(paths[f.name], sep="\t") for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class RunRecords:
    """What else a run's report shows: ``models`` (fold -> ``models/fold<k>.json``),
    ``curves`` (fold -> training curve), ``stacks`` (stack -> its fetch record),
    ``training`` (the unpacked labelled set's record), the ``benchmarks`` files of its
    jobs under ``benchmarks_root``, its ``figures`` folder and its ``viewer`` sets
    (``viewer.run_sets``)."""

    models: dict[int, str | Path]
    curves: dict[int, pd.DataFrame]
    stacks: dict[str, str | Path]
    training: str | Path
    benchmarks: list[str | Path]
    benchmarks_root: str | Path
    figures: str | Path
    viewer: list[dict]


def render_report(
    template_path: str | Path, output: str | Path, config: dict, tables: RunTables, records: RunRecords
) -> None:
    """Render the report of one experiment (``config``, its validated config) to
    ``output``, one self-contained HTML file: ``tables`` and ``records`` as the
    ``RunTables`` and ``RunRecords`` say; the evaluation's warnings
    (``evaluate.result_warnings``) are shown at the top with the data's own and the
    training's (``training_warnings``), each linked to its slice in the viewer. The git
    state is that of the checkout holding the template (``workflow/templates/``)."""
    per_slice, warnings = tables.per_slice, tables.warnings
    figures_dir = Path(records.figures)
    worst = per_slice.nsmallest(WORST_SLICES, "membrane_dice").slice.tolist()
    trained = training_warnings(records.curves)
    # Not typical: a slice a warning names, or any slice of a fold a warning names.
    flagged_folds = {*warnings.fold[warnings.slice.isna()].dropna().astype(int), *(w["fold"] for w in trained)}
    flagged = {*warnings.slice.dropna().astype(int), *per_slice.slice[per_slice.fold.isin(flagged_folds)]}
    representative, median_dice = representative_slice(per_slice, flagged)
    models = [json.loads(Path(records.models[fold]).read_text()) for fold in sorted(records.models)]
    data = [{"stack": stack, **json.loads(Path(path).read_text())} for stack, path in records.stacks.items()]
    input_record = json.loads(Path(records.training).read_text())
    training_pixels = VoxelSize.from_json(models[0].get("input", {}).get("voxel_size"))
    for stack in data:  # how the test stack met the models (inference.FoldEnsemble.pixel_zoom)
        if stack["stack"] == "test_images":
            scale = pixel_scale(
                VoxelSize.from_json(stack["voxel_size"]),
                training_pixels,
                "the test stack",
                config["predict"]["match_pixel_size"],
            )
            stack["notes"] = [*stack.get("notes", []), scale.note]
            stack["warnings"] = [*stack.get("warnings", []), *([scale.note] if scale.warning else [])]
    html = template(template_path).render(
        experiment=config["experiment"],
        generated=generated_at(),
        summary=summary_rows(tables.summary),
        per_fold=tables.per_fold.to_dict("records"),
        per_slice=per_slice.to_dict("records"),
        challenge=tables.challenge_thresholds.to_dict("records"),
        cell_thresholds=tables.cell_thresholds.to_dict("records"),
        segment_method=config["segment"]["method"],
        headline=headline_cards(tables.summary),
        representative={
            "slice": int(representative.slice),
            "fold": int(representative.fold),
            "dice": representative.membrane_dice,
            "median": median_dice,
            "uri": data_uri(figures_dir / "slices" / slice_file(int(representative.slice), "jpg")),
        },
        viewer=records.viewer,
        labels=SCORE_LABELS,
        column_groups=COLUMN_GROUPS,
        worst=worst,
        figures={
            "metrics": data_uri(figures_dir / "metrics_by_fold.png"),
            "curves": data_uri(figures_dir / "training_curves.png"),
        },
        benchmarks=benchmark_table(records.benchmarks, records.benchmarks_root).to_dict("records"),
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
        git=git_state(checkout_of(template_path)),
        versions=models[0]["versions"],  # what trained the models
    )
    Path(output).write_text(html)


def checkout_of(template_path: str | Path) -> Path:
    """The checkout a template lives in (``<checkout>/workflow/templates/<name>``)."""
    return Path(template_path).resolve().parents[2]


@dataclass(frozen=True)
class StudyResults:
    """A study's results: its name, the ``reference`` experiment, the ``experiments``
    table and the paired ``comparisons`` to the reference (``comparison``), each
    experiment's config keys that differ from the reference's (``differences``) and the
    number of bootstrap ``samples`` the intervals were drawn with."""

    study: str
    reference: str
    experiments: pd.DataFrame
    comparisons: pd.DataFrame
    differences: dict[str, dict]
    samples: int


def render_study_report(
    template_path: str | Path,
    output: str | Path,
    results: StudyResults,
    figures: dict[str, str | Path],
    experiment_reports: dict[str, str | Path],
) -> None:
    """Render a study's report to ``output``: its experiments, their paired differences to
    the reference (``results``), its ``figures`` (``forest`` and ``cost`` plots), and
    links to each experiment's own report."""
    output = Path(output)
    links = {name: os.path.relpath(path, output.parent) for name, path in experiment_reports.items()}
    differences = results.differences
    html = template(template_path).render(
        study=results.study,
        reference=results.reference,
        generated=generated_at(),
        experiments=results.experiments.to_dict("records"),
        comparisons=results.comparisons.to_dict("records"),
        scores=MAIN_SCORES,
        labels=SCORE_LABELS,
        forest=data_uri(figures["forest"]),
        cost=data_uri(figures["cost"]),
        links=links,
        differences={name: yaml.safe_dump(diff, sort_keys=False) if diff else "" for name, diff in differences.items()},
        samples=results.samples,
        git=git_state(checkout_of(template_path)),
        versions=installed_versions(),
    )
    output.write_text(html)


@dataclass(frozen=True)
class SegmentedStack:
    """A stack segmented by ``segment``: its ``name`` in segment.stacks, the raw ``stack``
    (N, H, W, may be memory-mapped), its fetch ``record``, its ``plan``, the written
    ``segmentation`` (``stackio.read_segmentation``: probability, uncertainty, labels,
    N x H x W, may be lazy) and its per-section ``summary``."""

    name: str
    stack: np.ndarray
    record: dict
    plan: SegmentationPlan
    segmentation: dict
    summary: pd.DataFrame


def render_segment_report(
    template_path: str | Path,
    output: str | Path,
    segmented: SegmentedStack,
    experiment: str,
    scores: pd.DataFrame,
    segment_config: dict,
) -> None:
    """The report of one segmented stack: the slice viewer over up to ``VIEWER_SECTIONS``
    sections evenly spread (image, probability, cells, fold disagreement; sections
    wider than ``VIEWER_SIDE`` px shown at every n-th pixel), the per-section summary,
    and the provenance (the models of ``experiment`` that segmented it and their
    cross-validated ``scores``, the normalisation, versions). Only the sections shown
    are read. One self-contained HTML file."""
    stack, plan, segmentation, name = segmented.stack, segmented.plan, segmented.segmentation, segmented.name
    stack_record, summary = segmented.record, segmented.summary
    shown = spread_sections(len(stack), VIEWER_SECTIONS)
    stride = max(1, -(-max(stack.shape[1:]) // VIEWER_SIDE))
    images = {index: plan.normalisation.apply(np.asarray(stack[index])) for index in shown}
    volume = Volume(images, segmentation["probability"], segmentation["uncertainty"], segmentation["labels"])
    viewer = [
        {
            "id": "sections",
            "name": f"sections of {name}",
            "describe": "section {index}",
            "layers": ["segments", "outlines", "prediction", "probability", "uncertainty"],
            "default_on": ["segments"],
            "slices": volume_layers(volume, segment_config["threshold"], shown, stride),
        }
    ]
    warnings = list(stack_record.get("warnings", [])) + plan.warnings
    empty = summary.section[summary.cells == 0].tolist()
    if empty:
        warnings.append(
            f"No cell was found in {len(empty)} of {len(summary)} sections ({', '.join(map(str, empty[:10]))}"
            f"{', ...' if len(empty) > 10 else ''}): no pixel there is a cell by segment.method "
            f"{segment_config['method']} (cells need a probability above segment.threshold, "
            f"{segment_config['threshold']}, and the watershed's seeds one above segment.seed_threshold, "
            f"{segment_config['seed_threshold']}). Check that the stack looks like the training data."
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
        models=plan.models,
        normalisation=plan.normalisation,
        slabs=len(plan.slabs),
        scale=plan.scale,
        segment=segment_config,
        git=git_state(checkout_of(template_path)),
        versions=installed_versions(),
    )
    Path(output).write_text(html)
