"""Rule train_unet: train the UNet of one fold and write its model and training curve."""

import json
from pathlib import Path

import numpy as np

from cellseg.folds import read_folds, training_slices
from cellseg.logs import logged_step
from cellseg.records import TrainingInput
from cellseg.runtime import set_threads
from cellseg.study import run_config
from cellseg.train import TrainingData, train_fold

SCHEMA = Path(snakemake.scriptdir).parent / "schemas" / "config.schema.yaml"

with logged_step(snakemake.log[0]):
    # params.recipe holds only what decides the weights (Snakemake retrains when it
    # changes); the run's whole config, its resources section included, is built from the
    # command-line config as the Snakefile builds it.
    config = run_config(snakemake.config, SCHEMA, snakemake.wildcards.experiment)
    # The job's threads count the data workers too; torch gets the rest.
    set_threads(max(1, snakemake.threads - config["resources"]["data_workers"]))
    fold = int(snakemake.wildcards.fold)
    data = TrainingData(
        images=np.load(snakemake.input.images, mmap_mode="r"),
        labels=np.load(snakemake.input.labels, mmap_mode="r"),
        input=TrainingInput.from_json(json.loads(Path(snakemake.input.record).read_text())),
    )
    train_fold(
        data,
        train_slices=training_slices(read_folds(snakemake.input.folds), fold),
        config=config,
        fold=fold,
        paths={
            "model": snakemake.output.model,
            "curve": snakemake.output.curve,
            "checkpoint": snakemake.params.checkpoint,
        },
    )
