"""Code health the issues ask for, checked on the source: short signatures, one spelling of a path."""

from __future__ import annotations

import ast

import pytest

from conftest import REPO

PACKAGES = [REPO / "workflow" / "cellseg", REPO / "benchmarks"]
MOST_PARAMETERS = 6


def public_functions():
    for package in PACKAGES:
        for path in sorted(package.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                    yield path.relative_to(REPO), node


def parameters(node: ast.FunctionDef) -> list[str]:
    arguments = node.args
    names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
    return [n for n in names if n not in ("self", "cls")] + (["*" + arguments.vararg.arg] if arguments.vararg else [])


def test_no_public_function_takes_more_than_six_parameters():
    long = [
        f"{path}:{node.lineno} {node.name}({', '.join(parameters(node))})"
        for path, node in public_functions()
        if len(parameters(node)) > MOST_PARAMETERS
    ]
    assert not long, "pass a record instead:\n" + "\n".join(long)


@pytest.mark.parametrize("spelling", ['f"slice_{', "models/fold{fold}.pt", "resources/stacks/{"])
def test_a_shared_path_is_spelled_in_the_layout_only(spelling):
    # layout.py names the paths that a rule and a module share; nothing else spells them.
    files = [
        *(REPO / "workflow").rglob("*.py"),
        *(REPO / "workflow").rglob("*.smk"),
        *(REPO / "benchmarks").rglob("*.py"),
    ]
    spelled = [str(p.relative_to(REPO)) for p in files if spelling in p.read_text() and p.name != "layout.py"]
    assert spelled == []
