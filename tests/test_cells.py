"""Cells from network outputs (watershed, waterz's agglomeration, the mutex watershed),
scored as a segmentation, each fold's merge threshold chosen without its own slices."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellseg.cells import cells, nearest_affinities
from cellseg.config import defaults, output_problems
from cellseg.errors import InputError
from cellseg.evaluate import cell_scores, evaluate_held_out, segment_interiors, split_merge_masks
from cellseg.selection import choose, segment_held_out

OFFSETS = [[-1, 0], [0, -1], [-3, 0], [0, -3], [-9, 0], [0, -9]]


def tiles(side: int = 60, cell: int = 15) -> np.ndarray:
    """Square cells of ``cell`` px a side in a grid, numbered 1.., no membrane."""
    rows, cols = np.indices((side, side)) // cell
    return (rows * (side // cell) + cols + 1).astype(np.uint32)


def with_membrane(segments: np.ndarray) -> np.ndarray:
    """Labels (1 = cell, 0 = membrane) of segments whose borders are membrane."""
    return segment_interiors(segments).astype(np.uint8)


def exact_affinities(segments: np.ndarray, offsets) -> np.ndarray:
    """1 where a pixel and the one at each offset lie in one segment (0 = no segment)."""
    height, width = segments.shape
    out = np.zeros((len(offsets), height, width), np.float32)
    for channel, (dy, dx) in enumerate(offsets):
        for y in range(height):
            for x in range(width):
                other_y, other_x = y + dy, x + dx
                if 0 <= other_y < height and 0 <= other_x < width:
                    same = segments[y, x] == segments[other_y, other_x] and segments[y, x] > 0
                    out[channel, y, x] = float(same)
    return out


def test_segment_interiors_mark_borders_between_touching_segments():
    segments = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 3, 3, 3]], np.uint32)
    assert segment_interiors(segments).astype(int).tolist() == [[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_perfect_merged_and_split_cells_score_as_they_should():
    truth = tiles()
    labels = with_membrane(truth)
    proposal = np.where(labels == 1, truth, 0)
    perfect = cell_scores(proposal, labels)
    assert perfect["cells_v_rand"] == pytest.approx(1.0) and perfect["cells_v_info"] == pytest.approx(1.0)
    assert perfect["cells_vi_split"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["cells_adapted_rand_error"] == pytest.approx(0.0, abs=1e-9)
    # Cells 1 and 2 joined across their membrane: a merge.
    merged = truth.copy()
    merged[merged == 2] = 1
    scores = cell_scores(merged, labels)
    assert scores["cells_v_rand"] < 0.99 and scores["cells_vi_merge"] > 0.05
    assert scores["cells_vi_split"] == pytest.approx(0.0, abs=1e-9)
    # Cell 1 cut in two along a boundary: a split.
    split = proposal.copy()
    split[:7, :15] = np.where(split[:7, :15] > 0, 99, 0)
    split[7, :15] = 0
    scores = cell_scores(split, labels)
    assert scores["cells_v_rand"] < 0.99 and scores["cells_vi_split"] > 0.05
    # Truth of one cell has nothing to split or merge: undefined.
    assert np.isnan(cell_scores(proposal, np.ones_like(labels))["cells_v_rand"])


def test_agglomeration_of_a_boundary_map_finds_the_cells_and_prints_nothing(capfd):
    truth = tiles()
    labels = with_membrane(truth)
    probability = np.where(labels == 1, 0.95, 0.05).astype(np.float32)
    # A gap in one membrane: mean affinity along it stays low, so the cells stay apart.
    probability[14:16, 5] = 0.9
    found = cells(probability, None, [], {"method": "agglomerate", "min_size_px": 5}, 0.5)
    assert found.dtype == np.uint32 and found.max() == truth.max()
    assert cell_scores(found, labels)["cells_v_rand"] == pytest.approx(1.0)
    assert capfd.readouterr().out == ""
    # At a threshold past every boundary's score, everything merges.
    assert cells(probability, None, [], {"method": "agglomerate"}, 1.0).max() == 1


def test_the_mutex_watershed_of_exact_affinities_finds_the_cells():
    truth = tiles()
    labels = with_membrane(truth)
    inside = np.where(labels == 1, truth, 0)
    affinities = exact_affinities(inside, OFFSETS)
    probability = labels.astype(np.float32)
    found = cells(probability, affinities, OFFSETS, {"method": "mutex", "min_size_px": 5}, 0.5)
    assert found.max() == truth.max()
    assert cell_scores(found, labels)["cells_v_rand"] == pytest.approx(1.0)
    # waterz takes the network's nearest-neighbour channels, when it has them.
    agglomerated = cells(probability, affinities, OFFSETS, {"method": "agglomerate", "min_size_px": 5}, 0.5)
    assert cell_scores(agglomerated, labels)["cells_v_rand"] == pytest.approx(1.0)


def test_methods_refuse_what_they_cannot_use(monkeypatch):
    probability = np.full((8, 8), 0.9, np.float32)
    with pytest.raises(InputError, match="needs a network that predicts affinities"):
        cells(probability, None, [], {"method": "mutex"}, 0.5)
    with pytest.raises(InputError, match=r"lack the nearest neighbours \[\[0, -1\]\]"):
        cells(probability, np.ones((1, 8, 8), np.float32), [[-1, 0]], {"method": "agglomerate"}, 0.5)
    with pytest.raises(InputError, match=r"segment\.method"):
        cells(probability, None, [], {"method": "multicut"}, 0.5)
    with pytest.raises(InputError, match="NaN"):
        cells(np.full((4, 4), np.nan, np.float32), None, [], {}, 0.5)
    # Without the package: its name and the extra that installs it.
    monkeypatch.setitem(sys.modules, "waterz", None)
    with pytest.raises(InputError, match=r"package waterz, which is not installed: pip install -e '\.\[cells\]'"):
        cells(probability, None, [], {"method": "agglomerate"}, 0.5)


def test_nearest_affinities_of_a_boundary_map():
    probability = np.array([[0.9, 0.2], [0.8, 0.7]], np.float32)
    affinities = nearest_affinities(probability)
    # To the pixel above (none in row 0), to the pixel on the left (none in column 0).
    np.testing.assert_allclose(affinities[0], [[0, 0], [0.8, 0.2]])
    np.testing.assert_allclose(affinities[1], [[0, 0.2], [0, 0.7]])


def config_with(**sections) -> dict:
    config = {name: defaults(name) for name in ("model", "segment", "train", "predict")}
    for name, values in sections.items():
        config[name] |= values
    return config


def test_the_config_check_refuses_outputs_that_cannot_work():
    assert output_problems(config_with()) == []
    assert "needs model.output: affinities" in output_problems(config_with(segment={"method": "mutex"}))[0]
    affinities = {"output": "affinities"}
    assert output_problems(config_with(model=affinities, segment={"method": "mutex"})) == []
    far = output_problems(config_with(model=affinities, train={"crop_size": 24}))
    assert far == ["config key 'model.offsets' reaches 27 px, as far as or farther than train.crop_size (24)"]
    lopsided = {**affinities, "offsets": [[-1, 0], [0, -1], [-5, 0]]}
    assert "transposes are not offsets" in output_problems(config_with(model=lopsided))[0]
    assert output_problems(config_with(model=lopsided, predict={"tta": 1})) == []
    assert "(-1, 0) and (0, -1)" in output_problems(config_with(model={**affinities, "offsets": [[1, 0], [0, 1]]}))[0]


def test_each_folds_threshold_is_chosen_on_the_other_folds(tmp_path):
    truth = tiles()
    labels = np.stack([with_membrane(truth)] * 4)
    pd.DataFrame({"slice": range(4), "fold": [0, 0, 1, 1]}).to_csv(tmp_path / "folds.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    for fold, slices in ((0, (0, 1)), (1, (2, 3))):
        (tmp_path / f"fold{fold}").mkdir()
        for index in slices:
            noisy = np.clip(labels[index] * 0.9 + rng.normal(0.05, 0.15, truth.shape), 0, 1).astype(np.float32)
            tifffile.imwrite(tmp_path / f"fold{fold}/slice_{index:03d}.tif", noisy)
    predictions = {0: tmp_path / "fold0", 1: tmp_path / "fold1"}
    outputs = {0: tmp_path / "cells/fold0", 1: tmp_path / "cells/fold1"}
    settings = {"method": "agglomerate", "merge_candidates": [0.2, 0.5, 0.8], "min_size_px": 5}
    thresholds, sweep = segment_held_out(tmp_path / "folds.tsv", predictions, labels, settings, [], outputs)
    assert thresholds.fold.tolist() == [0, 1, "all"] and set(thresholds.method) == {"agglomerate"}
    assert len(sweep) == 4 * 3
    for fold, other in ((0, 1), (1, 0)):
        means = sweep[sweep.fold == other].groupby("merge_threshold").cells_v_rand.mean()
        assert thresholds.merge_threshold[fold] == means.idxmax()
        assert thresholds.selection_v_rand[fold] == pytest.approx(means.max())
    assert thresholds.merge_threshold[2] == sweep.groupby("merge_threshold").cells_v_rand.mean().idxmax()
    assert "other folds" in thresholds.chosen_by[0] and thresholds.selection_slices[0] == 2

    per_slice, _ = evaluate_held_out(tmp_path / "folds.tsv", predictions, labels, 0.5, outputs)
    written = tifffile.imread(outputs[1] / "slice_003.tif")
    assert written.dtype == np.uint32
    assert per_slice.cells_v_rand[3] == pytest.approx(cell_scores(written, labels[3])["cells_v_rand"])
    assert per_slice.cells_v_rand.notna().all()


def test_a_fixed_or_absent_threshold_is_said_so():
    sweep = pd.DataFrame(
        {"slice": [0, 0, 1, 1], "fold": [0, 0, 0, 0], "merge_threshold": [0.4, 0.6] * 2, "cells_v_rand": [0.9, 0.8] * 2}
    )
    alone = choose(sweep, [0])
    assert alone.merge_threshold.tolist() == [0.4, 0.4] and "one fold: it flatters" in alone.chosen_by[0]


def test_split_and_merge_masks_mark_the_pixels_of_the_wrong_segment():
    truth = tiles(side=30, cell=15)
    labels = with_membrane(truth)
    inside = np.where(labels == 1, truth, 0)
    assert not any(mask.any() for mask in split_merge_masks(inside, labels))
    # Cells 1 and 2 as one segment: the smaller share (here cell 2's, equal: the later) merged.
    joined = np.where(inside == 2, 1, inside)
    split, merged = split_merge_masks(joined, labels)
    assert not split.any() and merged.any() and set(np.unique(truth[merged])) == {2}
    # Cell 4 cut in two, its smaller part in segment 9: split there.
    cut = inside.copy()
    cut[(truth == 4) & (np.indices(truth.shape)[0] > 25)] = 9
    split, merged = split_merge_masks(cut, labels)
    assert split.any() and set(np.unique(cut[split])) == {9} and not merged.any()


def test_a_runs_recipe_makes_the_cells_its_pipeline_made(isbi_run):
    from cellseg.inference import FoldEnsemble
    from cellseg.selection import run_recipe

    work, _ = isbi_run
    run = work / "results/smoke"
    thresholds = pd.read_csv(run / "metrics/cell_thresholds.tsv", sep="\t")
    assert thresholds.fold.tolist() == ["0", "1", "all"] and set(thresholds.method) == {"agglomerate"}
    per_slice = pd.read_csv(run / "metrics/per_slice.tsv", sep="\t")
    assert per_slice.cells_v_rand.notna().all() and per_slice.cells_v_info.between(0, 1).all()
    # The test volume's cells are the run's recipe applied to its mean probability.
    probability = tifffile.imread(run / "predictions/test_volume.tif")
    cells_file = tifffile.TiffFile(run / "predictions/test_volume_cells.tif")
    assert cells_file.series[0].dtype == np.uint32 and cells_file.series[0].shape == probability.shape
    recipe = run_recipe(run)
    assert recipe.settings["method"] == "agglomerate" and recipe.offsets == []
    assert np.array_equal(cells_file.asarray(), recipe.of(probability))
    # An override of some keys: the rest stays the run's; the models have no affinities for mutex.
    fixed = run_recipe(run, {"merge_threshold": 0.6})
    assert fixed.merge_threshold == 0.6 and fixed.settings["method"] == "agglomerate"
    assert run_recipe(run, {"method": "watershed"}).settings["min_size_px"] == 20
    with pytest.raises(InputError, match="needs a network that predicts affinities"):
        run_recipe(run, {"method": "mutex"}).of(probability[:1])
    with pytest.raises(InputError, match="holds no trained models"):
        run_recipe(work / "results/none")
    assert FoldEnsemble.from_run(run).offsets == []
