"""The scores' names: columns of the tables, which way each is better, and the names
people read. Figures, reports and studies import this, not the evaluation (which needs
scikit-image and tifffile)."""

# Columns of per_slice.tsv besides slice and fold, in order.
PIXEL_COLUMNS = [
    f"{name}_{score}" for name in ("cell", "membrane") for score in ("dice", "iou", "precision", "recall")
] + ["misclassified_fraction"]
# The challenge's segment scores (challenge.py), and its columns: each score at the
# threshold of its sweep best over all held-out slices.
CHALLENGE_SCORES = ("v_rand", "v_info")
CHALLENGE_COLUMNS = ["challenge_pixel_error"] + [f"{score}_thinned" for score in CHALLENGE_SCORES]
SKIMAGE_COLUMNS = ["skimage_adapted_rand_error", "skimage_vi_split", "skimage_vi_merge"]
# Scores averaged over slices also where the pixel scores are pooled.
SEGMENT_COLUMNS = CHALLENGE_COLUMNS + SKIMAGE_COLUMNS
# Every score lies in [0, 1] but the variations of information, in bits (skimage's log2),
# which have no upper bound.
UNBOUNDED_ABOVE = {"skimage_vi_split", "skimage_vi_merge"}
COUNT_COLUMNS = ["cell_tp", "cell_fp", "cell_fn", "cell_tn"]
# The scores figures and studies show, with their names for people.
MAIN_SCORES = {
    "membrane_dice": "membrane Dice",
    "cell_dice": "cell Dice",
    "challenge_pixel_error": "pixel error (challenge)",
    "misclassified_fraction": "misclassified fraction",
    "v_rand_thinned": "V_Rand (thinned)",
    "v_info_thinned": "V_Info (thinned)",
}
LOWER_IS_BETTER = {
    "challenge_pixel_error",
    "misclassified_fraction",
    "skimage_adapted_rand_error",
    "skimage_vi_split",
    "skimage_vi_merge",
}


def better(score: str) -> str:
    """Which way a score improves: "lower" or "higher"."""
    return "lower" if score in LOWER_IS_BETTER else "higher"


def _pixel_labels() -> dict[str, tuple[str, str]]:
    labels = {}
    for name in ("membrane", "cell"):
        for score, plain, what in (
            ("dice", "Dice", "overlap of prediction and truth, 2 TP / (2 TP + FP + FN)"),
            ("iou", "IoU", "intersection over union (Jaccard), TP / (TP + FP + FN)"),
            ("precision", "precision", "TP / (TP + FP): how much of what is called {name} is {name}"),
            ("recall", "recall", "TP / (TP + FN): how much of the true {name} is found"),
        ):
            labels[f"{name}_{score}"] = (
                f"{name} {plain}",
                f"{what.format(name=name)}, {name} pixels at the threshold; 0 to 1, higher is better",
            )
    return labels


# Every score column: its name for people and a one-line description (unit or range, and
# which way is better), for the reports' headers, tooltips and legends.
SCORE_LABELS: dict[str, tuple[str, str]] = {
    **{k: v for k, v in _pixel_labels().items() if k.startswith("membrane")},
    "challenge_pixel_error": (
        "pixel error (challenge)",
        "ISBI 2012's pixel error: 1 - the best F-score of the cell class over the thresholds 0 to 1 in steps "
        "of 0.1, as Fiji computes it; 0 to 1, lower is better",
    ),
    "v_rand_thinned": (
        "V_Rand (thinned)",
        "ISBI 2012's Rand F-score of the cell segments after thinning the borders, at its best threshold; "
        "0 to 1, higher is better: merged or split cells lower it",
    ),
    "v_info_thinned": (
        "V_Info (thinned)",
        "ISBI 2012's information-theoretic F-score of the cell segments after thinning the borders, at its "
        "best threshold; 0 to 1, higher is better",
    ),
    "misclassified_fraction": (
        "misclassified fraction",
        "fraction of the pixels given the wrong class at the threshold; 0 to 1, lower is better "
        "(not the challenge's pixel error)",
    ),
    **{k: v for k, v in _pixel_labels().items() if k.startswith("cell")},
    "skimage_adapted_rand_error": (
        "adapted Rand error (scikit-image)",
        "1 - scikit-image's adapted Rand F-score of the 4-connected cell components at the threshold; "
        "0 to 1, lower is better",
    ),
    "skimage_vi_split": (
        "VI split (scikit-image, bits)",
        "H(prediction | truth): cells cut into pieces; 0 is perfect, no upper bound, lower is better",
    ),
    "skimage_vi_merge": (
        "VI merge (scikit-image, bits)",
        "H(truth | prediction): cells joined together; 0 is perfect, no upper bound, lower is better",
    ),
}
