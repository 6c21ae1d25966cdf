"""Cross-validation folds: which labelled slice each fold holds out.

``folds.tsv`` has one row per labelled slice with the columns ``slice`` (index in the
labelled stack) and ``fold`` (the fold that holds it out). It depends on the labelled
slices only: the unlabelled stack, predicted by the ensemble of all folds, has no folds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

log = logging.getLogger(__name__)


def named_group(named: Mapping, name: str) -> dict[str, str]:
    """The entries ``<name>/<key>`` of a rule's named inputs (``snakemake.input``, filled by
    common.smk's ``fold_inputs`` or ``study_inputs``) as {key: path}."""
    prefix = f"{name}/"
    return {key[len(prefix) :]: path for key, path in named.items() if key.startswith(prefix)}


def by_fold(named: Mapping, name: str) -> dict[int, str]:
    """The entries ``<name>/fold<k>`` of a rule's named inputs as {k: path}, in fold order:
    each file is paired with its fold by its name, never by its place in a list."""
    group = named_group(named, name)
    return {
        int(key.removeprefix("fold")): group[key] for key in sorted(group, key=lambda k: int(k.removeprefix("fold")))
    }


def assign_folds(count: int, folds: int, scheme: str, seed: int) -> np.ndarray:
    """The fold that holds out each of ``count`` slices, as an int array of length count.

    ``blocks`` makes contiguous runs (neighbouring sections look alike, so shuffled folds
    leak); ``random`` shuffles with ``seed``. Fold sizes differ by at most one slice.
    """
    if scheme == "blocks":
        order = np.arange(count)
    elif scheme == "random":
        order = np.random.default_rng(seed).permutation(count)
    else:
        raise InputError(f"cv.scheme is '{scheme}'; it must be 'blocks' or 'random'.")
    fold_of = np.empty(count, dtype=np.int64)
    for fold, members in enumerate(np.array_split(order, folds)):
        fold_of[members] = fold
    return fold_of


def fold_table(
    labelled_count: int, folds: int, scheme: str, seed: int, source: str = "the labelled stack"
) -> pd.DataFrame:
    """The folds.tsv table of ``labelled_count`` labelled slices."""
    if labelled_count < folds:
        raise InputError(
            f"{source} has {labelled_count} labelled slices, fewer than cv.folds = {folds}; "
            "every fold must hold out at least one slice. Lower cv.folds or add slices."
        )
    return pd.DataFrame({"slice": np.arange(labelled_count), "fold": assign_folds(labelled_count, folds, scheme, seed)})


def split_folds(labelled_manifest: str | Path, folds: int, scheme: str, seed: int, output: str | Path) -> pd.DataFrame:
    """Write folds.tsv for the slices listed in the unpacked labelled stack's manifest."""
    labelled_count = len(pd.read_csv(labelled_manifest, sep="\t"))
    table = fold_table(labelled_count, folds, scheme, seed, source=str(labelled_manifest))
    table.to_csv(output, sep="\t", index=False)
    sizes = table.groupby("fold").size()
    log.info("%d labelled slices in %d %s folds of %s slices", labelled_count, folds, scheme, "/".join(map(str, sizes)))
    return table


def read_folds(path: str | Path) -> pd.DataFrame:
    """Read a folds.tsv written by ``fold_table(...).to_csv(sep='\\t')``."""
    return pd.read_csv(path, sep="\t", dtype={"slice": "int64", "fold": "int64"})


def held_out_slices(table: pd.DataFrame, fold: int) -> list[int]:
    """Labelled slices that ``fold`` holds out (its validation set)."""
    return table.loc[table.fold == fold, "slice"].tolist()


def training_slices(table: pd.DataFrame, fold: int) -> list[int]:
    """Labelled slices that ``fold`` trains on: every labelled slice it does not hold out."""
    return table.loc[table.fold != fold, "slice"].tolist()
