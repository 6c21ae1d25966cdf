"""Rule segment_tiff: the slabs of a segmented stack as calibrated TIFF stacks."""

from cellseg.logs import logged_step
from cellseg.records import SegmentationPlan
from cellseg.stackio import SEGMENTATION_LAYERS, write_tiff_stacks

with logged_step(snakemake.log[0]):
    write_tiff_stacks(
        plan=SegmentationPlan.load(snakemake.input.plan),
        slabs={key: list(snakemake.input[key]) for key in SEGMENTATION_LAYERS},
        outputs=dict(snakemake.output.items()),
    )
