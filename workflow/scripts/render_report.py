"""Rule render_report: the experiment's self-contained report.html."""

import json
from pathlib import Path

import pandas as pd

from cellseg.folds import by_fold, named_group
from cellseg.logs import logged_step
from cellseg.report import RunRecords, RunTables, render_report

with logged_step(snakemake.log[0]):
    records = RunRecords(
        models=by_fold(snakemake.input, "models"),
        curves={fold: pd.read_csv(path, sep="\t") for fold, path in by_fold(snakemake.input, "curves").items()},
        stacks=named_group(snakemake.input, "stacks"),
        training=snakemake.input.training_record,
        benchmarks=list(snakemake.input.benchmarks),
        benchmarks_root=f"results/{snakemake.wildcards.experiment}/benchmarks",
        figures=snakemake.input.figures,
        viewer=json.loads(Path(snakemake.input.viewer).read_text()),
    )
    render_report(
        snakemake.input.template,
        snakemake.output[0],
        snakemake.params.config,
        RunTables.read(snakemake.input),
        records,
    )
