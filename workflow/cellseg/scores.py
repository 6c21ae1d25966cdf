"""The score registry: every score cellseg reports, described once.

Each ``Score`` names a column of the score tables (``per_slice.tsv`` and the tables made
from it) and says how people read it: its plain name, a one-line description, its range,
which way is better, which of the report's two tables shows it, and whether figures,
studies and the report's headline show it. The tables' columns, the report's headers,
legends and headline, the figures, the study tables, the benchmark columns and the score
table of docs/metrics.md are all derived from ``SCORES``: adding a score is one entry
(and the code that computes it: ``metrics``, ``evaluate`` or ``challenge``). Figures, reports and studies import
this, not the evaluation (which needs scikit-image and tifffile).
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = ("cells", "pixel", "challenge", "skimage")
TABLE_NAMES = ("cells", "membrane", "cell")


@dataclass(frozen=True)
class Score:
    """One score column.

    ``family``: ``cells`` (the instance labels of ``segment.method``, scored as a
    segmentation), ``pixel`` (from the confusion counts at the threshold; pooled by
    summing the counts), ``challenge`` (ISBI 2012's scores of the probability map, each
    at the threshold of its sweep best over all held-out slices) or ``skimage``
    (scikit-image's segment scores of the map at the threshold); all but ``pixel`` are
    averaged over slices. ``table``: the report table that shows it (``cells``,
    ``membrane`` or ``cell``). ``upper``: the top of its range, None for no
    bound (bits). ``main`` and ``headline``: its place among the scores figures, studies
    and the package show, and in the report's headline (1 first; 0 not shown).
    """

    name: str
    label: str
    description: str
    family: str
    table: str
    better: str = "higher"
    upper: float | None = 1.0
    main: int = 0
    headline: int = 0

    def __post_init__(self) -> None:
        # What the tables and the report read off a score: a new entry must say it.
        if self.family not in FAMILIES or self.table not in TABLE_NAMES or self.better not in ("higher", "lower"):
            raise ValueError(f"score {self.name}: family, table or direction unknown")

    @property
    def range(self) -> str:
        return "0 and up (bits)" if self.upper is None else f"0 to {self.upper:g}"


def _pixel_scores(name: str, main: int = 0, headline: int = 0) -> list[Score]:
    described = (
        ("dice", "Dice", "overlap of prediction and truth, 2 TP / (2 TP + FP + FN)"),
        ("iou", "IoU", "intersection over union (Jaccard), TP / (TP + FP + FN)"),
        ("precision", "precision", "TP / (TP + FP): how much of what is called {name} is {name}"),
        ("recall", "recall", "TP / (TP + FN): how much of the true {name} is found"),
    )
    return [
        Score(
            f"{name}_{score}",
            f"{name} {plain}",
            f"{what.format(name=name)}, {name} pixels at the threshold; 0 to 1, higher is better",
            "pixel",
            name,
            main=main if score == "dice" else 0,
            headline=headline if score == "dice" else 0,
        )
        for score, plain, what in described
    ]


# In the order of per_slice.tsv's columns.
SCORES: tuple[Score, ...] = (
    *_pixel_scores("cell", main=2),
    *_pixel_scores("membrane", main=1, headline=3),
    Score(
        "misclassified_fraction",
        "misclassified fraction",
        "fraction of the pixels given the wrong class at the threshold; 0 to 1, lower is better "
        "(not the challenge's pixel error)",
        "pixel",
        "membrane",
        better="lower",
        main=4,
        headline=7,
    ),
    Score(
        "challenge_pixel_error",
        "pixel error (challenge)",
        "ISBI 2012's pixel error: 1 - the best F-score of the cell class over the thresholds 0 to 1 in steps "
        "of 0.1, as Fiji computes it; 0 to 1, lower is better",
        "challenge",
        "membrane",
        better="lower",
        main=3,
        headline=6,
    ),
    Score(
        "v_rand_thinned",
        "V_Rand (thinned)",
        "ISBI 2012's Rand F-score of the cell segments after thinning the borders, at its best threshold; "
        "0 to 1, higher is better: merged or split cells lower it",
        "challenge",
        "membrane",
        main=7,
        headline=4,
    ),
    Score(
        "v_info_thinned",
        "V_Info (thinned)",
        "ISBI 2012's information-theoretic F-score of the cell segments after thinning the borders, at its "
        "best threshold; 0 to 1, higher is better",
        "challenge",
        "membrane",
        main=8,
        headline=5,
    ),
    Score(
        "skimage_adapted_rand_error",
        "adapted Rand error (scikit-image)",
        "1 - scikit-image's adapted Rand F-score of the 4-connected cell components at the threshold; "
        "0 to 1, lower is better",
        "skimage",
        "cell",
        better="lower",
    ),
    Score(
        "skimage_vi_split",
        "VI split (scikit-image, bits)",
        "H(prediction | truth): cells cut into pieces; 0 is perfect, no upper bound, lower is better",
        "skimage",
        "cell",
        better="lower",
        upper=None,
    ),
    Score(
        "skimage_vi_merge",
        "VI merge (scikit-image, bits)",
        "H(truth | prediction): cells joined together; 0 is perfect, no upper bound, lower is better",
        "skimage",
        "cell",
        better="lower",
        upper=None,
    ),
    Score(
        "cells_v_rand",
        "V_Rand of the cells",
        "ISBI 2012's Rand F-score of the segments (segment.method) as a binary proposal, boundaries thinned "
        "as the challenge thins them; 0 to 1, higher is better",
        "cells",
        "cells",
        main=5,
        headline=1,
    ),
    Score(
        "cells_v_info",
        "V_Info of the cells",
        "ISBI 2012's information-theoretic F-score of the segments as a binary proposal, boundaries thinned; "
        "0 to 1, higher is better",
        "cells",
        "cells",
        main=6,
        headline=2,
    ),
    Score(
        "cells_adapted_rand_error",
        "adapted Rand error of the cells",
        "1 - scikit-image's adapted Rand F-score of the segments against the true cells; 0 to 1, lower is better",
        "cells",
        "cells",
        better="lower",
    ),
    Score(
        "cells_vi_split",
        "VI split of the cells (bits)",
        "H(segments | truth): true cells cut into several segments; 0 is perfect, no upper bound, lower is better",
        "cells",
        "cells",
        better="lower",
        upper=None,
    ),
    Score(
        "cells_vi_merge",
        "VI merge of the cells (bits)",
        "H(truth | segments): true cells joined in one segment; 0 is perfect, no upper bound, lower is better",
        "cells",
        "cells",
        better="lower",
        upper=None,
    ),
)
BY_NAME = {score.name: score for score in SCORES}

# What the tables and the evaluation read off the registry.
PIXEL_COLUMNS = [s.name for s in SCORES if s.family == "pixel"]
CHALLENGE_COLUMNS = [s.name for s in SCORES if s.family == "challenge"]
SKIMAGE_COLUMNS = [s.name for s in SCORES if s.family == "skimage"]
CELLS_COLUMNS = [s.name for s in SCORES if s.family == "cells"]
# Scores averaged over slices also where the pixel scores are pooled.
SEGMENT_COLUMNS = CHALLENGE_COLUMNS + SKIMAGE_COLUMNS + CELLS_COLUMNS
SCORE_COLUMNS = PIXEL_COLUMNS + SEGMENT_COLUMNS
UNBOUNDED_ABOVE = {s.name for s in SCORES if s.upper is None}
# The challenge's segment scores as challenge.py names them (its thinned columns' stems).
CHALLENGE_SCORES = ("v_rand", "v_info")
COUNT_COLUMNS = ["cell_tp", "cell_fp", "cell_fn", "cell_tn"]
# The report's two tables, each score in the table that shows it.
TABLES = {table: [s.name for s in SCORES if s.table == table] for table in TABLE_NAMES}
# The scores figures, studies and the package show (name -> plain name), in their order.
MAIN_SCORES = {s.name: s.label for s in sorted(SCORES, key=lambda s: s.main) if s.main}
HEADLINE = [s.name for s in sorted(SCORES, key=lambda s: s.headline) if s.headline]
# Every score column: its plain name and description, for headers, tooltips and legends,
# in the report's table order.
SCORE_LABELS: dict[str, tuple[str, str]] = {
    name: (BY_NAME[name].label, BY_NAME[name].description) for table in TABLES.values() for name in table
}


def better(score: str) -> str:
    """Which way a score improves: "lower" or "higher"."""
    return BY_NAME[score].better


REFERENCE_BEGIN = "<!-- score table: made from workflow/cellseg/scores.py by scripts/config_reference.py -->"
REFERENCE_END = "<!-- end of score table -->"


def reference_markdown() -> str:
    """The score table of docs/metrics.md, made from the registry, between its markers."""
    rows = [
        REFERENCE_BEGIN,
        "| column in `per_slice.tsv` | name in the report | range | better | what it measures |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| `{s.name}` | {s.label} | {s.range} | {s.better} | {s.description.replace('|', chr(92) + '|')} |"
            for s in SCORES
        ),
        REFERENCE_END,
    ]
    return "\n".join(rows) + "\n"
