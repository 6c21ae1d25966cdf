"""The fold contract: every labelled slice held out once, balanced, contiguous blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellseg.errors import InputError
from cellseg.folds import (
    assign_folds,
    by_fold,
    fold_table,
    held_out_slices,
    named_group,
    read_folds,
    split_folds,
    training_slices,
)


@pytest.mark.parametrize("scheme", ["blocks", "random"])
@pytest.mark.parametrize("folds", [2, 3, 5, 7])
@pytest.mark.parametrize("count", [7, 11, 30, 31])
def test_each_slice_held_out_once_and_sizes_differ_by_at_most_one(count, folds, scheme):
    table = fold_table(count, folds, scheme, seed=3)
    held = [held_out_slices(table, fold) for fold in range(folds)]
    assert sorted(s for block in held for s in block) == list(range(count))
    sizes = [len(block) for block in held]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    for fold in range(folds):
        assert sorted(training_slices(table, fold) + held[fold]) == list(range(count))
        assert not set(training_slices(table, fold)) & set(held[fold])
    if scheme == "blocks":
        for block in held:
            assert block == list(range(block[0], block[-1] + 1))


def test_blocks_are_in_slice_order():
    assert assign_folds(7, 3, "blocks", seed=0).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_random_folds_depend_on_the_seed_only():
    first = assign_folds(30, 5, "random", seed=1)
    assert np.array_equal(first, assign_folds(30, 5, "random", seed=1))
    assert not np.array_equal(first, assign_folds(30, 5, "random", seed=2))
    assert not np.array_equal(first, assign_folds(30, 5, "blocks", seed=1))


def test_fewer_slices_than_folds_is_an_error():
    with pytest.raises(InputError, match=r"has 3 labelled slices, fewer than cv\.folds = 5"):
        fold_table(3, 5, "blocks", seed=0)


def test_split_folds_round_trips_through_tsv(tmp_path):
    pd.DataFrame({"slice": range(9)}).to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    written = split_folds(tmp_path / "train.tsv", 4, "random", 5, tmp_path / "folds.tsv")
    read = read_folds(tmp_path / "folds.tsv")
    assert read.columns.tolist() == ["slice", "fold"] and len(read) == 9
    pd.testing.assert_frame_equal(read, written)


def test_inputs_keyed_by_fold_are_paired_by_name_not_position():
    # As snakemake.input lists them: in any order, fold 10 after fold 1 as text sorts it.
    named = {"folds": "folds.tsv", "predictions/fold10": "p10", "predictions/fold2": "p2", "curves/fold2": "c2"}
    named |= {f"predictions/fold{k}": f"p{k}" for k in (1, 0)}
    assert by_fold(named, "predictions") == {0: "p0", 1: "p1", 2: "p2", 10: "p10"}
    assert list(by_fold(named, "predictions")) == [0, 1, 2, 10]
    assert by_fold(named, "curves") == {2: "c2"} and by_fold(named, "models") == {}
    study = {"per_slice/a-b_repeat1": "t", "models/a-b_repeat1/fold0": "m0", "models/a-b/fold0": "n0"}
    assert named_group(study, "per_slice") == {"a-b_repeat1": "t"}
    assert by_fold(study, "models/a-b") == {0: "n0"} and by_fold(study, "models/a-b_repeat1") == {0: "m0"}
