"""Sparse labels as ilastik exports them: 0 = unlabelled, brush strokes of two classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from scipy import ndimage
from skimage.draw import line
from skimage.morphology import disk, skeletonize

from cellseg.errors import InputError
from cellseg.metrics import UNLABELLED, pixel_scores
from cellseg.stacks import binary_labels
from conftest import copy_workflow, snakemake


def ilastik_strokes(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Brush strokes over part of each section, as a microscopist paints them in ilastik
    and exports them: 0 = unlabelled, 1 = membrane (strokes along the membranes of a few
    regions), 2 = cell interior (short broad strokes inside cells). ``truth`` (N, H, W)
    1 = cell, 0 = membrane."""
    rng = np.random.default_rng(seed)
    strokes = np.zeros(truth.shape, np.uint8)
    for index, section in enumerate(truth):
        membrane, height, width = section == 0, *section.shape
        along = np.zeros_like(membrane)
        for _ in range(4):  # membranes traced in four regions of 128 px
            top, left = rng.integers(0, height - 128), rng.integers(0, width - 128)
            along[top : top + 128, left : left + 128] = True
        strokes[index][ndimage.binary_dilation(skeletonize(membrane) & along, disk(1)) & membrane] = 1
        inside = ndimage.binary_erosion(section == 1, disk(4))
        painted = np.zeros_like(inside)
        for y, x in np.argwhere(inside)[rng.choice(int(inside.sum()), 30, replace=False)]:
            angle = rng.uniform(0, np.pi)
            end = (
                int(np.clip(y + 25 * np.sin(angle), 0, height - 1)),
                int(np.clip(x + 25 * np.cos(angle), 0, width - 1)),
            )
            painted[line(y, x, *end)] = True
        strokes[index][ndimage.binary_dilation(painted, disk(3)) & inside] = 2
    return strokes


def test_ilastik_labels_keep_their_unlabelled_pixels(tmp_path):
    stored = np.array([[0, 1, 2], [2, 2, 0]], np.uint8)[None]
    labels = binary_labels(stored, "strokes.tif", cell_value=2, unlabelled_value=0)
    assert labels.tolist() == [[[UNLABELLED, 0, 1], [1, 1, UNLABELLED]]]
    with pytest.raises(InputError, match=r"data\.unlabelled_value is 0, so data\.label_cell_value must say"):
        binary_labels(stored, "strokes.tif", unlabelled_value=0)
    with pytest.raises(InputError, match=r"holds label values \{0, 1, 2, 3\}; with data.unlabelled_value = 0"):
        binary_labels(np.array([[[0, 1, 2, 3]]], np.uint8), "strokes.tif", cell_value=2, unlabelled_value=0)
    # One class painted, or the cell value not among the strokes: nothing to learn the other from.
    with pytest.raises(InputError, match="no pixel is labelled membrane"):
        binary_labels(np.array([[[0, 255, 255]]], np.uint8), "dense.tif", cell_value=255, unlabelled_value=0)
    with pytest.raises(InputError, match="no pixel is labelled cell interior"):
        binary_labels(np.array([[[0, 1, 1, 1]]], np.uint8), "strokes.tif", cell_value=2, unlabelled_value=0)
    with pytest.raises(InputError, match="holds no labelled pixel"):
        binary_labels(np.zeros((1, 4, 4), np.uint8), "strokes.tif", cell_value=2, unlabelled_value=0)


def test_unlabelled_pixels_are_left_out_of_the_pixel_scores():
    truth = np.array([[0, 1, 1, 1, UNLABELLED, UNLABELLED]], np.uint8)
    probability = np.array([[0.1, 0.9, 0.2, 0.9, 0.9, 0.1]], np.float32)
    scores = pixel_scores(probability, truth, 0.5)
    # Labelled: membrane right, two cells right, one cell missed; the unlabelled ignored.
    assert scores["cell_precision"] == 1.0 and scores["cell_recall"] == pytest.approx(2 / 3)
    assert scores["misclassified_fraction"] == pytest.approx(1 / 4)


@pytest.fixture(scope="module")
def sparse_run(isbi_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    truth = tifffile.imread(isbi_dir / "train-labels.tif") > 0
    strokes = ilastik_strokes(truth.astype(np.uint8))
    tifffile.imwrite(root / "strokes.tif", strokes, photometric="minisblack")  # as ilastik exports a stack
    work = copy_workflow(root / "work")
    (root / "shared").symlink_to(isbi_dir.parent.resolve(), target_is_directory=True)
    config = {
        "experiment": "sparse",
        "data": {
            "train_labels": [str(root / "strokes.tif")],
            "label_cell_value": 2,
            "unlabelled_value": 0,
            "test_images": [],
        },
    }
    (work / "sparse.yaml").write_text(yaml.safe_dump(config))
    return work, truth, strokes, snakemake(work, "--configfile", "config/smoke.yaml", "sparse.yaml")


def held_out_dice(run, truth: np.ndarray) -> float:
    """Mean membrane Dice of a run's held-out maps against the dense truth."""
    maps = sorted(run.glob("predictions/held_out/fold*/slice_*.tif"))
    assert len(maps) == len(truth)
    return float(
        np.mean(
            [
                pixel_scores(tifffile.imread(path), truth[int(path.stem.split("_")[1])].astype(np.uint8), 0.5)[
                    "membrane_dice"
                ]
                for path in maps
            ]
        )
    )


def test_a_model_trained_on_strokes_learns_the_membranes(sparse_run, isbi_run):
    work, truth, strokes, result = sparse_run
    assert result.returncode == 0, result.stderr
    print(f"labelled: {100 * (strokes > 0).mean():.1f} % of the pixels")
    sparse = held_out_dice(work / "results/sparse", truth)
    dense = held_out_dice(isbi_run[0] / "results/smoke", truth)
    print(f"held-out membrane Dice against the dense truth: strokes {sparse:.3f}, dense labels {dense:.3f}")
    assert sparse >= 0.85 * dense
    per_slice = pd.read_csv(work / "results/sparse/metrics/per_slice.tsv", sep="\t")
    # Pixel scores on the strokes; the segment scores need dense labels: n/a.
    assert per_slice.membrane_dice.between(0, 1).all() and per_slice.cells_v_rand.isna().all()
    warnings = pd.read_csv(work / "results/sparse/metrics/warnings.tsv", sep="\t")
    assert warnings.message.str.contains("sparsely labelled").any()
