"""Rule segment_stack: probability, fold disagreement, instance labels and a summary of
one new stack, from an experiment's trained fold models."""

import json
from pathlib import Path

import numpy as np

from cellseg.logs import logged_step
from cellseg.runtime import set_threads
from cellseg.segment import segment_stack

with logged_step(snakemake.log[0]):
    set_threads(snakemake.threads)
    record = json.loads(Path(snakemake.input.record).read_text())
    segment_stack(
        stack=np.load(snakemake.input.stack, mmap_mode="r"),  # read slab by slab
        name=record["source"],
        voxel_size=record["voxel_size"],
        model_paths=list(snakemake.input.models),
        predict_config=snakemake.params.predict,
        segment_config=snakemake.params.segment,
        outputs=dict(snakemake.output.items()),
    )
