"""Rule fetch_stack: read one stack from its sources into resources/stacks/, verified."""

from cellseg.fetch import fetch_stack
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    spec = snakemake.params.spec
    fetch_stack(
        sources=spec["sources"],
        destination=snakemake.output.stack,
        kind=spec["kind"],
        expected_sha256=spec["sha256"],
        options=spec["options"],
        timeout=snakemake.params.timeout,
        retries=snakemake.params.retries,
        record=snakemake.output.record,
    )
