"""Rule render_study_report: the study's self-contained report.html."""

from pathlib import Path

import pandas as pd

from cellseg.logs import logged_step
from cellseg.report import render_study_report

with logged_step(snakemake.log[0]):
    render_study_report(
        snakemake.input.template,
        snakemake.output[0],
        study=snakemake.wildcards.study,
        reference=snakemake.params.reference,
        experiments=pd.read_csv(snakemake.input.experiments, sep="\t"),
        comparisons=pd.read_csv(snakemake.input.comparisons, sep="\t"),
        forest_path=snakemake.input.forest,
        cost_path=snakemake.input.cost,
        experiment_reports={Path(path).parent.name: path for path in snakemake.input.reports},
        differences=snakemake.params.differences,
        samples=snakemake.params.samples,
        workflow_dir=Path(snakemake.input.template).resolve().parents[2],
    )
