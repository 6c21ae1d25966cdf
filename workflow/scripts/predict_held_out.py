"""Rule predict_held_out: probability maps of the slices a fold held out, one TIFF each."""

import json
from pathlib import Path

import numpy as np

from cellseg.folds import held_out_slices, read_folds
from cellseg.logs import logged_step
from cellseg.predict import predict_held_out
from cellseg.records import InferenceSettings, VoxelSize
from cellseg.runtime import set_threads

with logged_step(snakemake.log[0]):
    set_threads(snakemake.threads)
    predict_held_out(
        model_path=snakemake.input.model,
        images=np.load(snakemake.input.images, mmap_mode="r"),
        slices=held_out_slices(read_folds(snakemake.input.folds), int(snakemake.wildcards.fold)),
        output_dir=snakemake.output[0],
        settings=InferenceSettings.from_config(snakemake.params.predict),
        voxel_size=VoxelSize.from_json(json.loads(Path(snakemake.input.record).read_text())["voxel_size"]),
    )
