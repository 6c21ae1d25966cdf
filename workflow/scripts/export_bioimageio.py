"""Rule export_bioimageio: an experiment's fold models as a validated bioimage.io package."""

from pathlib import Path

import numpy as np

from cellseg.logs import logged_step
from cellseg.modelzoo import export_package
from cellseg.runtime import set_threads

with logged_step(snakemake.log[0]):
    set_threads(snakemake.threads)
    written = export_package(
        model_paths=list(snakemake.input.models),
        stack=np.load(snakemake.input.stack, mmap_mode="r"),
        run_files={key: snakemake.input[key] for key in ("folds", "summary", "thresholds", "architecture")},
        config=snakemake.params.config,
        output=snakemake.output.package,
    )
    Path(snakemake.output.validation).write_text(written["validation"])
