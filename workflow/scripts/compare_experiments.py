"""Rule compare_experiments: the study's experiments table and its paired differences to
the reference."""

from cellseg.comparison import compare_experiments, read_runs
from cellseg.folds import by_fold, named_group
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    names = [run for repeats in snakemake.params.runs.values() for run in repeats]
    per_slice, training_seconds = read_runs(
        snakemake.params.runs,
        per_slice_paths=named_group(snakemake.input, "per_slice"),
        model_records={run: by_fold(snakemake.input, f"models/{run}") for run in names},
    )
    experiments, comparisons = compare_experiments(
        per_slice, training_seconds, snakemake.params.reference, snakemake.params.samples, snakemake.params.seed
    )
    options = {"sep": "\t", "index": False, "float_format": "%.6g"}
    experiments.to_csv(snakemake.output.experiments, **options)
    comparisons.to_csv(snakemake.output.comparisons, **options)
