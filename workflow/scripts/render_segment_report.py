"""Rule segment_report: the self-contained report of one segmented stack."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cellseg.logs import logged_step
from cellseg.report import render_segment_report
from cellseg.segment import read_outputs

with logged_step(snakemake.log[0]):
    render_segment_report(
        snakemake.input.template,
        snakemake.output[0],
        experiment=snakemake.wildcards.experiment,
        name=snakemake.wildcards.name,
        stack=np.load(snakemake.input.stack, mmap_mode="r"),
        stack_record=json.loads(Path(snakemake.input.record).read_text()),
        plan=json.loads(Path(snakemake.input.plan).read_text()),
        segmentation=read_outputs(dict(snakemake.input.items())),
        summary=pd.read_csv(snakemake.input.summary, sep="\t"),
        scores=pd.read_csv(snakemake.input.scores, sep="\t"),
        segment_config=snakemake.params.segment,
        # The template lives at <checkout>/workflow/templates/: git state of that checkout.
        workflow_dir=Path(snakemake.input.template).resolve().parents[2],
    )
