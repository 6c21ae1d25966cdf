"""Rule predict_test_volume: the fold ensemble's probabilities and cells of the unlabelled stack."""

import json
from pathlib import Path

import numpy as np

from cellseg.cells import CellRecipe
from cellseg.logs import logged_step
from cellseg.predict import predict_volume
from cellseg.records import InferenceSettings
from cellseg.runtime import set_threads
from cellseg.selection import stack_threshold

with logged_step(snakemake.log[0]):
    set_threads(snakemake.threads)
    predict_volume(
        model_paths=list(snakemake.input.models),
        images=np.load(snakemake.input.images, mmap_mode="r"),
        outputs=dict(snakemake.output.items()),
        settings=InferenceSettings.from_config(snakemake.params.predict),
        input_record=json.loads(Path(snakemake.input.record).read_text()),
        recipe=CellRecipe(
            snakemake.params.segment["settings"],
            snakemake.params.segment["offsets"],
            stack_threshold(snakemake.input.thresholds),
        ),
    )
