"""The config schema: defaults, descriptions, unknown keys and types."""

from __future__ import annotations

import copy

import pytest
import yaml

from cellseg.config import fill_defaults, load_config, load_schema, merged, schema_defaults, validate_config
from cellseg.errors import InputError
from conftest import REPO

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema(SCHEMA_PATH)


def leaf_schemas(schema: dict, prefix: str = ""):
    for key, sub in schema.get("properties", {}).items():
        yield prefix + key, sub
        yield from leaf_schemas(sub, f"{prefix}{key}.")


def test_every_key_has_type_default_and_one_line_description(schema):
    assert schema["$schema"].endswith("2020-12/schema")
    for key, sub in leaf_schemas(schema):
        assert "type" in sub, key
        assert "default" in sub, key
        assert sub.get("description") and "\n" not in sub["description"], key


def test_config_yaml_shows_schema_defaults_only(schema):
    with open(REPO / "config" / "config.yaml") as handle:
        shown = yaml.safe_load(handle)
    defaults = schema_defaults(schema)
    # Every value it shows is the schema's default (the schema is the one source), and it
    # shows the keys a user edits first.
    assert merged(defaults, shown) == defaults
    assert {"experiment", "seed", "data", "model", "train"} <= set(shown)
    assert shown["data"]["train_images"] == defaults["data"]["train_images"]

    def leaves(section: dict) -> int:
        return sum(leaves(v) if isinstance(v, dict) and v else 1 for v in section.values())

    # Not a copy of every default: the schema holds those (over 100 keys).
    assert leaves(shown) <= 15 < leaves(defaults)


@pytest.mark.parametrize("name", ["smoke", "seed", "gpu"])
def test_shipped_configs_are_valid(name):
    with open(REPO / "config" / f"{name}.yaml") as handle:
        config = yaml.safe_load(handle)
    validate_config(config, SCHEMA_PATH)
    assert config["experiment"] == name


def test_seed_config_is_the_seed_design():
    from cellseg.model import UNet, count_parameters

    with open(REPO / "config" / "seed.yaml") as handle:
        model = validate_config(yaml.safe_load(handle), SCHEMA_PATH)["model"]
    assert count_parameters(UNet(model["depth"], model["base_channels"], model["norm"])) == 7_696_193


def test_defaults_fill_nested_sections_the_user_left_out(schema):
    config = {"cv": {"folds": 3}}
    validate_config(config, SCHEMA_PATH)
    assert config["cv"] == {"folds": 3, "scheme": "blocks", "repeats": 1}
    assert config["data"]["download_retries"] == 3
    assert config["experiment"] == "default"


def test_fill_defaults_keeps_user_values(schema):
    config = {"data": {"test_images": []}, "seed": 7}
    fill_defaults(config, schema)
    assert config["data"]["test_images"] == [] and config["seed"] == 7


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"cv": {"fold": 3}}, "unknown config key 'cv.fold'; did you mean 'cv.folds'?"),
        ({"folds": 3}, "unknown config key 'folds'; did you mean 'cv.folds'?"),
        ({"data": {"train_image": ["a.tif"]}}, "did you mean 'data.train_images'?"),
        ({"experimnt": "x"}, "did you mean 'experiment'?"),
        ({"train": {"threads": 4}}, "did you mean 'resources.train_threads'?"),
        ({"train": {"checkpoint_every": 5}}, "did you mean 'resources.checkpoint_every'?"),
    ],
)
def test_unknown_key_names_it_and_the_nearest_valid_key(config, expected):
    with pytest.raises(InputError, match="The configuration is invalid") as raised:
        validate_config(copy.deepcopy(config), SCHEMA_PATH)
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"cv": {"folds": "five"}}, "config key 'cv.folds': 'five' is not of type 'integer'"),
        ({"cv": {"folds": 1}}, "config key 'cv.folds': 1 is less than the minimum of 2"),
        ({"cv": {"scheme": "shuffle"}}, "config key 'cv.scheme': 'shuffle' is not one of"),
        ({"data": {"train_images": "a.tif"}}, "config key 'data.train_images': 'a.tif' is not of type 'array'"),
        ({"data": {"sha256": {"a.tif": "abc"}}}, "config key 'data.sha256.a.tif': 'abc' does not match"),
        ({"experiment": "a/b"}, "config key 'experiment': 'a/b' does not match"),
        ({"bioimageio": {"authors": []}}, "config key 'bioimageio.authors': [] should be non-empty"),
        ({"bioimageio": {"name": "v1.0"}}, "config key 'bioimageio.name': 'v1.0' does not match"),
    ],
)
def test_wrong_value_names_the_key_and_the_problem(config, expected):
    with pytest.raises(InputError) as raised:
        validate_config(copy.deepcopy(config), SCHEMA_PATH)
    assert expected in str(raised.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(InputError) as raised:
        validate_config({"cv": {"folds": "x", "scheme": "y"}}, SCHEMA_PATH)
    assert "cv.folds" in str(raised.value) and "cv.scheme" in str(raised.value)


def test_merged_overrides_key_by_key_and_load_config_validates(tmp_path):
    base = {"train": {"steps": 10, "loss": {"dice_weight": 0.5}}, "seed": 1}
    override = {"train": {"loss": {"dice_on": "cell"}}, "seed": 2}
    assert merged(base, override) == {
        "train": {"steps": 10, "loss": {"dice_weight": 0.5, "dice_on": "cell"}},
        "seed": 2,
    }
    assert base["seed"] == 1 and "dice_on" not in base["train"]["loss"]
    (tmp_path / "a.yaml").write_text("train:\n  steps: 7\n")
    (tmp_path / "b.yaml").write_text("train:\n  batch_size: 3\n")
    config = load_config([tmp_path / "a.yaml", tmp_path / "b.yaml"], SCHEMA_PATH)
    assert (config["train"]["steps"], config["train"]["batch_size"], config["model"]["depth"]) == (7, 3, 4)
    (tmp_path / "c.yaml").write_text("train:\n  step: 7\n")
    with pytest.raises(InputError, match=r"'train\.step'.*'train\.steps'"):
        load_config([tmp_path / "c.yaml"], SCHEMA_PATH)


def test_watershed_seeds_below_the_cell_threshold_are_refused_before_any_job():
    with pytest.raises(InputError, match=r"'segment.seed_threshold' \(0.3\) is below 'segment.threshold' \(0.5\)"):
        validate_config({"segment": {"seed_threshold": 0.3}}, SCHEMA_PATH)


def test_monai_recipes_leave_out_the_model_keys_monai_ignores(schema):
    from cellseg.config import training_recipe
    from cellseg.model import describe_model

    def recipe(architecture, depth):
        config = schema_defaults(schema)
        config["model"].update(architecture=architecture, depth=depth)
        return training_recipe(config)

    assert recipe("monai_basicunet", 3) == recipe("monai_basicunet", 5)  # changing depth retrains nothing
    assert recipe("unet", 3) != recipe("unet", 5)
    assert recipe("monai_basicunet", 3)["model"] == {"architecture": "monai_basicunet"}
    assert "depth" not in describe_model({"architecture": "monai_basicunet", "depth": 4})
    assert describe_model({"architecture": "unet", "depth": 4, "base_channels": 8, "norm": "batch"}) == (
        "UNet depth 4, 8 base channels, norm batch"
    )


def test_config_readme_is_generated_from_the_schema(schema):
    from cellseg.config import reference_markdown

    # Rewrite it with: python scripts/config_reference.py
    assert (REPO / "config" / "README.md").read_text() == reference_markdown(schema)
    assert all(f"| `{key}` |" in reference_markdown(schema) for key, _ in leaf_schemas(schema))


def test_the_score_table_of_the_docs_is_the_registrys():
    from cellseg import scores

    # Rewrite it with: python scripts/config_reference.py
    assert scores.reference_markdown() in (REPO / "docs" / "metrics.md").read_text()
