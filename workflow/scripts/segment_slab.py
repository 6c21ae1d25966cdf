"""Rule segment_slab: probability, fold disagreement, instance labels and summary of
one slab of a stack to segment."""

import numpy as np

from cellseg.cells import CellRecipe
from cellseg.logs import logged_step
from cellseg.records import InferenceSettings, SegmentationPlan
from cellseg.runtime import set_threads
from cellseg.segment import segment_slab
from cellseg.selection import stack_threshold

with logged_step(snakemake.log[0]):
    set_threads(snakemake.threads)
    segment_slab(
        stack=np.load(snakemake.input.stack, mmap_mode="r"),  # only this slab is read
        plan=SegmentationPlan.load(snakemake.input.plan),
        slab=int(snakemake.wildcards.slab),
        settings=InferenceSettings.from_config(snakemake.params.predict),
        recipe=CellRecipe(
            snakemake.params.segment["settings"],
            snakemake.params.segment["offsets"],
            stack_threshold(snakemake.input.thresholds),
        ),
        outputs=dict(snakemake.output.items()),
    )
