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
