"""Rule segment_zarr: the slabs of a segmented stack as one OME-Zarr image with its labels."""

from cellseg.logs import logged_step
from cellseg.records import SegmentationPlan
from cellseg.stackio import SEGMENTATION_LAYERS, write_ome_zarr

with logged_step(snakemake.log[0]):
    write_ome_zarr(
        plan=SegmentationPlan.load(snakemake.input.plan),
        slabs={key: list(snakemake.input[key]) for key in SEGMENTATION_LAYERS},
        output=snakemake.output[0],
    )
