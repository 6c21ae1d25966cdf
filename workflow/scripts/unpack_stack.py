"""Rules unpack_training_stack and unpack_test_stack: a TIFF stack into slice arrays."""

from cellseg.fetch import fetched_source
from cellseg.logs import logged_step
from cellseg.stacks import unpack

with logged_step(snakemake.log[0]):
    labels_record = snakemake.input.get("labels_record")
    unpack(
        images_path=snakemake.input.images,
        labels_path=snakemake.input.get("labels"),
        images_out=snakemake.output.images,
        labels_out=snakemake.output.get("labels"),
        manifest_out=snakemake.output.manifest,
        images_name=fetched_source(snakemake.input.images_record),
        labels_name=fetched_source(labels_record) if labels_record else None,
    )
