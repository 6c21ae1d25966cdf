"""The experiments of a run: one for a single run, several for a study, each repeated.

A single run is one experiment, ``config["experiment"]``. A study (``study.name`` set) is
the experiments listed under ``study.experiments`` and those ``study.grid`` expands into,
each the rest of the config, then ``study.base``, then its own overrides, merged key by key
and validated on its own, so a bad override fails naming its experiment. Experiments may
not override ``seed``, ``cv`` or ``data``: every experiment of a study is scored on the same
folds of the same slices, which is what makes their differences paired.

With ``cv.repeats`` = R every experiment runs R times, repeat r with seed + r under
``<experiment>_repeat<r>`` (repeat 0 keeps the plain name).
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import yaml

from .config import COMMAND_LINE_CONFIG, merged, validate_config
from .errors import InputError

SHARED_KEYS = ("seed", "cv", "data")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_NAMES = {"studies"}  # results/studies/ holds the studies' own outputs


def repeat_name(experiment: str, repeat: int) -> str:
    return experiment if repeat == 0 else f"{experiment}_repeat{repeat}"


def read_layers(spec, where: str) -> list[dict]:
    """Overrides given as a mapping, a config file's path, or a list of both, as mappings.

    A file's own ``experiment`` key is dropped (the study names its experiments); a mapping
    that sets one is refused, since it would be ignored.
    """
    layers = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            try:
                with open(item) as handle:
                    layer = yaml.safe_load(handle) or {}
            except OSError as error:
                raise InputError(f"{where}: cannot read the config file '{item}' ({error.strerror}).") from error
            if not isinstance(layer, dict):
                raise InputError(f"{where}: the config file '{item}' does not hold a mapping of config keys.")
            layer.pop("experiment", None)
        else:
            layer = copy.deepcopy(item)
            if "experiment" in layer:
                raise InputError(f"{where}: sets 'experiment', but the study's key names the experiment; remove it.")
        layers.append(layer)
    return layers


def grid_experiments(grid: dict[str, list]) -> dict[str, list[dict]]:
    """Every combination of the grid's values, named ``<last key part>-<value>_...``."""
    if not grid:
        return {}
    experiments = {}
    for values in itertools.product(*grid.values()):
        override: dict = {}
        parts = []
        for dotted, value in zip(grid, values, strict=True):
            *sections, leaf = dotted.split(".")
            section = override
            for part in sections:
                section = section.setdefault(part, {})
            section[leaf] = value
            parts.append(f"{leaf}-{value}")
        experiments["_".join(parts)] = [override]
    return experiments


def study_experiments(study: dict) -> dict[str, list[dict]]:
    """The study's experiments in order: name to its override layers."""
    where = f"study '{study['name']}'"
    experiments = {
        name: read_layers(spec, f"{where}, experiment '{name}'") for name, spec in study["experiments"].items()
    }
    for name, layers in grid_experiments(study["grid"]).items():
        if name in experiments:
            raise InputError(f"{where}: the grid's experiment '{name}' is also listed under study.experiments.")
        experiments[name] = layers
    if not experiments:
        raise InputError(f"{where}: no experiments; list some under study.experiments or study.grid.")
    for name, layers in experiments.items():
        if not NAME.match(name) or name in RESERVED_NAMES:
            raise InputError(
                f"{where}: '{name}' cannot name an experiment (letters, digits, _ . - only, not starting with "
                f"_ . -, and not {sorted(RESERVED_NAMES)})."
            )
        for layer in layers:
            for key in SHARED_KEYS:
                if key in layer:
                    raise InputError(
                        f"{where}, experiment '{name}': overrides '{key}', which every experiment of a study "
                        "shares (same folds, same data); set it in study.base or the config instead."
                    )
    return experiments


def expand_experiments(config: dict, schema_path: str | Path) -> dict[str, dict[str, dict]]:
    """Each experiment's name to its runs (one per repeat): run name to validated config.

    ``config`` is the validated command-line config; it is not changed.
    """
    study = config["study"]
    rest = {key: value for key, value in config.items() if key != "study"}
    if study["name"]:
        base = rest
        for layer in read_layers(study["base"], f"study '{study['name']}', study.base"):
            base = merged(base, layer)
        experiments = study_experiments(study)
        if study["reference"] and study["reference"] not in experiments:
            raise InputError(
                f"study '{study['name']}': study.reference '{study['reference']}' is not one of its experiments "
                f"({', '.join(experiments)})."
            )
    else:
        if study["experiments"] or study["grid"]:
            raise InputError("study.experiments or study.grid is set but study.name is empty: name the study.")
        base, experiments = rest, {config["experiment"]: []}

    runs: dict[str, dict[str, dict]] = {}
    for name, layers in experiments.items():
        experiment = base
        for layer in layers:
            experiment = merged(experiment, layer)
        experiment["experiment"] = name
        source = COMMAND_LINE_CONFIG
        if study["name"]:
            source = (
                f"experiment '{name}' of study '{study['name']}': the config, study.base and study.experiments.{name}"
            )
        validate_config(experiment, schema_path, source)
        runs[name] = {}
        for repeat in range(experiment["cv"]["repeats"]):
            run = copy.deepcopy(experiment)
            run["experiment"] = repeat_name(name, repeat)
            run["seed"] += repeat
            runs[name][run["experiment"]] = run
    names = [run for repeats in runs.values() for run in repeats]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise InputError(f"Two runs would share the results folder of {clashes}: rename an experiment.")
    return runs


def runs_by_name(study_runs: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Every run of ``expand_experiments``' answer, repeats included, by its name."""
    return {run: config for runs in study_runs.values() for run, config in runs.items()}


def run_config(config: dict, schema_path: str | Path, run: str) -> dict:
    """The complete validated config of one run (an experiment, or a repeat of one) of
    the command-line ``config``, as the Snakefile builds every run's (``EXPERIMENTS``):
    for a job whose params carry only part of it. Raises ``InputError`` for an unknown run."""
    runs = runs_by_name(expand_experiments(config, schema_path))
    if run not in runs:
        raise InputError(f"no run named '{run}' in this config; its runs are {', '.join(runs)}.")
    return runs[run]


def reference_experiment(study: dict, experiments: list[str]) -> str:
    return study["reference"] or experiments[0]


def config_difference(base: dict, config: dict) -> dict:
    """The keys of ``config`` whose values differ from ``base``, nested as in the config."""
    difference = {}
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            inner = config_difference(base[key], value)
            if inner:
                difference[key] = inner
        elif base.get(key) != value:
            difference[key] = value
    return difference
