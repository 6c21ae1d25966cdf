"""Rule segment_summary: the slabs' per-section summaries as one table."""

from cellseg.logs import logged_step
from cellseg.segment import gather_summary

with logged_step(snakemake.log[0]):
    gather_summary(list(snakemake.input), snakemake.output[0])
