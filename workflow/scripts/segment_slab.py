"""Rule segment_slab: probability, fold disagreement, instance labels and summary of
one slab of a stack to segment."""

import json
from pathlib import Path

import numpy as np

from cellseg.logs import logged_step
from cellseg.runtime import set_threads
from cellseg.segment import segment_slab

with logged_step(snakemake.log[0]):
    set_threads(snakemake.threads)
    segment_slab(
        stack=np.load(snakemake.input.stack, mmap_mode="r"),  # only this slab is read
        plan=json.loads(Path(snakemake.input.plan).read_text()),
        slab=int(snakemake.wildcards.slab),
        model_paths=list(snakemake.input.models),
        predict_config=snakemake.params.predict,
        segment_config=snakemake.params.segment,
        outputs=dict(snakemake.output.items()),
    )
