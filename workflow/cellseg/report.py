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
from .scores import MAIN_SCORES, PIXEL_COLUMNS, SEGMENT_COLUMNS, better
from .stackio import describe_voxel_size
from .stacks import apply_normalisation

WORST_SLICES = 3


def git_state(directory: str | Path) -> dict[str, str]:
    """Commit of the workflow's checkout and whether its tree had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": "yes" if git("status", "--porcelain") else "no"}
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
    """The jinja2 template at ``path``; its ``num`` filter prints a number or n/a."""
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
    data_records: list[str | Path],
    training_record: str | Path,
    warnings: pd.DataFrame,
    workflow_dir: str | Path,
) -> None:
    """Render the report of one experiment to ``output`` (one self-contained HTML file).

    ``model_records`` are fold k's model metadata (``models/fold<k>.json``, written by
    ``train.train_fold``), ``data_records`` the fetch records of its stacks, ``training_record`` the
    unpacked labelled set's (normalisation, voxel size); ``warnings`` the evaluation's
    (``evaluate.result_warnings``), shown at the top with the data's own warnings."""
    figures_dir = Path(figures_dir)
    worst = per_slice.nsmallest(WORST_SLICES, "membrane_dice").slice.tolist()
    slice_order = worst + [s for s in per_slice.slice if s not in worst]
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
        score_columns=PIXEL_COLUMNS + SEGMENT_COLUMNS,
        worst=worst,
        figures={
            "metrics": data_uri(figures_dir / "metrics_by_fold.png"),
            "curves": data_uri(figures_dir / "training_curves.png"),
            "test": data_uri(figures_dir / "test_volume.jpg") if (figures_dir / "test_volume.jpg").exists() else None,
            "slices": [(s, data_uri(figures_dir / "slices" / f"slice_{s:03d}.jpg")) for s in slice_order],
        },
        benchmarks=benchmark_table(benchmark_paths, benchmarks_root).to_dict("records"),
        models=models,
        data=data,
        warnings=list(
            dict.fromkeys(
                [*(w for d in data for w in d.get("warnings", [])), *input_record["warnings"], *warnings.message]
            )
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
        forest=data_uri(forest_path),
        cost=data_uri(cost_path),
        links=links,
        differences={name: yaml.safe_dump(diff, sort_keys=False) if diff else "" for name, diff in differences.items()},
        samples=samples,
        git=git_state(workflow_dir),
        versions=installed_versions(),
    )
    output.write_text(html)


def figure_uri(figure) -> str:
    """A matplotlib figure as a JPEG data URI."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="jpg", dpi=70, pil_kwargs={"quality": 85})
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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
    sections: int = 4,
) -> None:
    """The report of one segmented stack: a few sections (image, probability, cells,
    fold disagreement) evenly spread, the per-section summary, and the provenance (the
    models of ``plan`` and their cross-validated ``scores``, the normalisation, versions).
    ``stack`` (N, H, W) raw and ``segmentation`` (``segment.read_outputs``: probability,
    uncertainty, labels, N x H x W) may be lazy: only the sections shown are read. One
    self-contained HTML file."""
    from .figures import segmentation_panel

    shown = sorted({int(i) for i in np.linspace(0, len(stack) - 1, min(sections, len(stack)))})
    panels = []
    for index in shown:
        image = apply_normalisation(np.asarray(stack[index]), plan["normalisation"])
        probability, labels, uncertainty = (
            np.asarray(segmentation[k][index]) for k in ("probability", "labels", "uncertainty")
        )
        panels.append(
            (index, figure_uri(segmentation_panel(image, probability, labels, uncertainty, f"section {index}")))
        )
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
        panels=panels,
        summary=summary.to_dict("records"),
        summary_columns=list(summary.columns),
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
