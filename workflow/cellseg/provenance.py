"""What made a result, without importing torch: the installed versions."""

from __future__ import annotations

import sys
from importlib import metadata


def installed_versions() -> dict[str, str]:
    """Versions of Python, cellseg, torch, torchvision, numpy and Snakemake as installed
    (read from the distributions' metadata: nothing is imported, so the report and the
    statistics need no torch). ``runtime.versions`` adds the CUDA torch was built with."""

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"python": sys.version.split()[0]} | {
        name: installed(name) for name in ("cellseg", "torch", "torchvision", "numpy", "snakemake")
    }
