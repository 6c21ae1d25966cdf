"""Rule segment_report: the self-contained report of one segmented stack."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from cellseg.logs import logged_step
from cellseg.report import render_segment_report

with logged_step(snakemake.log[0]):
    stack = np.load(snakemake.input.stack, mmap_mode="r")

    def read(path):  # a one-section stack reads back from its file as (H, W)
        return tifffile.imread(path).reshape(stack.shape)

    render_segment_report(
        snakemake.input.template,
        snakemake.output[0],
        experiment=snakemake.wildcards.experiment,
        name=snakemake.wildcards.name,
        stack=stack,
        stack_record=json.loads(Path(snakemake.input.record).read_text()),
        probability=read(snakemake.input.probability),
        labels=read(snakemake.input.labels),
        uncertainty=read(snakemake.input.uncertainty),
        summary=pd.read_csv(snakemake.input.summary, sep="\t"),
        scores=pd.read_csv(snakemake.input.scores, sep="\t"),
        model_paths=list(snakemake.input.models),
        segment_config=snakemake.params.segment,
        # The template lives at <checkout>/workflow/templates/: git state of that checkout.
        workflow_dir=Path(snakemake.input.template).resolve().parents[2],
    )
