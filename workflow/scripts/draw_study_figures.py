"""Rule draw_study_figures: the forest plot of the differences and quality against cost."""

import pandas as pd

from cellseg.figures import forest_plot, quality_against_cost, save
from cellseg.logs import logged_step

with logged_step(snakemake.log[0]):
    save(forest_plot(pd.read_csv(snakemake.input.comparisons, sep="\t")), snakemake.output.forest)
    save(quality_against_cost(pd.read_csv(snakemake.input.experiments, sep="\t")), snakemake.output.cost)
