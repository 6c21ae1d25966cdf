"""The score registry: every table, legend and figure list is read off it."""

from __future__ import annotations

import pytest

from cellseg import scores
from cellseg.scores import SCORES


def test_every_score_has_one_table_a_known_family_and_direction():
    names = [s.name for s in SCORES]
    assert len(names) == len(set(names))
    assert sorted(n for table in scores.TABLES.values() for n in table) == sorted(names)
    assert {s.family for s in SCORES} == {"cells", "pixel", "challenge", "skimage"}
    assert {s.better for s in SCORES} == {"higher", "lower"}
    # The report's order: the cells' table, the membrane table's columns, then the cell table's.
    shown = list(scores.SCORE_LABELS)
    assert shown[:2] == ["cells_v_rand", "cells_v_info"]
    shown = shown[len(scores.CELLS_COLUMNS) :]
    assert shown[:2] == ["membrane_dice", "membrane_iou"] and shown[4:6] == [
        "misclassified_fraction",
        "challenge_pixel_error",
    ]
    assert shown[8] == "cell_dice" and shown[-1] == "skimage_vi_merge"
    assert scores.SCORE_LABELS["membrane_dice"][0] == "membrane Dice"
    # What the evaluation writes, in per_slice.tsv's column order.
    assert scores.SCORE_COLUMNS == names
    assert [f"{s}_thinned" for s in scores.CHALLENGE_SCORES] == scores.CHALLENGE_COLUMNS[1:]


def test_headline_and_main_scores_are_ordered_by_their_places():
    assert scores.HEADLINE == [
        "cells_v_rand",
        "cells_v_info",
        "membrane_dice",
        "v_rand_thinned",
        "v_info_thinned",
        "challenge_pixel_error",
        "misclassified_fraction",
    ]
    assert list(scores.MAIN_SCORES)[:2] == ["membrane_dice", "cell_dice"]
    assert scores.MAIN_SCORES["v_rand_thinned"] == "V_Rand (thinned)"


@pytest.mark.parametrize(
    ("name", "better", "shown"),
    [
        ("membrane_dice", "higher", "0 to 1"),
        ("challenge_pixel_error", "lower", "0 to 1"),
        ("skimage_vi_split", "lower", "0 and up (bits)"),
    ],
)
def test_direction_and_range_read_as_people_read_them(name, better, shown):
    assert scores.better(name) == better and scores.BY_NAME[name].range == shown
    assert f"| `{name}` | {scores.BY_NAME[name].label} | {shown} | {better} |" in scores.reference_markdown()
