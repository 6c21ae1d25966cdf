"""Studies: experiments as validated overrides, the paired statistics, and a smoke study
run end to end."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from cellseg.comparison import STUDY_SCORES, bootstrap_interval, compare_experiments, holm, wilcoxon_p
from cellseg.config import load_schema as read_schema
from cellseg.config import schema_defaults
from cellseg.errors import InputError
from cellseg.scores import COUNT_COLUMNS, SCORE_COLUMNS
from cellseg.study import config_difference, expand_experiments
from conftest import REPO, copy_workflow, snakemake

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"


def command_line_config(**study) -> dict:
    config = schema_defaults(read_schema(SCHEMA_PATH))
    config["study"] |= study
    return config


def runs_of(config: dict) -> dict[str, dict[str, dict]]:
    return expand_experiments(config, SCHEMA_PATH)


# --- experiments as overrides -------------------------------------------------------------


def test_a_single_run_is_one_experiment_of_one_run():
    config = command_line_config()
    assert list(runs_of(config)) == ["default"]
    assert runs_of(config)["default"]["default"]["train"] == config["train"]


def test_experiments_merge_their_overrides_key_by_key_over_the_base():
    config = command_line_config(
        name="s",
        base=[{"train": {"steps": 20}}],
        experiments={"a": {}, "b": {"train": {"batch_size": 2}, "model": {"depth": 3}}},
    )
    runs = runs_of(config)
    a, b = runs["a"]["a"], runs["b"]["b"]
    assert (a["experiment"], b["experiment"]) == ("a", "b")
    assert a["train"]["steps"] == b["train"]["steps"] == 20
    assert (b["train"]["batch_size"], b["model"]["depth"]) == (2, 3)
    assert b["train"]["learning_rate"] == config["train"]["learning_rate"]  # untouched keys kept
    assert a["model"] == config["model"] and a["study"]["name"] == ""  # a run is a plain config
    assert config_difference(a, b) == {"experiment": "b", "model": {"depth": 3}, "train": {"batch_size": 2}}


def test_a_misspelt_key_in_an_experiment_names_the_experiment_and_the_key():
    config = command_line_config(name="s", experiments={"a": {}, "no_elastic": {"augment": {"elastic_probabilty": 0}}})
    with pytest.raises(InputError) as error:
        runs_of(config)
    message = str(error.value)
    assert "experiment 'no_elastic' of study 's'" in message
    assert "'augment.elastic_probabilty'" in message and "did you mean 'augment.elastic_probability'" in message


def test_a_wrong_value_in_an_experiment_names_the_experiment():
    config = command_line_config(name="s", experiments={"deep": {"model": {"depth": 9}}})
    with pytest.raises(InputError, match=r"experiment 'deep'.*'model\.depth'"):
        runs_of(config)


@pytest.mark.parametrize("key, value", [("cv", {"folds": 3}), ("seed", 4), ("data", {"test_images": []})])
def test_experiments_may_not_change_folds_or_data(key, value):
    config = command_line_config(name="s", experiments={"a": {}, "b": {key: value}})
    with pytest.raises(InputError, match=f"experiment 'b': overrides '{key}'"):
        runs_of(config)


def test_the_grid_expands_into_named_experiments():
    config = command_line_config(
        name="s", experiments={"plain": {}}, grid={"model.depth": [2, 3], "train.learning_rate": [0.001, 0.01]}
    )
    runs = runs_of(config)
    assert list(runs) == [
        "plain",
        "depth-2_learning_rate-0.001",
        "depth-2_learning_rate-0.01",
        "depth-3_learning_rate-0.001",
        "depth-3_learning_rate-0.01",
    ]
    chosen = runs["depth-3_learning_rate-0.01"]["depth-3_learning_rate-0.01"]
    assert (chosen["model"]["depth"], chosen["train"]["learning_rate"]) == (3, 0.01)


def test_repeats_run_every_experiment_again_with_the_next_seeds():
    config = command_line_config(name="s", experiments={"a": {}, "b": {"model": {"depth": 3}}})
    config["cv"]["repeats"] = 3
    config["seed"] = 7
    runs = runs_of(config)
    assert list(runs["b"]) == ["b", "b_repeat1", "b_repeat2"]
    assert [run["seed"] for run in runs["b"].values()] == [7, 8, 9]
    assert all(run["model"]["depth"] == 3 for run in runs["b"].values())


def test_experiments_from_config_files_ignore_the_files_own_name(tmp_path):
    (tmp_path / "wide.yaml").write_text("experiment: something_else\nmodel:\n  base_channels: 16\n")
    config = command_line_config(name="s", experiments={"wide": [str(tmp_path / "wide.yaml"), {"model": {"depth": 2}}]})
    wide = runs_of(config)["wide"]["wide"]
    assert (wide["experiment"], wide["model"]["base_channels"], wide["model"]["depth"]) == ("wide", 16, 2)


@pytest.mark.parametrize(
    "study, message",
    [
        (
            {"name": "s", "experiments": {"a": "missing.yaml"}},
            r"experiment 'a': cannot read the config file 'missing.yaml'",
        ),
        (
            {"name": "s", "experiments": {"a": {}}, "reference": "b"},
            r"study.reference 'b' is not one of its experiments",
        ),
        ({"name": "s", "experiments": {"a": {"experiment": "x"}}}, r"experiment 'a': sets 'experiment'"),
        ({"name": "s", "experiments": {"studies": {}}}, r"'studies' cannot name an experiment"),
        ({"name": "s"}, r"no experiments"),
        ({"experiments": {"a": {}}}, r"study.name is empty"),
        ({"name": "s", "experiments": {"depth-2": {}}, "grid": {"model.depth": [2]}}, r"'depth-2' is also listed"),
    ],
    ids=["missing-file", "reference", "experiment-key", "reserved", "empty", "unnamed", "grid-clash"],
)
def test_bad_studies_fail_clearly(study, message):
    with pytest.raises(InputError, match=message):
        runs_of(command_line_config(**study))


def test_repeat_names_that_clash_with_an_experiment_are_refused():
    config = command_line_config(name="s", experiments={"a": {}, "a_repeat1": {}})
    config["cv"]["repeats"] = 2
    with pytest.raises(InputError, match=r"share the results folder of \['a_repeat1'\]"):
        runs_of(config)


@pytest.mark.parametrize("name", ["example", "smoke", "budget", "budget-confirm"])
def test_shipped_studies_expand_into_valid_experiments(name, monkeypatch):
    monkeypatch.chdir(REPO)  # their config files are named relative to the checkout
    with open(REPO / "config" / "studies" / f"{name}.yaml") as handle:
        config = command_line_config(**yaml.safe_load(handle)["study"])
    runs = runs_of(config)
    assert config["study"]["reference"] in runs and len(runs) >= 2
    if name == "example":
        seed = runs["example-seed"]["example-seed"]
        assert (seed["model"]["base_channels"], seed["train"]["steps"], seed["train"]["crop_size"]) == (64, 15, 512)
        assert runs["example-depth5"]["example-depth5"]["train"]["steps"] == 150
        assert all(run[name]["data"]["test_images"] == [] for name, run in runs.items())
    if name == "budget":
        border = runs["budget-border"]["budget-border"]["train"]["loss"]
        assert (border["border_weight"], border["border_sigma_px"]) == (10, 5)
        assert runs["budget-default"]["budget-default"]["train"]["loss"]["border_weight"] == 0
    if name == "budget-confirm":
        # Repeat 0 is budget.yaml's budget-default (same recipe), repeat 1 trains with seed 1.
        assert set(runs["budget-default"]) == {"budget-default", "budget-default_repeat1"}
        assert runs["budget-default"]["budget-default_repeat1"]["seed"] == 1
        assert runs["budget-tta8"]["budget-tta8_repeat1"]["predict"]["tta"] == 8
    if name.startswith("budget"):
        # Pinned to the default of the day they ran, so that they run again as they ran.
        assert runs["budget-default"]["budget-default"]["predict"]["tta"] == 4


# --- statistics ---------------------------------------------------------------------------


def test_holm_matches_the_step_down_by_hand():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> running maximum 0.03, 0.06, 0.06.
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])


def test_wilcoxon_matches_scipy_and_the_exact_distribution():
    differences = np.array([0.012, -0.004, 0.021, 0.008, 0.015, -0.002, 0.009, 0.030, 0.005, 0.011])
    assert wilcoxon_p(differences) == pytest.approx(stats.wilcoxon(differences).pvalue)
    # Ten positive differences: only 1 of the 2**10 sign patterns is as extreme, each side.
    assert wilcoxon_p(np.arange(1, 11) / 100) == pytest.approx(2 / 1024)
    assert wilcoxon_p(np.zeros(5)) == 1.0


def test_bootstrap_interval_matches_scipys_percentile_bootstrap():
    rng = np.random.default_rng(3)
    differences = rng.normal(0.01, 0.02, 30)
    ours = bootstrap_interval(differences, 20000, seed=0)
    theirs = stats.bootstrap(
        (differences,), np.mean, n_resamples=20000, method="percentile", random_state=np.random.default_rng(1)
    ).confidence_interval
    spread = differences.std() / np.sqrt(len(differences))
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.05 * spread)
    assert ours[0] < differences.mean() < ours[1]
    assert bootstrap_interval(differences, 2000, seed=5) == bootstrap_interval(differences, 2000, seed=5)


def per_slice_table(scores: dict[str, np.ndarray], folds: int = 2) -> pd.DataFrame:
    slices = len(next(iter(scores.values())))
    table = pd.DataFrame({"slice": np.arange(slices), "fold": np.arange(slices) * folds // slices})
    for column in SCORE_COLUMNS:
        table[column] = scores.get(column, np.full(slices, 0.5))
    for count in COUNT_COLUMNS:
        table[count] = 100
    return table


def test_comparisons_are_paired_by_slice_averaged_over_repeats_and_holm_corrected():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.7, 0.8, 12)
    shift = np.linspace(0.0, 0.04, 12)
    reference = [per_slice_table({"membrane_dice": base}), per_slice_table({"membrane_dice": base + 0.01})]
    better = [per_slice_table({"membrane_dice": base + shift}), per_slice_table({"membrane_dice": base + shift + 0.01})]
    same = [per_slice_table({"membrane_dice": base + 0.005}), per_slice_table({"membrane_dice": base + 0.005})]
    experiments, comparisons = compare_experiments(
        {"ref": reference, "better": better, "same": same},
        {"ref": [60, 62], "better": [120, 120], "same": [60, 60]},
        reference="ref",
        samples=2000,
        seed=0,
    )
    assert experiments.experiment.tolist() == ["ref", "better", "same"]
    assert experiments.set_index("experiment").loc["better", "training_minutes"] == pytest.approx(2.0)
    assert experiments.set_index("experiment").loc["ref", "membrane_dice_mean"] == pytest.approx(base.mean() + 0.005)
    dice = comparisons[comparisons.score == "membrane_dice"].set_index("experiment")
    assert dice.loc["better", "difference"] == pytest.approx(shift.mean())
    assert dice.loc["better", "wilcoxon_p"] == pytest.approx(stats.wilcoxon(shift).pvalue)
    assert dice.loc["same", "difference"] == pytest.approx(0.0, abs=1e-12)
    assert dice.loc["same", "wilcoxon_p"] == 1.0
    changes = dice[dice.kind == "change"]
    assert changes.holm_p.tolist() == pytest.approx(holm(changes.wilcoxon_p).tolist())
    # The reference's repeat 1 against its repeat 0: what the seed alone changes.
    noise = dice[dice.kind == "seed noise"]
    assert noise.difference.tolist() == pytest.approx([0.01]) and noise.holm_p.isna().all()
    assert (dice.loc["better", "verdict"], dice.loc["same", "verdict"], noise.verdict.iloc[0]) == (
        "better",
        "no clear difference",
        "",
    )
    assert set(comparisons.score) == set(STUDY_SCORES)


def test_experiments_scored_on_other_slices_are_not_compared():
    table = per_slice_table({"membrane_dice": np.full(6, 0.8)})
    other = copy.deepcopy(table).assign(slice=np.arange(6) + 1)
    with pytest.raises(ValueError, match="not scored on the same slices"):
        compare_experiments({"a": [table], "b": [other]}, {"a": [1.0], "b": [1.0]}, "a", 100, 0)


# --- a smoke study, end to end ------------------------------------------------------------


def planned_runs(dry_run_output: str) -> set[tuple[str, str]]:
    """(rule, experiment or study) of every job of a dry run."""
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        rule = re.match(r"(?:local)?rule (\w+):", block.strip())
        if rule:
            wildcards = re.search(r"wildcards: (.*)", block)
            jobs.add((rule.group(1), wildcards.group(1) if wildcards else ""))
    return jobs


def test_a_two_experiment_study_runs_end_to_end(isbi_dir, tmp_path):
    # A folder of its own: the study's experiments and files stay out of the smoke run's.
    (tmp_path / "shared").symlink_to(isbi_dir.parent, target_is_directory=True)
    work = copy_workflow(tmp_path / "work")
    result = snakemake(work, "--configfile", "config/studies/smoke.yaml")
    assert result.returncode == 0, result.stderr[-4000:]
    study = work / "results/studies/smoke"
    experiments = pd.read_csv(study / "experiments.tsv", sep="\t")
    assert experiments.experiment.tolist() == ["smoke_a", "smoke_b"]
    # Training minutes: the folds' wall seconds, from the metadata beside each model.
    for name, minutes in zip(experiments.experiment, experiments.training_minutes, strict=True):
        records = [json.loads((work / f"results/{name}/models/fold{k}.json").read_text()) for k in (0, 1)]
        assert [r["fold"] for r in records] == [0, 1]
        assert minutes == pytest.approx(sum(r["wall_seconds"] for r in records) / 60, rel=1e-5)
    comparisons = pd.read_csv(study / "comparisons.tsv", sep="\t")
    assert comparisons.experiment.tolist() == ["smoke_b"] * len(STUDY_SCORES) and (comparisons.slices == 30).all()
    assert (work / "results/smoke_a/folds.tsv").read_text() == (work / "results/smoke_b/folds.tsv").read_text()
    a = pd.read_csv(work / "results/smoke_a/metrics/per_slice.tsv", sep="\t")
    b = pd.read_csv(work / "results/smoke_b/metrics/per_slice.tsv", sep="\t")
    dice = comparisons.set_index("score").loc["membrane_dice", "difference"]
    assert dice == pytest.approx((b.membrane_dice - a.membrane_dice).mean(), abs=1e-5)
    html = (study / "report.html").read_text()
    assert 'href="../../smoke_a/report.html"' in html and 'href="../../smoke_b/report.html"' in html
    assert "elastic_probability: 0" in html  # what smoke_b changes
    assert html.count("data:image/png;base64,") == 2

    # A third experiment reruns its own jobs and the study's, nothing of the first two.
    study_file = yaml.safe_load((work / "config/studies/smoke.yaml").read_text())
    study_file["study"]["experiments"]["smoke_c"] = {"train": {"steps": 20}}
    (work / "three.yaml").write_text(yaml.safe_dump(study_file))
    dry = snakemake(work, "--configfile", "three.yaml", "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = planned_runs(dry.stdout)
    study_rules = {"compare_experiments", "draw_study_figures", "render_study_report", "all"}
    assert {rule for rule, _ in jobs} >= study_rules | {"train_unet", "evaluate", "render_report"}
    assert [job for job in jobs if job[0] not in study_rules and "experiment=smoke_c" not in job[1]] == []

    # A second repeat runs every experiment again under <experiment>_repeat1.
    (work / "repeats.yaml").write_text("cv:\n  repeats: 2\n")
    dry = snakemake(work, "--configfile", "config/studies/smoke.yaml", "repeats.yaml", "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = planned_runs(dry.stdout)
    trained = {wildcards for rule, wildcards in jobs if rule == "train_unet"}
    assert trained == {f"experiment={name}_repeat1, fold={k}" for name in ("smoke_a", "smoke_b") for k in (0, 1)}
    # Repeat 0's reports show the config, cv.repeats included: only they are rendered again.
    again = {("render_report", "experiment=smoke_a"), ("render_report", "experiment=smoke_b")}
    assert [job for job in jobs - again if job[0] not in study_rules and "_repeat1" not in job[1]] == []
