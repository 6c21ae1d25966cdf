"""Rule fetch_stack: copy or download one stack into resources/ and verify its pixels."""

from cellseg.fetch import fetch_stack
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    fetch_stack(
        sources=snakemake.params.sources,
        destination=snakemake.output.stack,
        kind=snakemake.params.kind,
        expected_sha256=snakemake.params.sha256,
        timeout=snakemake.params.timeout,
        retries=snakemake.params.retries,
        record=snakemake.output.record,
    )
