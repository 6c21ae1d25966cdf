"""Rule draw_figures: per-slice panels, training curves, metric distributions, test volume."""

import numpy as np
import pandas as pd
import tifffile

from cellseg.figures import draw_run_figures
from cellseg.folds import by_fold
from cellseg.logs import logged_step
from cellseg.records import HeldOut, Volume

with logged_step(snakemake.log[0]):
    test = None
    if snakemake.input.test_images:
        images = np.load(snakemake.input.test_images, mmap_mode="r")
        # A one-section stack reads back from its ImageJ file as (H, W).
        test = Volume(images, tifffile.imread(snakemake.input.test_volume).reshape(images.shape))
    held_out = HeldOut(
        images=np.load(snakemake.input.images, mmap_mode="r"),
        labels=np.load(snakemake.input.labels, mmap_mode="r"),
        per_slice=pd.read_csv(snakemake.input.per_slice, sep="\t"),
        prediction_dirs=by_fold(snakemake.input, "predictions"),
    )
    draw_run_figures(
        snakemake.output[0], held_out, by_fold(snakemake.input, "curves"), snakemake.params.threshold, test
    )
