"""Rule render_study_report: the study's self-contained report.html."""

from pathlib import Path

import pandas as pd

from cellseg.logs import logged_step
from cellseg.report import StudyResults, render_study_report

with logged_step(snakemake.log[0]):
    results = StudyResults(
        study=snakemake.wildcards.study,
        reference=snakemake.params.reference,
        experiments=pd.read_csv(snakemake.input.experiments, sep="\t"),
        comparisons=pd.read_csv(snakemake.input.comparisons, sep="\t"),
        differences=snakemake.params.differences,
        samples=snakemake.params.samples,
    )
    render_study_report(
        snakemake.input.template,
        snakemake.output[0],
        results,
        figures={"forest": snakemake.input.forest, "cost": snakemake.input.cost},
        experiment_reports={Path(path).parent.name: path for path in snakemake.input.reports},
    )
