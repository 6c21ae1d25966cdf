"""Rules unpack_training_stack and unpack_test_stack: fetched stacks into normalised
slice arrays, a manifest and a record."""

from cellseg.logs import logged_step
from cellseg.stacks import unpack

with logged_step(snakemake.log[0]):
    unpack(dict(snakemake.input.items()), dict(snakemake.output.items()), snakemake.params.options)
