"""Rule split_folds: assign each labelled slice the fold that holds it out."""

from cellseg.folds import split_folds
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    split_folds(
        labelled_manifest=snakemake.input.labelled,
        folds=snakemake.params.folds,
        scheme=snakemake.params.scheme,
        seed=snakemake.params.seed,
        output=snakemake.output[0],
    )
