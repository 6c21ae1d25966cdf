"""The set-up stays consistent: pip and conda dependencies, README commands and CI."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import REPO

# pip name -> conda-forge name where they differ
# (conda-forge's full snakemake brings what the pip extra snakemake[reports] does)
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
TEST_TOOLS = {"pytest", "snakefmt", "ruff", "playwright"}


def conda_dependencies(path) -> dict[str, str]:
    with open(path) as handle:
        entries = yaml.safe_load(handle)["dependencies"]
    specs = {}
    for entry in entries:
        if isinstance(entry, str) and entry not in ("pip",) and not entry.startswith("python"):
            name, spec = re.match(r"([A-Za-z0-9_.-]+)(.*)", entry).groups()
            specs[name] = spec
    return specs


def pip_dependencies() -> dict[str, str]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    specs = {}
    extras = project["optional-dependencies"]
    for entry in project["dependencies"] + extras["dev"] + extras["bioimageio"]:
        name, spec = re.match(r"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?(.*)", entry).groups()
        specs[CONDA_NAMES.get(name.lower(), name.lower())] = spec
    return specs


def test_environment_yml_matches_pyproject():
    assert conda_dependencies(REPO / "environment.yml") == pip_dependencies()


def pip_section(path) -> list[str]:
    with open(path) as handle:
        entries = yaml.safe_load(handle)["dependencies"]
    return [e for entry in entries if isinstance(entry, dict) for e in entry.get("pip", []) if not e.startswith("-")]


def test_both_conda_environments_install_the_cells_extra_with_pip():
    with open(REPO / "pyproject.toml", "rb") as handle:
        cells = tomllib.load(handle)["project"]["optional-dependencies"]["cells"]
    assert pip_section(REPO / "environment.yml") == cells
    assert pip_section(REPO / "workflow" / "envs" / "cellseg.yaml") == cells
    assert "cells" in (REPO / "scripts" / "setup.sh").read_text().split("'.[")[1].split("]")[0].split(",")


def test_rule_environment_is_environment_yml_without_test_tools():
    expected = {name: spec for name, spec in pip_dependencies().items() if name not in TEST_TOOLS}
    assert conda_dependencies(REPO / "workflow" / "envs" / "cellseg.yaml") == expected


def test_torch_pins_admit_the_wheels_on_this_machine():
    specs = pip_dependencies()
    assert specs["pytorch"] == ">=2.4,<2.15" and specs["torchvision"] == ">=0.19,<0.30"


def test_readme_quick_start_and_ci_run_the_same_test_command():
    readme = (REPO / "README.md").read_text()
    ci_lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_lines[-1] == "scripts/setup.sh && .venv/bin/pytest"
    assert ci_lines[-1] in readme
    assert "scripts/setup.sh && .venv/bin/snakemake --cores 4 --resources gpu=1" in readme


def test_every_config_key_is_documented_where_the_readme_points():
    from cellseg.config import load_schema

    schema = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    reference = (REPO / "config" / "README.md").read_text()  # generated: tests/test_config.py

    def leaf_keys(section, prefix=""):
        for key, sub in section.get("properties", {}).items():
            if "properties" in sub:
                yield from leaf_keys(sub, f"{prefix}{key}.")
            else:
                yield prefix + key

    assert [key for key in leaf_keys(schema) if f"| `{key}` |" not in reference] == []
    assert "(config/README.md)" in (REPO / "README.md").read_text()
