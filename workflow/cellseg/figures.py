"""Figures of a run, drawn with matplotlib: per-slice panels, curves, distributions.

Every function returns a ``matplotlib.figure.Figure`` made without pyplot, so no
display is needed and importing this module leaves a notebook's backend alone; ``save``
writes one as a PNG or JPEG. Label convention: 1 = cell interior, 0 = membrane.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .layout import slice_file
from .metrics import UNLABELLED, predicted_cell
from .records import HeldOut, Volume
from .scores import MAIN_SCORES, better

# Colours of the error map: cell right, membrane right, false membrane, missed membrane.
ERROR_COLOURS = ("#f2f2f2", "#303030", "#e69f00", "#0072b2")


def subplots(rows: int, columns: int, figsize: tuple[float, float], **options) -> tuple[Figure, object]:
    """A figure (constrained layout) and its grid of axes, as ``pyplot.subplots`` gives
    them but without pyplot's global state: a figure nobody keeps is freed."""
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots(rows, columns, **options)


def display_range(image: np.ndarray) -> dict[str, float]:
    """vmin and vmax of a normalised image's display: its 1st and 99.8th percentiles, as
    whatever normalisation made it (stacks.normalise_images) leaves its range open."""
    low, high = np.percentile(image, (1, 99.8))
    return {"vmin": float(low), "vmax": float(high) if high > low else float(low) + 1.0}


def error_map(probability: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """0 cell right, 1 membrane right, 2 false membrane, 3 missed membrane (H, W); an
    unlabelled pixel (sparse labels) shows its prediction, no error."""
    cell = predicted_cell(probability, threshold)
    truth = np.where(labels == UNLABELLED, cell, labels == 1)
    codes = np.where(truth, 0, 1)
    codes[truth & ~cell] = 2
    codes[~truth & cell] = 3
    return codes


def slice_panel(image: np.ndarray, labels: np.ndarray, probability: np.ndarray, threshold: float, title: str) -> Figure:
    """Image, ground truth, probability map and the prediction with its errors coloured."""
    figure, axes = subplots(1, 4, figsize=(16, 5.2))
    axes[0].imshow(image, cmap="gray", **display_range(image))
    axes[0].set_title("EM image")
    axes[1].imshow(np.where(labels == UNLABELLED, 0.5, labels), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(
        "ground truth (white = cell, grey = unlabelled)"
        if (labels == UNLABELLED).any()
        else "ground truth (white = cell)"
    )
    shown = axes[2].imshow(probability, cmap="magma", vmin=0, vmax=1)
    axes[2].set_title("predicted cell probability")
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02, label="probability")
    axes[3].imshow(
        error_map(probability, labels, threshold),
        cmap=ListedColormap(ERROR_COLOURS),
        vmin=0,
        vmax=3,
        interpolation="nearest",
    )
    axes[3].set_title(f"prediction at p > {threshold:g}")
    names = (
        "cell, right",
        "membrane, right",
        "false membrane (cell called membrane)",
        "missed membrane (membrane called cell)",
    )
    figure.legend(
        handles=[Patch(facecolor=c, edgecolor="#999", label=n) for c, n in zip(ERROR_COLOURS, names, strict=True)],
        loc="outside lower right",
        ncol=4,
        fontsize=10,
        frameon=False,
    )
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    height, width = image.shape
    figure.suptitle(f"{title} ({height} x {width} px)", fontsize=13)
    return figure


def training_curves(curves: dict[int, pd.DataFrame]) -> Figure:
    """Training loss and learning rate against the step, one line per fold."""
    figure, (loss_axis, rate_axis) = subplots(1, 2, figsize=(12, 4))
    for fold, curve in sorted(curves.items()):
        loss_axis.plot(curve.step, curve.loss, label=f"fold {fold}")
        rate_axis.plot(curve.step, curve.learning_rate, label=f"fold {fold}")
    loss_axis.set(title="training loss (Dice + BCE, training crops)", xlabel="optimiser step", ylabel="loss")
    rate_axis.set(title="learning rate", xlabel="optimiser step", ylabel="learning rate")
    loss_axis.legend(fontsize=9)
    for axis in (loss_axis, rate_axis):
        axis.grid(alpha=0.3)
    return figure


def metric_distributions(per_slice: pd.DataFrame) -> Figure:
    """Each main metric's per-slice values, one box per fold, the slices as dots."""
    figure, axes = subplots(1, len(MAIN_SCORES), figsize=(3.4 * len(MAIN_SCORES), 4))
    folds = sorted(per_slice.fold.unique())
    for axis, (column, name) in zip(axes, MAIN_SCORES.items(), strict=True):
        values = [per_slice.loc[per_slice.fold == fold, column].to_numpy() for fold in folds]
        axis.boxplot(values, widths=0.5, showfliers=False)
        for position, fold_values in enumerate(values, start=1):
            axis.scatter(np.full(len(fold_values), position), fold_values, s=14, alpha=0.7, zorder=3)
        axis.set_xticks(range(1, len(folds) + 1), [str(f) for f in folds])
        axis.set(title=name, xlabel="fold", ylabel=f"{name} per held-out slice")
        axis.grid(axis="y", alpha=0.3)
    return figure


def test_volume_examples(images: np.ndarray, probabilities: np.ndarray, slices: list[int]) -> Figure:
    """A few test-volume slices above the fold ensemble's cell probability."""
    figure, axes = subplots(2, len(slices), figsize=(4 * len(slices), 8.4), squeeze=False)
    for column, index in enumerate(slices):
        axes[0, column].imshow(images[index], cmap="gray", **display_range(images[index]))
        axes[0, column].set_title(f"test slice {index}")
        shown = axes[1, column].imshow(probabilities[index], cmap="magma", vmin=0, vmax=1)
        axes[1, column].set_title(f"ensemble cell probability, slice {index}")
        for axis in axes[:, column]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.colorbar(shown, ax=axes[1, :].tolist(), fraction=0.03, label="probability")
    return figure


def save(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG, or as a JPEG (quality 85) when ``path`` ends in .jpg.

    Image panels go to JPEG: noisy probability maps compress badly as PNG (about 0.7 MB a
    panel against 0.1 MB), and the report embeds every panel.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"pil_kwargs": {"quality": 85}} if path.suffix == ".jpg" else {}
    figure.savefig(path, dpi=dpi, **options)
    return path


# Sections of the test volume drawn in test_volume.jpg.
TEST_EXAMPLES = 3


def draw_run_figures(
    output_dir: str | Path,
    held_out: HeldOut,
    curve_paths: dict[int, str | Path],
    threshold: float,
    test: Volume | None = None,
) -> list[Path]:
    """Every figure of a run under ``output_dir``; returns the paths written.

    ``slices/slice_NNN.jpg`` per held-out slice, ``training_curves.png``,
    ``metrics_by_fold.png`` and, with a ``test`` volume, ``test_volume.jpg`` (``TEST_EXAMPLES``
    of its sections). Fold k's training curve is ``curve_paths[k]``.
    """
    output_dir = Path(output_dir)
    images, labels, per_slice = held_out.images, held_out.labels, held_out.per_slice
    written = []
    for row in per_slice.itertuples():
        probability = held_out.probability(row.slice, row.fold)
        title = (
            f"slice {row.slice} (held out by fold {row.fold}): membrane Dice {row.membrane_dice:.3f}, "
            f"misclassified fraction {row.misclassified_fraction:.3f}"
        )
        figure = slice_panel(
            np.asarray(images[row.slice]), np.asarray(labels[row.slice]), probability, threshold, title
        )
        written.append(save(figure, output_dir / "slices" / slice_file(row.slice, "jpg"), dpi=80))
    curves = {fold: pd.read_csv(path, sep="\t") for fold, path in curve_paths.items()}
    written.append(save(training_curves(curves), output_dir / "training_curves.png"))
    written.append(save(metric_distributions(per_slice), output_dir / "metrics_by_fold.png"))
    if test is not None:
        count = len(test.images)
        examples = sorted(
            {round(i * (count - 1) / max(TEST_EXAMPLES - 1, 1)) for i in range(min(TEST_EXAMPLES, count))}
        )
        figure = test_volume_examples(test.images, test.probability, examples)
        written.append(save(figure, output_dir / "test_volume.jpg", dpi=80))
    return written


def forest_plot(comparisons: pd.DataFrame) -> Figure:
    """Each experiment's mean difference to the reference with its 95 % interval, a panel
    per score; the seed-noise rows, where present, in grey."""
    rows = list(dict.fromkeys(comparisons.experiment))
    height = 1.2 + 0.45 * len(rows)
    figure, axes = subplots(1, len(MAIN_SCORES), figsize=(3.4 * len(MAIN_SCORES), height), sharey=True)
    for axis, (score, name) in zip(axes, MAIN_SCORES.items(), strict=True):
        table = comparisons[comparisons.score == score].set_index("experiment").loc[rows]
        positions = np.arange(len(rows))[::-1]
        colours = ["#888888" if kind != "change" else "#0072b2" for kind in table.kind]
        axis.hlines(positions, table.ci95_low, table.ci95_high, colors=colours, linewidth=2)
        axis.scatter(table.difference, positions, c=colours, zorder=3)
        axis.axvline(0, color="#303030", linewidth=1)
        axis.set(title=name, xlabel=f"difference ({better(score)} is better)")
        axis.xaxis.set_major_locator(MaxNLocator(4))
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(np.arange(len(rows))[::-1], rows)
    figure.suptitle(
        f"paired difference to {comparisons.reference.iloc[0]} over held-out slices, 95 % bootstrap interval"
    )
    return figure


def quality_against_cost(experiments: pd.DataFrame) -> Figure:
    """Membrane Dice and the challenge's pixel error (mean, 95 % interval) against training
    minutes."""
    figure, axes = subplots(1, 2, figsize=(11, 4.2))
    for axis, score in zip(axes, ("membrane_dice", "challenge_pixel_error"), strict=True):
        # A marker and legend entry per experiment: names written beside close points overlap.
        for row in experiments.to_dict("records"):
            mean = row[f"{score}_mean"]
            errors = [[mean - row[f"{score}_ci95_low"]], [row[f"{score}_ci95_high"] - mean]]
            axis.errorbar(row["training_minutes"], mean, yerr=errors, fmt="o", capsize=3, label=row["experiment"])
        axis.set(
            title=f"{MAIN_SCORES[score]} ({better(score)} is better)",
            xlabel="training wall time, minutes (all folds)",
            ylabel=MAIN_SCORES[score],
        )
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    return figure
