"""Rule train_unet: train the UNet of one fold and write its model and training curve."""

import numpy as np

from cellseg.folds import read_folds, training_slices
from cellseg.logs import logged_step
from cellseg.runtime import set_threads
from cellseg.train import train_fold

with logged_step(snakemake.log[0]):
    recipe = snakemake.params.recipe
    # The job's threads count the data workers too; torch gets the rest.
    set_threads(max(1, snakemake.threads - recipe["train"]["data_workers"]))
    fold = int(snakemake.wildcards.fold)
    train_fold(
        images=np.load(snakemake.input.images, mmap_mode="r"),
        labels=np.load(snakemake.input.labels, mmap_mode="r"),
        train_slices=training_slices(read_folds(snakemake.input.folds), fold),
        config=recipe,
        fold=fold,
        model_path=snakemake.output.model,
        curve_path=snakemake.output.curve,
        checkpoint_path=snakemake.params.checkpoint,
    )
