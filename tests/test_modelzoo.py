"""Sharing trained models: the bioimage.io package, checked by bioimageio.core itself."""

from __future__ import annotations

import importlib.util
import shutil
import zipfile

import numpy as np
import pytest
import tifffile
import torch
import yaml

from cellseg.errors import InputError
from cellseg.inference import FoldEnsemble
from cellseg.model import Ensemble, UNet
from cellseg.modelzoo import (
    check_sharing_config,
    package_ensemble,
    torchscript,
    validate_package,
)
from conftest import REPO, require, snakemake

SHARING = {"name": "", "description": "", "authors": ["Ada Lovelace"], "license": "CC-BY-4.0", "cite": []}


@pytest.fixture(scope="module")
def package(isbi_run):
    # scripts/setup.sh installs the bioimageio extra: missing, it fails on CI, skips elsewhere.
    require(importlib.util.find_spec("bioimageio.core") is not None, "bioimageio.core is not installed")
    work, _ = isbi_run
    done = snakemake(work, "results/smoke/bioimageio/smoke.zip", "--configfile", "config/smoke.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    return work, work / "results/smoke/bioimageio/smoke.zip"


def test_the_package_passes_bioimageio_cores_model_test(package):
    work, path = package
    passed, summary = validate_package(path)
    assert passed, summary
    assert "Reproduce test outputs from test inputs (torchscript)" in summary
    assert "Reproduce test outputs from test inputs (pytorch_state_dict)" in summary
    assert "passed" in (work / "results/smoke/bioimageio/validation.md").read_text()


def test_the_description_says_what_the_run_was(package):
    _work, path = package
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        readme = archive.read("README.md").decode()
    assert {
        "rdf.yaml",
        "weights.pt",
        "weights.torchscript.pt",
        "cellseg_model.py",
        "input.npy",
        "output.npy",
        "cover.png",
        "README.md",
        "config.yaml",
    } <= names
    assert rdf["format_version"].startswith("0.5")
    assert rdf["name"] == "cellseg smoke" and rdf["license"] == "CC-BY-4.0"
    assert [a["name"] for a in rdf["authors"]] == ["cellseg user"]
    assert {c["doi"] for c in rdf["cite"]} >= {"10.1007/978-3-319-24574-4_28", "10.3389/fnana.2015.00142"}
    raw = rdf["inputs"][0]
    assert [a.get("id", a["type"]) for a in raw["axes"]] == ["batch", "channel", "y", "x"]
    assert raw["axes"][2]["size"] == {"min": 4, "step": 1}  # smoke: depth 2, any size from 2**2
    scale = next(p for p in raw["preprocessing"] if p["id"] == "scale_range")["kwargs"]
    assert (scale["min_percentile"], scale["max_percentile"]) == (1.0, 99.8)
    assert rdf["outputs"][0]["data"]["range"] == [0.0, 1.0]
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "Ensemble"
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]["tta"] == 2
    assert "membrane Dice" in readme and "95 % interval" in readme


@pytest.mark.parametrize("weight_format", ["torchscript", "pytorch_state_dict"])
def test_the_package_predicts_the_test_slice_as_the_pipeline_does(package, isbi_dir, weight_format):
    work, path = package
    section = tifffile.imread(isbi_dir / "test-volume.tif", key=0)
    import bioimageio.core as bioimageio_core

    model = bioimageio_core.load_model_description(path)
    pipeline = bioimageio_core.create_prediction_pipeline(model, weight_format=weight_format)
    ensemble = FoldEnsemble.from_run(work / "results/smoke")
    whole = {**ensemble.records[0].config["predict"], "tile_size": 512, "precision": "fp32", "channels_last": False}
    ensemble = FoldEnsemble.from_run(work / "results/smoke", whole)
    # The ISBI test slice, and an odd-sized crop the UNet pads to a multiple of 2**depth itself.
    for raw in (section, section[:301, 7:210]):
        sample = bioimageio_core.predict(model=pipeline, inputs=raw[None, None].astype(np.float32))
        shared = next(iter(sample.members.values())).data.values[0, 0]
        own = ensemble.predict_raw(raw)
        assert shared.shape == own.shape == raw.shape
        assert np.abs(shared - own).mean() < 1e-3


def test_the_torchscript_ensemble_equals_the_eager_one():
    folds = [
        {"depth": 2, "base_channels": 4, "norm": "batch", "mean": 0.5, "std": 0.2},
        {"depth": 2, "base_channels": 4, "norm": "batch", "mean": 0.4, "std": 0.3},
    ]
    torch.manual_seed(0)
    ensemble = Ensemble(folds, tta=4).eval()
    x = torch.rand(2, 1, 40, 36)  # not a multiple of 4: padded inside, cropped back
    with torch.no_grad():
        expected = ensemble(x)
        assert torch.equal(torchscript(ensemble)(x), expected)
        by_hand = torch.zeros_like(x)
        # tta 4: identity, flip x, flip y, both; flips are their own inverses
        variants = [lambda t: t, lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.flip(-1).flip(-2)]
        for net, fold in zip(ensemble.nets, folds, strict=True):
            standard = (x - fold["mean"]) / fold["std"]
            by_hand += sum(flip(torch.sigmoid(net(flip(standard)))) for flip in variants)
    assert torch.allclose(expected, by_hand / 8, atol=1e-6)
    assert isinstance(ensemble.nets[0], UNet)


@pytest.mark.parametrize(("key", "value"), [("authors", []), ("authors", ["  "]), ("license", "")])
def test_an_empty_author_list_or_license_is_refused_naming_the_key(key, value):
    with pytest.raises(InputError, match=f"bioimageio.{key} is empty"):
        check_sharing_config({**SHARING, key: value})


@pytest.mark.parametrize(("key", "value"), [("license", "my-license"), ("name", "Fly VNC v1.0 / ISBI")])
def test_what_the_spec_rejects_is_refused_naming_the_key(key, value):
    with pytest.raises(InputError, match=f"bioimageio.{key} .*'{value}'"):
        check_sharing_config({**SHARING, key: value})


def test_no_models_are_refused():
    with pytest.raises(InputError, match="No trained models"):
        package_ensemble([], tta=1, side=256)


@pytest.mark.parametrize(
    ("setting", "message"),
    [("authors: []", "bioimageio.authors"), ("license: my-license", "bioimageio.license is 'my-license'")],
)
def test_a_bad_key_is_refused_before_any_job_and_the_earlier_package_is_kept(package, tmp_path, setting, message):
    work, _ = package
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)  # the run's ../shared link stays relative
    (tmp_path / "shared").symlink_to((work.parent / "shared").resolve(), target_is_directory=True)
    (copy / "bad.yaml").write_text(f"bioimageio:\n  {setting}\n")
    package_path = copy / "results/smoke/bioimageio/smoke.zip"
    before = package_path.read_bytes()
    target = str(package_path.relative_to(copy))
    done = snakemake(copy, target, "--forcerun", "export_bioimageio", "--configfile", "config/smoke.yaml", "bad.yaml")
    assert done.returncode != 0
    assert message in done.stderr
    assert package_path.read_bytes() == before
    assert not list(package_path.parent.glob("*.staging"))


def test_a_network_of_affinities_is_packaged_with_its_channels_and_its_post_processing(tmp_path):
    require(importlib.util.find_spec("bioimageio.core") is not None, "bioimageio.core is not installed")
    import pandas as pd

    from cellseg.config import SCHEMA_PATH, load_config
    from cellseg.modelzoo import export_package
    from cellseg.scores import SCORE_COLUMNS
    from cellseg.stacks import intensity_record
    from test_predict import save_model

    offsets = [[-1, 0], [0, -1], [-3, 0], [0, -3]]
    model = save_model(tmp_path / "fold0.pt", output="affinities", offsets=offsets)
    stack = np.random.default_rng(0).integers(0, 255, (4, 64, 64)).astype(np.uint8)
    # The training stack's normalisation, as a trained model records it.
    payload = torch.load(model, weights_only=True)
    payload["input"] = {
        **payload["input"],
        "normalisation": intensity_record(stack, "s", "percentile", (1, 99.8)).to_json(),
    }
    torch.save(payload, model)
    config = load_config([REPO / "config/config.yaml", REPO / "config/smoke.yaml"], SCHEMA_PATH)
    config["model"] |= {"output": "affinities", "offsets": offsets}
    config["segment"]["method"] = "mutex"
    config["bioimageio"] |= {"authors": ["Ada Lovelace"]}
    pd.DataFrame({"slice": range(4), "fold": [0, 0, 1, 1]}).to_csv(tmp_path / "folds.tsv", sep="\t", index=False)
    summary = pd.DataFrame({"metric": SCORE_COLUMNS, "mean": 0.5, "ci95_low": 0.4, "ci95_high": 0.6, "folds": 2})
    summary.to_csv(tmp_path / "summary.tsv", sep="\t", index=False)
    thresholds = pd.DataFrame({"fold": ["0", "all"], "method": "mutex", "merge_threshold": [0.4, 0.45]})
    thresholds.to_csv(tmp_path / "cell_thresholds.tsv", sep="\t", index=False)
    run_files = {
        "folds": tmp_path / "folds.tsv",
        "thresholds": tmp_path / "cell_thresholds.tsv",
        "summary": tmp_path / "summary.tsv",
        "architecture": REPO / "workflow/cellseg/model.py",
    }
    result = export_package([model], stack, run_files, config, tmp_path / "aff.zip")
    assert "passed" in result["validation"]
    with zipfile.ZipFile(tmp_path / "aff.zip") as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        readme = archive.read("README.md").decode()
        expected = np.load(archive.open("output.npy"))
    channels = next(axis for axis in rdf["outputs"][0]["axes"] if axis["type"] == "channel")["channel_names"]
    assert channels == ["cell", "affinity_m1_0", "affinity_0_m1", "affinity_m3_0", "affinity_0_m3"]
    assert expected.shape[:2] == (1, 5)
    assert "mutex watershed" in readme and "cellseg.selection.run_recipe" in readme
    assert "merge threshold 0.45, chosen on the run's held-out slices" in readme
