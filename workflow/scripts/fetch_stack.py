"""Rule fetch_stack: read one stack from its sources into resources/stacks/, verified."""

from cellseg.fetch import fetch_stack
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    fetch_stack(
        snakemake.params.spec,
        snakemake.output.stack,
        snakemake.output.record,
        timeout=snakemake.params.timeout,
        retries=snakemake.params.retries,
    )
