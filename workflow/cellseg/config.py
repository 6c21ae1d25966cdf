"""Configuration: schema defaults, unknown keys with a suggestion, and type checks.

The schema (``workflow/schemas/config.schema.yaml``, JSON Schema 2020-12) is the single
description of every key. ``validate_config`` is called once by the Snakefile; it fills the
defaults in place and raises ``InputError`` naming every bad key at once.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import jsonschema
import yaml

from .errors import InputError

# The one description of every key, beside the package in the checkout.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path) -> dict:
    """Read a YAML (or JSON) schema file."""
    with open(path) as handle:
        return yaml.safe_load(handle)


def checked_section(name: str, section: dict, base: dict) -> dict:
    """A config section given from Python: ``section`` (complete or partial) over ``base``
    (a complete section: the schema's defaults, or a run's own), checked as the config
    is. Raises ``InputError`` naming every unknown key (with the nearest valid one) and
    every value of the wrong type or range."""
    schema = load_schema(SCHEMA_PATH)
    only = {"type": "object", "properties": {name: schema["properties"][name]}}
    problems = unknown_keys({name: section}, schema)
    if not problems:
        problems = type_errors({name: {**base, **section}}, only)
    if problems:
        raise InputError("The " + name + " settings are not valid:\n" + "\n".join(f"  - {p}" for p in problems))
    return {**base, **section}


def defaults(section: str) -> dict:
    """The schema's defaults of one config section (``segment``, ``data``, ...), for
    callers from Python that pass no config: the schema stays their one source."""
    return schema_defaults(load_schema(SCHEMA_PATH))[section]


def schema_defaults(schema: dict) -> dict:
    """The configuration a user gets with no config file at all: every default filled."""
    config: dict = {}
    fill_defaults(config, schema)
    return config


def fill_defaults(config: dict, schema: dict) -> None:
    """Fill missing keys of ``config`` in place from the schema's ``default`` values.

    Unlike ``snakemake.utils.validate``, nested sections are created when absent, so a
    default deep in the tree is filled even when the user's file omits its parent.
    """
    for key, sub in schema.get("properties", {}).items():
        if key not in config:
            if "default" in sub:
                config[key] = copy.deepcopy(sub["default"])
            elif "properties" in sub:
                config[key] = {}
        if isinstance(config.get(key), dict) and "properties" in sub:
            fill_defaults(config[key], sub)


def _known_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, sub in schema.get("properties", {}).items():
        keys.append(prefix + key)
        keys.extend(_known_keys(sub, f"{prefix}{key}."))
    return keys


def unknown_keys(config: dict, schema: dict) -> list[str]:
    """Messages for every key the schema does not know, each with the nearest valid key."""
    known = _known_keys(schema)
    messages = []

    def walk(section: dict, sub: dict, prefix: str) -> None:
        properties = sub.get("properties", {})
        for key, value in section.items():
            path = prefix + str(key)
            if key in properties:
                if isinstance(value, dict):
                    walk(value, properties[key], path + ".")
            elif sub.get("additionalProperties") is False:
                nearest = (
                    [MOVED_KEYS[path]]
                    if path in MOVED_KEYS
                    else difflib.get_close_matches(path, known, n=1, cutoff=0.6)
                )
                hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
                valid = ", ".join(sorted(properties))
                messages.append(f"unknown config key '{path}'{hint} (valid keys here: {valid})")

    walk(config, schema, "")
    return messages


def _describe(schema: dict, path: list) -> str:
    sub = schema
    for part in path:
        if isinstance(part, int):
            sub = sub.get("items", {})
        else:
            sub = sub.get("properties", {}).get(part, sub.get("additionalProperties", {}))
        if not isinstance(sub, dict):
            return ""
    return sub.get("description", "")


def type_errors(config: dict, schema: dict) -> list[str]:
    """Messages for every value that does not match its key's schema."""
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        path = list(error.absolute_path)
        key = ".".join(str(part) for part in path) or "(top level)"
        description = _describe(schema, path)
        about = f" [{key}: {description}]" if description else ""
        messages.append(f"config key '{key}': {error.message}{about}")
    return messages


COMMAND_LINE_CONFIG = "config/config.yaml merged with any --configfile and --config"
# Keys that moved to the `resources` section (how a job runs, never what it computes).
MOVED_KEYS = {
    "train.threads": "resources.train_threads",
    "train.gpus": "resources.train_gpus",
    "train.data_workers": "resources.data_workers",
    "train.checkpoint_every": "resources.checkpoint_every",
    "train.log_every_seconds": "resources.log_every_seconds",
}


def training_recipe(config: dict) -> dict:
    """What decides a training's weights, and nothing else: the seed, the model (only its
    architecture for MONAI's BasicUNet, which ignores the other model keys), the
    augmentation and the train section (how a job runs is the ``resources`` section's)."""
    model = config["model"]
    if model["architecture"] == "monai_basicunet":
        model = {"architecture": model["architecture"]}
    return {
        "seed": config["seed"],
        "model": model,
        "augment": config["augment"],
        "train": config["train"],
    }


def validate_config(config: dict, schema_path: str | Path, source: str = COMMAND_LINE_CONFIG) -> dict:
    """Check ``config`` against the schema, fill its defaults in place and return it.

    Raises ``InputError`` listing every unknown key (with the nearest valid key) and every
    value of the wrong type or range; ``source`` says where the config came from.
    """
    schema = load_schema(schema_path)
    problems = unknown_keys(config, schema)
    if not problems:
        fill_defaults(config, schema)
        problems = type_errors(config, schema)
    if not problems and config["segment"]["seed_threshold"] < config["segment"]["threshold"]:
        problems.append(
            f"config key 'segment.seed_threshold' ({config['segment']['seed_threshold']}) is below "
            f"'segment.threshold' ({config['segment']['threshold']}): "
            "the watershed's seeds must lie inside the cells' mask"
        )
    if not problems:
        problems = output_problems(config)
    if problems:
        raise InputError(f"The configuration is invalid ({source}): " + "; ".join(problems) + ".")
    return config


def output_problems(config: dict) -> list[str]:
    """What is wrong with a complete config's network output for its segment method, crops
    and tiles: mutex without affinities; affinity offsets without the nearest neighbours,
    as long as a crop or tile side (no pixel pair inside them), or, with test-time
    augmentation, whose transposes are not offsets too (a transposed image's map of them
    could not be turned back)."""
    model, method = config["model"], config["segment"]["method"]
    if model["output"] != "affinities":
        if method == "mutex":
            return [
                "config key 'segment.method' is mutex, which needs model.output: affinities "
                f"(model.output is {model['output']!r})"
            ]
        return []
    offsets = [tuple(offset) for offset in model["offsets"]]
    problems = []
    if (-1, 0) not in offsets or (0, -1) not in offsets:
        problems.append(
            "config key 'model.offsets' must hold (-1, 0) and (0, -1), the nearest neighbours as waterz reads them"
        )
    if len(set(offsets)) != len(offsets) or (0, 0) in offsets:
        problems.append(f"config key 'model.offsets' {model['offsets']} repeats an offset or holds (0, 0)")
    reach = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    for key, side in (
        ("train.crop_size", config["train"]["crop_size"]),
        ("predict.tile_size", config["predict"]["tile_size"]),
    ):
        if reach >= side:
            problems.append(f"config key 'model.offsets' reaches {reach} px, as far as or farther than {key} ({side})")
    if config["predict"]["tta"] > 1:
        unmatched = [[dy, dx] for dy, dx in offsets if (dx, dy) not in offsets and (-dx, -dy) not in offsets]
        if unmatched:
            problems.append(
                f"config key 'model.offsets' has offsets {unmatched} whose transposes are not offsets, which "
                "predict.tta above 1 needs (or set predict.tta: 1)"
            )
    return problems


def merged(base: dict, override: dict) -> dict:
    """``base`` updated by ``override`` key by key, nested sections merged (as Snakemake
    merges --configfile files); neither argument is changed."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def load_config(paths: list[str | Path], schema_path: str | Path) -> dict:
    """The config files merged in order, validated, defaults filled in."""
    config: dict = {}
    for path in paths:
        with open(path) as handle:
            config = merged(config, yaml.safe_load(handle) or {})
    return validate_config(config, schema_path)


REFERENCE_HEADER = """# Configurations

- `config.yaml`: what a user edits first (the data, the experiment's name, the main recipe
  keys), each at its default. Snakemake always loads it first; every key it leaves out
  takes the schema's default. It is the CPU recipe: the whole pipeline, 5 folds and the
  test volume.
- `smoke.yaml`: the smallest run that still exercises every rule, used by the tests.
- `seed.yaml`: the seed's recipe as written, the baseline later comparisons must beat.
- `gpu.yaml`: the recipe for a GPU.
- `studies/`: cross-validation studies (several experiments compared on the same folds).

Your own file goes on top with `--configfile my.yaml` and names only what it changes;
Snakemake merges it key by key (lists are replaced whole). For nested keys use a file
rather than `--config`, which passes nested values as strings.

## Every key

Generated from `workflow/schemas/config.schema.yaml`, the one description of every key
(`python scripts/config_reference.py` rewrites this file; a test keeps it current).

| key | type | default | meaning |
| --- | --- | --- | --- |
"""


def reference_markdown(schema: dict) -> str:
    """``config/README.md``: the shipped config files, then one table row per key of the
    schema (sections and their keys, depth first) with its type, default and description."""

    def shown(value) -> str:
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        return text.removesuffix("\n...").removesuffix("...").strip()

    rows = []

    def walk(sub: dict, prefix: str) -> None:
        for key, item in sub.get("properties", {}).items():
            path = prefix + key
            kind = item.get("type", "")
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            value = shown(item.get("default"))
            default = (
                "(section)" if "properties" in item else f"`{value}`" if len(value) <= 60 else "(long: see the schema)"
            )
            description = item.get("description", "").replace("|", "\\|")
            rows.append(f"| `{path}` | {kind} | {default} | {description} |")
            walk(item, path + ".")

    walk(schema, "")
    return REFERENCE_HEADER + "\n".join(rows) + "\n"
