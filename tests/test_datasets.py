"""Where each data source's stacks live: names that change with what decides their content only."""

from __future__ import annotations

import copy
from pathlib import Path

from cellseg.config import load_config
from cellseg.datasets import stack_id, unpacked_id

REPO = Path(__file__).resolve().parents[1]
DATA = load_config([REPO / "config/config.yaml"], REPO / "workflow/schemas/config.schema.yaml")["data"]


def changed(**keys):
    data = copy.deepcopy(DATA)
    data.update(keys)
    return data


def test_stacks_are_named_by_their_kind_and_a_digest():
    assert stack_id(DATA, "train_images").startswith("train_images-") and len(stack_id(DATA, "train_images")) == 25
    assert len({stack_id(DATA, s) for s in ("train_images", "train_labels", "test_images")}) == 3


def test_another_source_is_another_folder_and_leaves_the_others_alone():
    other = changed(train_images=["/data/other.tif"])
    assert stack_id(other, "train_images") != stack_id(DATA, "train_images")
    assert stack_id(other, "train_labels") == stack_id(DATA, "train_labels")
    assert unpacked_id(other, "train") != unpacked_id(DATA, "train")
    assert unpacked_id(other, "test") == unpacked_id(DATA, "test")


def test_the_test_stack_never_renames_the_labelled_set():
    for test_images in ([], ["/data/new.tif"]):
        assert unpacked_id(changed(test_images=test_images), "train") == unpacked_id(DATA, "train")
    assert (
        unpacked_id(changed(test_images=[]), "test") is None
        and stack_id(changed(test_images=[]), "test_images") is None
    )


def test_reading_options_rename_what_they_change():
    labels = changed(label_cell_value=0)
    assert stack_id(labels, "train_labels") != stack_id(DATA, "train_labels")
    assert stack_id(labels, "train_images") == stack_id(DATA, "train_images")
    normalised = changed(normalization="mean_std")
    assert unpacked_id(normalised, "train") != unpacked_id(DATA, "train")
    assert unpacked_id(normalised, "test") != unpacked_id(DATA, "test")
    # How downloads are retried decides nothing about the content.
    assert unpacked_id(changed(download_retries=9, download_timeout=5), "train") == unpacked_id(DATA, "train")


def test_data_voxel_size_is_the_training_stacks_not_the_stacks_to_segment():
    from cellseg.config import SCHEMA_PATH, load_schema, schema_defaults
    from cellseg.datasets import fetch_spec, segment_data

    config = schema_defaults(load_schema(SCHEMA_PATH))
    config["data"]["voxel_size"] = {"y": 4, "x": 4, "unit": "nm"}
    assert fetch_spec(config["data"], "train_images", ["a.tif"])["options"]["voxel_size"] == {
        "y": 4,
        "x": 4,
        "unit": "nm",
    }
    # A stack to segment keeps its own calibration: its pixel size is what is checked.
    assert fetch_spec(segment_data(config), "segment", ["b.tif"])["options"]["voxel_size"] == {}
