#!/usr/bin/env bash
# The GPU recipe on a lent card (benchmarks/gpu_check.py says what it measures).
#   benchmarks/gpu_check.sh prepare   here, with the registry: .gpu/ gets the wheels the card's
#                                     image lacks (Python 3.12) and a copy of the ISBI stacks
#   benchmarks/gpu_check.sh run ...   there, offline, with .gpu carried: installs the wheels
#                                     into /tmp/site, puts the stacks at ../shared/isbi2012,
#                                     then runs python -m benchmarks.gpu_check ... from the
#                                     checkout (which puts benchmarks/ on the path)
# The card's image (../.library/device/KINDS.md) has torch, numpy, scipy, scikit-image,
# pandas, matplotlib, jinja2 and pyyaml; Snakemake, dask, zarr, ome-zarr, jsonschema, and
# waterz and mwatershed (the graph algorithms that make cells) travel as wheels. pulp
# (Snakemake's ILP scheduler, 16 MB) stays behind: the check runs Snakemake with
# --scheduler greedy. imagecodecs (26 MB) too: the ISBI stacks are not compressed.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?usage: benchmarks/gpu_check.sh prepare|run [gpu_check.py options]}
shift

if [ "$what" = prepare ]; then
    mkdir -p .gpu/wheels .gpu/isbi2012
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
    cp ../shared/isbi2012/*.tif ../shared/isbi2012/README.md .gpu/isbi2012/
    # The pinned closure of what the image lacks, from this checkout's .venv.
    .venv/bin/python - > .gpu/requirements.txt <<'PY'
import importlib.metadata as md, re
from packaging.requirements import Requirement
image = set("""aiohttp attrs certifi charset-normalizer click cloudpickle filelock fsspec idna imageio
jinja2 lazy-loader markupsafe matplotlib msgpack networkx numpy packaging pandas pillow
psutil pygments pyyaml requests scikit-image scipy six tabulate toolz torch torchvision
typing-extensions urllib3 wrapt pulp imagecodecs""".split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
todo, seen = ["snakemake", "dask", "zarr", "ome-zarr", "jsonschema", "tifffile", "waterz", "mwatershed"], {}
while todo:
    name = norm(todo.pop())
    if name in seen or name in image:
        continue
    dist = md.distribution(name)
    seen[name] = dist.version
    for text in dist.requires or []:
        requirement = Requirement(text)
        if not requirement.marker or requirement.marker.evaluate({"extra": "", "python_version": "3.12"}):
            todo.append(requirement.name)
print("\n".join(f"{n}=={v}" for n, v in sorted(seen.items())))
PY
    platforms=()
    for p in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux2014; do
        platforms+=(--platform "${p}_x86_64")
    done
    while read -r requirement; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            "${platforms[@]}" -d .gpu/wheels "$requirement" 2>/dev/null ||
            python3 -m pip wheel -q --no-deps -w .gpu/wheels "$requirement"  # sdist-only, pure Python
    done < .gpu/requirements.txt
    du -sh .gpu
    exit 0
fi

[ "$what" = run ] || { echo "benchmarks/gpu_check.sh: unknown command $what" >&2; exit 2; }
python=python3
if [ -x .venv/bin/python ]; then
    python=.venv/bin/python
elif [ -d .gpu/wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
    export PYTHONPATH=/tmp/site
fi
if [ ! -e ../shared/isbi2012 ] && [ -d .gpu/isbi2012 ]; then
    mkdir -p ../shared && ln -s "$PWD/.gpu/isbi2012" ../shared/isbi2012
fi
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$python" -m benchmarks.gpu_check "$@"
