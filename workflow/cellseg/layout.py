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
# A fold's held-out probability maps, one ``slice_file`` each.
HELD_OUT = f"{RUN}/predictions/held_out/fold{{fold}}"
TEST_VOLUME = f"{RUN}/predictions/test_volume.tif"
TEST_UNCERTAINTY = f"{RUN}/predictions/test_volume_uncertainty.tif"
# A fetched stack (.npy) and its record (.json), named by ``datasets.stack_id``.
FETCHED = "resources/stacks/{stack_id}.{suffix}"


def slice_file(index: int, suffix: str = "tif") -> str:
    """The file name of held-out slice ``index``: ``slice_007.tif`` (its map), ``.jpg`` (its figure)."""
    return f"slice_{index:03d}.{suffix}"


def model_files(run_dir: str | Path) -> list[Path]:
    """The fold models of a run directory (``results/<experiment>``), in fold order."""
    found = Path(run_dir).glob(MODEL_NAME.format(fold="*"))
    return sorted(found, key=lambda p: int(p.stem.removeprefix("fold")))
