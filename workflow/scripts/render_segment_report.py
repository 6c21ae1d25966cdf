"""Rule segment_report: the self-contained report of one segmented stack."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cellseg.logs import logged_step
from cellseg.records import SegmentationPlan
from cellseg.report import SegmentedStack, render_segment_report
from cellseg.selection import stack_threshold
from cellseg.stackio import read_segmentation

with logged_step(snakemake.log[0]):
    segmented = SegmentedStack(
        name=snakemake.wildcards.name,
        stack=np.load(snakemake.input.stack, mmap_mode="r"),
        record=json.loads(Path(snakemake.input.record).read_text()),
        plan=SegmentationPlan.load(snakemake.input.plan),
        segmentation=read_segmentation(dict(snakemake.input.items())),
        summary=pd.read_csv(snakemake.input.summary, sep="\t"),
    )
    render_segment_report(
        snakemake.input.template,
        snakemake.output[0],
        segmented,
        experiment=snakemake.wildcards.experiment,
        scores=pd.read_csv(snakemake.input.scores, sep="\t"),
        segment_config=snakemake.params.segment | {"merge_threshold": stack_threshold(snakemake.input.thresholds)},
    )
