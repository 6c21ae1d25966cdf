"""Rule render_report: the experiment's self-contained report.html."""

import json
from pathlib import Path

import pandas as pd

from cellseg.folds import by_fold
from cellseg.logs import logged_step
from cellseg.report import render_report

with logged_step(snakemake.log[0]):
    tables = {
        name: pd.read_csv(getattr(snakemake.input, name), sep="\t")
        for name in ("summary", "per_fold", "per_slice", "challenge_thresholds", "warnings")
    }
    render_report(
        snakemake.input.template,
        snakemake.output[0],
        experiment=snakemake.wildcards.experiment,
        config=snakemake.params.config,
        figures_dir=snakemake.input.figures,
        benchmark_paths=list(snakemake.input.benchmarks),
        benchmarks_root=f"results/{snakemake.wildcards.experiment}/benchmarks",
        model_records=by_fold(snakemake.input, "models"),
        curves={fold: pd.read_csv(path, sep="\t") for fold, path in by_fold(snakemake.input, "curves").items()},
        viewer=json.loads(Path(snakemake.input.viewer).read_text()),
        data_records=list(snakemake.input.data_records),
        training_record=snakemake.input.training_record,
        # The template lives at <checkout>/workflow/templates/: git state of that checkout.
        workflow_dir=Path(snakemake.input.template).resolve().parents[2],
        **tables,
    )
