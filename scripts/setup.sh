#!/usr/bin/env bash
# Create .venv/ with the pipeline, its package (editable) and the test tools.
# Idempotent: when .venv/ already matches pyproject.toml it returns in well under a second.
# Use another interpreter with PYTHON=python3.12 scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
stamp=.venv/.cellseg-setup
wanted=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x .venv/bin/snakemake ]; then
    exit 0
fi

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "scripts/setup.sh: $("$python" --version 2>&1) is too old; cellseg needs Python 3.11 or newer (set PYTHON=...)." >&2
    exit 1
}
echo "scripts/setup.sh: installing cellseg into .venv/ (a few minutes the first time)" >&2
"$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --editable '.[dev,cells,peers,bioimageio,cluster]'
echo "$wanted" > "$stamp"
echo "scripts/setup.sh: .venv/ is ready" >&2
