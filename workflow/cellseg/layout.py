"""The results layout: every path that a rule and a module both spell, named once.

Rules format the patterns with Snakemake's wildcards (``{experiment}``, ``{fold}``);
modules that find files by themselves (a run's models, a fold's slice maps) use the
functions. Paths that only one rule writes and the next reads as a declared input stay in
the rules.
"""

from __future__ import annotations

from pathlib import Path

RUN = "results/{experiment}"
# A fold's weights with their record, the record alone as JSON, and its training curve.
MODEL_NAME = "models/fold{fold}.pt"
MODEL = f"{RUN}/{MODEL_NAME}"
MODEL_RECORD = f"{RUN}/models/fold{{fold}}.json"
CURVE = f"{RUN}/models/fold{{fold}}_curve.tsv"
# A fold's held-out probability maps, one ``slice_file`` each, with the affinities of a
# network that predicts them beside each (``slice_file(index, AFFINITIES_SUFFIX)``).
HELD_OUT = f"{RUN}/predictions/held_out/fold{{fold}}"
AFFINITIES_SUFFIX = "affinities.tif"
# The instance labels of the held-out slices, one ``slice_file`` each in a folder per
# fold (``fold<k>``, ``held_out_cells``).
HELD_OUT_CELLS = f"{RUN}/predictions/held_out_cells"
# How each fold's merge threshold was chosen (``selection.segment_held_out``).
CELL_THRESHOLDS = f"{RUN}/metrics/cell_thresholds.tsv"
TEST_VOLUME = f"{RUN}/predictions/test_volume.tif"
TEST_UNCERTAINTY = f"{RUN}/predictions/test_volume_uncertainty.tif"
TEST_CELLS = f"{RUN}/predictions/test_volume_cells.tif"
# A fetched stack (.npy) and its record (.json), named by ``datasets.stack_id``.
FETCHED = "resources/stacks/{stack_id}.{suffix}"


def slice_file(index: int, suffix: str = "tif") -> str:
    """The file name of held-out slice ``index``: ``slice_007.tif`` (its map), ``.jpg`` (its figure)."""
    return f"slice_{index:03d}.{suffix}"


def held_out_cells(root: str | Path, folds: list[int]) -> dict[int, Path]:
    """Each fold's folder of held-out cells under ``HELD_OUT_CELLS`` (formatted)."""
    return {fold: Path(root) / f"fold{fold}" for fold in folds}


def model_files(run_dir: str | Path) -> list[Path]:
    """The fold models of a run directory (``results/<experiment>``), in fold order."""
    found = Path(run_dir).glob(MODEL_NAME.format(fold="*"))
    return sorted(found, key=lambda p: int(p.stem.removeprefix("fold")))
