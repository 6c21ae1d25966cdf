"""Rule segment_zarr: the slabs of a segmented stack as one OME-Zarr image with its labels."""

import json
from pathlib import Path

from cellseg.logs import logged_step
from cellseg.segment import write_ome_zarr

with logged_step(snakemake.log[0]):
    write_ome_zarr(
        plan=json.loads(Path(snakemake.input.plan).read_text()),
        slabs={key: list(snakemake.input[key]) for key in ("probability", "uncertainty", "labels")},
        output=snakemake.output[0],
    )
