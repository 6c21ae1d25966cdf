"""Rule segment_tiff: the slabs of a segmented stack as calibrated TIFF stacks."""

import json
from pathlib import Path

from cellseg.logs import logged_step
from cellseg.segment import write_tiff

with logged_step(snakemake.log[0]):
    write_tiff(
        plan=json.loads(Path(snakemake.input.plan).read_text()),
        slabs={key: list(snakemake.input[key]) for key in ("probability", "uncertainty", "labels")},
        outputs=dict(snakemake.output.items()),
    )
