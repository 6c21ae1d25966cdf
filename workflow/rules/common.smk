# Configuration checks, wildcard constraints and input functions; no rules.
import json
import re
from pathlib import Path

from cellseg.config import training_recipe, validate_config
from cellseg.fetch import check_fallbacks
from cellseg.stackio import source_identity
from cellseg.model import affinity_offsets
from cellseg.datasets import (
    STACKS,
    fetch_spec,
    segment_data,
    stack_id,
    unpack_spec,
    unpacked_id,
)
from cellseg.layout import (
    CELL_THRESHOLDS,
    CURVE,
    FETCHED,
    HELD_OUT,
    HELD_OUT_CELLS,
    MODEL,
    MODEL_RECORD,
    TEST_CELLS,
    TEST_UNCERTAINTY,
    TEST_VOLUME,
)
from cellseg.study import (
    config_difference,
    expand_experiments,
    reference_experiment,
    runs_by_name,
)

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
validate_config(config, SCHEMA)

# Each experiment (one for a single run, several for a study) to its runs, one per
# repeat, each a complete validated config; the rules see runs as {experiment}.
STUDY_RUNS = expand_experiments(config, SCHEMA)
EXPERIMENTS = runs_by_name(STUDY_RUNS)
STUDY = config["study"]["name"]
TEMPLATES = Path(workflow.basedir) / "workflow" / "templates"
REPORT_TEMPLATE = str(TEMPLATES / "report.html.j2")

# The fetched stacks and unpacked sets the experiments read, each under a name that
# digests what decides its content (cellseg.datasets), so that experiments on other data
# never touch them.
FETCHES = {
    stack_id(run["data"], stack): fetch_spec(run["data"], stack)
    for run in EXPERIMENTS.values()
    for stack in STACKS
    if run["data"][stack]
} | {
    stack_id(segment_data(run), "segment", sources): fetch_spec(
        segment_data(run), "segment", sources
    )
    for run in EXPERIMENTS.values()
    for sources in run["segment"]["stacks"].values()
}
for run in EXPERIMENTS.values():
    for stack in STACKS:
        check_fallbacks(run["data"][stack], f"data.{stack}")
    for name, sources in run["segment"]["stacks"].items():
        check_fallbacks(sources, f"segment.stacks.{name}")
UNPACKS = {
    unpacked_id(run["data"], role): unpack_spec(run["data"], role)
    for run in EXPERIMENTS.values()
    for role in ("train", "test")
    if unpacked_id(run["data"], role)
}


wildcard_constraints:
    experiment="|".join(re.escape(name) for name in EXPERIMENTS),
    study=re.escape(STUDY),
    stack_id="|".join(map(re.escape, FETCHES)) or "none",
    unpacked="|".join(UNPACKS) or "none",
    name="|".join(
        re.escape(n) for run in EXPERIMENTS.values() for n in run["segment"]["stacks"]
    )
    or "none",
    fold=r"\d+",
    slab=r"\d+",


def experiment_config(wildcards):
    """The validated config of the experiment named by the job's wildcards."""
    return EXPERIMENTS[wildcards.experiment]


def has_test_stack(name):
    return bool(EXPERIMENTS[name]["data"]["test_images"])


def fetched(unpacked, stack, suffix):
    """The fetched stack (``.npy``) or its record (``.json``) that an unpack job reads."""
    return FETCHED.format(stack_id=UNPACKS[unpacked]["stacks"][stack], suffix=suffix)


def local_identity(sources, record):
    """Size and modification time of each local file of a stack's sources; where none
    exists (moved, or on a drive not mounted), those the fetch ``record`` holds."""
    found = {
        file: stamp
        for source in sources
        for file, stamp in source_identity(source).items()
    }
    if not found and Path(record).is_file():
        return json.loads(Path(record).read_text()).get("files", {})
    return found


def fetch_records(wildcards):
    """For ``unpack()``: ``stacks/<stack>`` -> the fetch record of each of the job's
    experiment's stacks, read by the stack's name (``cellseg.folds.named_group``)."""
    data = experiment_config(wildcards)["data"]
    return {
        f"stacks/{stack}": FETCHED.format(stack_id=stack_id(data, stack), suffix="json")
        for stack in STACKS
        if data[stack]
    }


def training_data(name):
    """An input function: the experiment's unpacked labelled set's file ``name``."""
    return (
        lambda w: f"resources/unpacked/{unpacked_id(experiment_config(w)['data'], 'train')}/{name}"
    )


def test_data(name):
    """An input function: the experiment's unpacked test set's file ``name``, or nothing."""

    def path(wildcards):
        found = unpacked_id(experiment_config(wildcards)["data"], "test")
        return f"resources/unpacked/{found}/{name}" if found else []

    return path


def experiment_recipe(wildcards):
    """What decides a fold's weights, and nothing else, so that changing evaluation or
    prediction settings, or how a training runs (threads, data workers, checkpoints,
    logging), never retrains."""
    return training_recipe(experiment_config(wildcards))


def training_threads(wildcards):
    """A training job's torch threads and its data worker processes, each a core."""
    resources = experiment_config(wildcards)["resources"]
    return resources["train_threads"] + resources["data_workers"]


def each_fold(pattern):
    """An input function: ``pattern`` for every fold of the job's experiment (a list, for
    inputs taken as a whole, such as an ensemble's models)."""

    def paths(wildcards):
        folds = experiment_config(wildcards)["cv"]["folds"]
        return [
            pattern.format(experiment=wildcards.experiment, fold=k)
            for k in range(folds)
        ]

    return paths


def segment_fetched(wildcards, suffix):
    """The fetched stack (``.npy``) or record (``.json``) of a stack to segment."""
    run = experiment_config(wildcards)
    sources = run["segment"]["stacks"][wildcards.name]
    return FETCHED.format(
        stack_id=stack_id(segment_data(run), "segment", sources), suffix=suffix
    )


SEGMENT_FILES = {
    "tiff": ["probability.tif", "uncertainty.tif", "labels.tif"],
    "ome-zarr": ["segmentation.ome.zarr"],
}


def segment_outputs():
    """Every output of segmenting every experiment's segment.stacks."""
    return [
        f"results/{name}/segment/{stack}/{output}"
        for name, run in EXPERIMENTS.items()
        for stack in run["segment"]["stacks"]
        for output in ["summary.tsv", "report.html"]
        + [f for kind in run["segment"]["formats"] for f in SEGMENT_FILES[kind]]
    ]


def segment_settings(wildcards):
    """How the job's experiment makes instance labels from the network's outputs (the
    segment keys that decide them and the affinity offsets): what a job's cells depend
    on besides the prediction settings (so that changing segment.formats, say, predicts
    nothing again)."""
    run = experiment_config(wildcards)
    return {
        "settings": {k: run["segment"][k] for k in SEGMENT_KEYS},
        "offsets": affinity_offsets(run["model"]),
    }


# The segment keys that decide the cells (the others say which stacks, and how written).
SEGMENT_KEYS = (
    "method",
    "merge_threshold",
    "merge_candidates",
    "threshold",
    "seed_threshold",
    "min_size_px",
)


def segment_slabs(name):
    """An input function: file ``name`` of every slab of the stack, as the stack's plan
    (checkpoint segment_plan) divides it."""

    def paths(wildcards):
        plan = checkpoints.segment_plan.get(**wildcards).output[0]
        slabs = json.loads(Path(plan).read_text())["slabs"]
        return [
            f"results/{wildcards.experiment}/segment/{wildcards.name}/slabs/{k}/{name}"
            for k in range(len(slabs))
        ]

    return paths


def segmented_outputs(wildcards):
    """The written segmentation a report reads: the OME-Zarr store where it is one of
    segment.formats, else the TIFF files."""
    base = f"results/{wildcards.experiment}/segment/{wildcards.name}"
    if "ome-zarr" in experiment_config(wildcards)["segment"]["formats"]:
        return {"zarr": f"{base}/segmentation.ome.zarr"}
    return {
        key: f"{base}/{key}.tif" for key in ("probability", "uncertainty", "labels")
    }


def fold_inputs(**patterns):
    """An input function for ``unpack()``: ``<name>/fold<k>`` -> that fold's path, for each
    named pattern and every fold of the job's experiment. Scripts take them as dicts keyed
    by fold (``cellseg.folds.by_fold``): a file is paired with its fold by name, never by
    its position in a list."""

    def inputs(wildcards):
        folds = experiment_config(wildcards)["cv"]["folds"]
        return {
            f"{name}/fold{k}": pattern.format(experiment=wildcards.experiment, fold=k)
            for name, pattern in patterns.items()
            for k in range(folds)
        }

    return inputs


def final_outputs():
    """Everything the default target builds, for every experiment."""
    outputs = []
    for name in EXPERIMENTS:
        outputs.append(f"results/{name}/report.html")
        if has_test_stack(name):
            outputs.append(TEST_VOLUME.format(experiment=name))
    if STUDY:
        outputs.append(f"results/studies/{STUDY}/report.html")
    return outputs + segment_outputs()


def study_reference():
    return reference_experiment(config["study"], list(STUDY_RUNS))


def study_inputs(wildcards):
    """For ``unpack()``: ``per_slice/<run>`` and ``models/<run>/fold<k>`` (the model's
    metadata) of every run of the study, read by name (``cellseg.folds.named_group``).
    """
    inputs = {
        f"per_slice/{run}": f"results/{run}/metrics/per_slice.tsv"
        for run in EXPERIMENTS
    }
    for run, run_config in EXPERIMENTS.items():
        for k in range(run_config["cv"]["folds"]):
            inputs[f"models/{run}/fold{k}"] = MODEL_RECORD.format(
                experiment=run, fold=k
            )
    return inputs


def study_differences():
    """Each experiment's config keys that differ from the reference's (repeat 0)."""
    reference = EXPERIMENTS[study_reference()]
    return {
        name: config_difference({**reference, "experiment": name}, EXPERIMENTS[name])
        for name in STUDY_RUNS
    }


def scores_table(name):
    """A table of metrics/, shown under "Scores" in `snakemake --report`."""
    return report(
        f"results/{{experiment}}/metrics/{name}.tsv",
        caption="../report/scores.rst",
        category="Scores",
        subcategory="{experiment}",
    )


def checked_models(wildcards):
    """The fold models, once the package's bioimageio keys pass the spec's rules: checked
    while the jobs are planned, so a bad key never deletes an earlier package."""
    from cellseg.modelzoo import check_sharing_config  # torch: only when exporting

    check_sharing_config(experiment_config(wildcards)["bioimageio"])
    return each_fold(MODEL)(wildcards)
