"""Rule draw_figures: per-slice panels, training curves, metric distributions, test volume."""

import numpy as np
import pandas as pd
import tifffile

from cellseg.figures import draw_run_figures
from cellseg.folds import by_fold
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    test_images = np.load(snakemake.input.test_images, mmap_mode="r") if snakemake.input.test_images else None
    draw_run_figures(
        output_dir=snakemake.output[0],
        images=np.load(snakemake.input.images, mmap_mode="r"),
        labels=np.load(snakemake.input.labels, mmap_mode="r"),
        per_slice=pd.read_csv(snakemake.input.per_slice, sep="\t"),
        prediction_dirs=by_fold(snakemake.input, "predictions"),
        curve_paths=by_fold(snakemake.input, "curves"),
        threshold=snakemake.params.threshold,
        test_images=test_images,
        # A one-section stack reads back from its ImageJ file as (H, W).
        test_probabilities=(
            tifffile.imread(snakemake.input.test_volume).reshape(test_images.shape) if test_images is not None else None
        ),
    )
