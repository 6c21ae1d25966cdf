"""Rule evaluate: score the held-out slices; write per-slice, per-fold, summary and
challenge-threshold tables."""

import numpy as np

from cellseg.evaluate import evaluate_held_out, per_fold_table, result_warnings, summary_table
from cellseg.folds import by_fold, read_folds
from cellseg.layout import held_out_cells
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    predictions = by_fold(snakemake.input, "predictions")
    per_slice, challenge_thresholds = evaluate_held_out(
        folds_path=snakemake.input.folds,
        prediction_dirs=predictions,
        labels=np.load(snakemake.input.labels, mmap_mode="r"),
        threshold=snakemake.params.threshold,
        cell_dirs=held_out_cells(snakemake.input.cells, list(predictions)),
    )
    options = {"sep": "\t", "index": False, "float_format": "%.6g"}
    per_slice.to_csv(snakemake.output.per_slice, **options)
    per_fold_table(per_slice).to_csv(snakemake.output.per_fold, **options)
    summary_table(per_slice).to_csv(snakemake.output.summary, **options)
    challenge_thresholds.to_csv(snakemake.output.challenge_thresholds, **options)
    held_out = len(read_folds(snakemake.input.folds))
    result_warnings(per_slice, snakemake.params.threshold, held_out).to_csv(snakemake.output.warnings, **options)
