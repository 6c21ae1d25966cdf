"""Rule encode_viewer: the layers of a run's slice viewer, as JSON for its report."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from cellseg.folds import by_fold
from cellseg.layout import held_out_cells
from cellseg.logs import logged_step
from cellseg.records import HeldOut, Volume
from cellseg.viewer import run_sets

with logged_step(snakemake.log[0]):
    test = None
    if snakemake.input.test_images:
        images = np.load(snakemake.input.test_images, mmap_mode="r")
        # A one-section stack reads back from its ImageJ file as (H, W).
        probability, uncertainty, cells = (
            tifffile.imread(path).reshape(images.shape) for path in snakemake.input.test_volume
        )
        test = Volume(images, probability, uncertainty, cells)
    held_out = HeldOut(
        images=np.load(snakemake.input.images, mmap_mode="r"),
        labels=np.load(snakemake.input.labels, mmap_mode="r"),
        per_slice=pd.read_csv(snakemake.input.per_slice, sep="\t"),
        prediction_dirs=by_fold(snakemake.input, "predictions"),
        cell_dirs=held_out_cells(snakemake.input.cells, list(by_fold(snakemake.input, "predictions"))),
    )
    sets = run_sets(held_out, snakemake.params.threshold, test)
    Path(snakemake.output[0]).write_text(json.dumps(sets))
