"""Rule compare_experiments: the study's experiments table and its paired differences to
the reference."""

from cellseg.comparison import compare_experiments, read_runs
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    per_slice, training_seconds = read_runs(
        snakemake.params.runs, list(snakemake.input.per_slice), list(snakemake.input.models)
    )
    experiments, comparisons = compare_experiments(
        per_slice, training_seconds, snakemake.params.reference, snakemake.params.samples, snakemake.params.seed
    )
    options = {"sep": "\t", "index": False, "float_format": "%.6g"}
    experiments.to_csv(snakemake.output.experiments, **options)
    comparisons.to_csv(snakemake.output.comparisons, **options)
