"""Rules unpack_training_stack and unpack_test_stack: fetched stacks into normalised
slice arrays, a manifest and a record."""

from cellseg.logs import logged_step
from cellseg.stacks import unpack

with logged_step(snakemake.log[0]):
    unpack(
        images_path=snakemake.input.images,
        labels_path=snakemake.input.get("labels"),
        images_out=snakemake.output.images,
        labels_out=snakemake.output.get("labels"),
        manifest_out=snakemake.output.manifest,
        record_out=snakemake.output.record,
        options=snakemake.params.options,
        images_record=snakemake.input.images_record,
        labels_record=snakemake.input.get("labels_record"),
    )
