"""Rule segment_plan: the slabs of a stack to segment and the normalisation they share."""

import json
from pathlib import Path

import numpy as np

from cellseg.logs import logged_step
from cellseg.records import VoxelSize
from cellseg.segment import plan_segmentation

with logged_step(snakemake.log[0]):
    record = json.loads(Path(snakemake.input.record).read_text())
    plan = plan_segmentation(
        stack=np.load(snakemake.input.stack, mmap_mode="r"),  # statistics from a sample
        name=record["source"],
        voxel_size=VoxelSize.from_json(record["voxel_size"]),
        model_paths=list(snakemake.input.models),
        slab_slices=snakemake.params.slab_slices,
        settings=snakemake.params.predict,
    )
    plan.save(snakemake.output[0])
