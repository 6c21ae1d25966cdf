"""Rule segment_held_out: the cells of every held-out slice, each fold's merge threshold
chosen without its own slices; the thresholds table and the sweep they were chosen on."""

import numpy as np

from cellseg.folds import by_fold
from cellseg.layout import held_out_cells
from cellseg.logs import logged_step
from cellseg.selection import segment_held_out

with logged_step(snakemake.log[0]):
    predictions = by_fold(snakemake.input, "predictions")
    thresholds, sweep = segment_held_out(
        folds_path=snakemake.input.folds,
        prediction_dirs=predictions,
        labels=np.load(snakemake.input.labels, mmap_mode="r"),
        settings=snakemake.params.segment["settings"],
        offsets=snakemake.params.segment["offsets"],
        output_dirs=held_out_cells(snakemake.output.cells, list(predictions)),
    )
    options = {"sep": "\t", "index": False, "float_format": "%.6g"}
    thresholds.to_csv(snakemake.output.thresholds, **options)
    sweep.to_csv(snakemake.output.sweep, **options)
