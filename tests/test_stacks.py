"""Reading, validating and unpacking stacks: the real ISBI data and generated odd cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cellseg.errors import InputError
from cellseg.stackio import read_source
from cellseg.stacks import binary_labels, normalise_images, pixel_sha256, unpack

ISBI_SHA256 = {
    "train-volume.tif": "200da3d452d726e6c9ca1ce04b869d4edb727320d23b516d01cce707dc8c4760",
    "train-labels.tif": "a7cb64000a1a7e542682927e19c91339f58f9f178e0bcce4e207371116f0ca36",
    "test-volume.tif": "1b58fa7ec1d0ff9d39a855622db3ff66a97863036339b0d04be51b2f5a99b0e9",
}

# The schema's default percentiles of the percentile normalisation.
PERCENTILES = (1.0, 99.8)


@pytest.mark.parametrize("name", sorted(ISBI_SHA256))
def test_isbi_pixel_hashes_match_the_readme(isbi_dir, name):
    stack = read_source(isbi_dir / name).pixels
    assert stack.shape == (30, 512, 512) and stack.dtype == np.uint8
    assert pixel_sha256(stack) == ISBI_SHA256[name]


def fetched(folder, name, array):
    """A fetched stack as fetch_stack leaves it: the .npy and its record."""
    np.save(folder / f"{name}.npy", array)
    record = {
        "source": f"/data/{name}.tif",
        "voxel_size": {"z": 0.05, "y": 0.004, "x": 0.004, "unit": "micron"},
        "notes": [f"{name} note"],
        "warnings": [],
    }
    (folder / f"{name}.json").write_text(json.dumps(record))
    return folder / f"{name}.npy", folder / f"{name}.json"


def test_unpack_isbi_training_stack(isbi_dir, tmp_path):
    raw = read_source(isbi_dir / "train-volume.tif").pixels
    raw_labels = read_source(isbi_dir / "train-labels.tif").pixels
    images_npy, images_json = fetched(tmp_path, "images", raw)
    labels_npy, labels_json = fetched(tmp_path, "labels", raw_labels)
    out = {name: tmp_path / name for name in ("i.npy", "l.npy", "slices.tsv", "record.json")}
    manifest = unpack(
        {"images": images_npy, "images_record": images_json, "labels": labels_npy, "labels_record": labels_json},
        {"images": out["i.npy"], "labels": out["l.npy"], "manifest": out["slices.tsv"], "record": out["record.json"]},
        {"normalization": "percentile", "percentiles": [1, 99.8], "label_cell_value": None},
    )
    images, labels = np.load(out["i.npy"]), np.load(out["l.npy"])
    low, high = np.percentile(raw, (1, 99.8))
    assert images.dtype == np.float32 and images.shape == (30, 512, 512)
    assert np.allclose(images, (raw - low) / (high - low), atol=1e-6)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    # ../shared/isbi2012/README.md: 255 = cell interior, about 78 % of the training pixels.
    assert np.array_equal(labels == 1, raw_labels == 255)
    assert 0.75 < labels.mean() < 0.81
    pd.testing.assert_frame_equal(pd.read_csv(out["slices.tsv"], sep="\t"), manifest, rtol=1e-5)
    assert manifest.slice.tolist() == list(range(30))
    record = json.loads(out["record.json"].read_text())
    assert record["normalisation"]["method"] == "percentile" and record["normalisation"]["low"] == low
    assert record["voxel_size"]["z"] == 0.05 and record["notes"] == ["images note", "labels note"]
    assert record["sources"] == {"images": "/data/images.tif", "labels": "/data/labels.tif"}


def test_unpack_without_labels(tmp_path):
    images_npy, images_json = fetched(tmp_path, "images", np.arange(2 * 9 * 9, dtype=np.uint16).reshape(2, 9, 9))
    manifest = unpack(
        {"images": images_npy, "images_record": images_json},
        {"images": tmp_path / "t.npy", "manifest": tmp_path / "t.tsv", "record": tmp_path / "t.json"},
        {"normalization": "mean_std", "percentiles": [1, 99.8]},
    )
    images = np.load(tmp_path / "t.npy")
    assert abs(images.mean()) < 1e-6 and abs(images.std() - 1) < 1e-5
    assert manifest.cell_fraction.isna().all() and "cell_fraction" not in json.loads((tmp_path / "t.json").read_text())


@pytest.mark.parametrize("method", ["percentile", "mean_std"])
def test_the_same_sample_stored_as_uint8_uint16_or_float_normalises_the_same(method):
    sample = np.random.default_rng(0).integers(43, 199, (3, 40, 50)).astype(np.uint8)
    results = [
        normalise_images(stored, "s.tif", method, PERCENTILES)[0]
        for stored in (sample, sample.astype(np.uint16), (sample / 255).astype(np.float32), sample.astype(np.int16))
    ]
    for other in results[1:]:
        assert np.abs(other - results[0]).max() < 1e-5


def test_dtype_range_keeps_the_old_scaling_and_shows_why_it_is_not_the_default():
    sample = np.full((1, 2, 2), 100, np.uint8)
    sample[0, 0, 0] = 200
    as8 = normalise_images(sample, "s.tif", "dtype_range", PERCENTILES)[0]
    as16 = normalise_images(sample.astype(np.uint16), "s.tif", "dtype_range", PERCENTILES)[0]
    assert as8.max() == pytest.approx(200 / 255) and as16.max() == pytest.approx(200 / 65535)


@pytest.mark.parametrize("encoding", [(0, 1), (0, 255), (False, True)])
def test_label_encodings(encoding):
    raw = np.array([[[encoding[0], encoding[1]], [encoding[1], encoding[1]]]])
    assert binary_labels(raw, "l.tif").tolist() == [[[0, 1], [1, 1]]]


def test_labels_with_the_membrane_as_foreground_are_refused_with_the_convention_and_the_key():
    # Boundary-style labels: 255 = membrane, about 22 % of the pixels as in ISBI.
    membrane = np.random.default_rng(0).random((2, 30, 30)) < 0.22
    labels = (membrane * 255).astype(np.uint8)
    with pytest.raises(InputError) as raised:
        binary_labels(labels, "boundaries.tif")
    message = str(raised.value)
    assert "boundaries.tif" in message and "0 = membrane" in message and "data.label_cell_value" in message
    assert f"{100 * membrane.mean():.1f} %" in message
    # With the convention declared, the cell class is the stored 0.
    assert np.array_equal(binary_labels(labels, "boundaries.tif", cell_value=0), ~membrane)


def test_a_declared_cell_value_must_be_one_of_the_two_values():
    with pytest.raises(InputError, match="label_cell_value = 2"):
        binary_labels(np.array([[[0, 1, 1]]], np.uint8), "l.tif", cell_value=2)


@pytest.mark.parametrize(
    "array, kind, message",
    [
        (np.full((2, 4, 4), np.nan, np.float32), "images", "NaN or infinite"),
        (np.full((2, 4, 4), 7, np.uint8), "images", "no contrast"),
        (np.full((2, 4, 4), 255, np.uint8), "labels", "single label value"),
        (np.arange(32, dtype=np.uint8).reshape(2, 4, 4) % 3, "labels", "label values {0, 1, 2}"),
        (np.array([[[0, 128]]], np.uint8), "labels", "label values {0, 128}"),
    ],
)
def test_bad_stacks_are_refused_naming_the_file(array, kind, message):
    with pytest.raises(InputError) as raised:
        if kind == "labels":
            binary_labels(array, "/data/bad.tif")
        else:
            normalise_images(array, "/data/bad.tif", "percentile", PERCENTILES)
    assert message in str(raised.value) and "/data/bad.tif" in str(raised.value)


def test_a_stack_far_outside_the_training_range_is_warned_about():
    sample = np.random.default_rng(0).integers(43, 199, (2, 30, 30)).astype(np.uint8)
    trained = normalise_images(sample, "train.tif", "dtype_range", PERCENTILES)[1]
    dark = normalise_images(sample.astype(np.uint16), "test.tif", "dtype_range", PERCENTILES)[1]
    assert "far outside the training stack's intensities" in trained.mismatch(dark)
    assert trained.mismatch(normalise_images(sample, "test.tif", "dtype_range", PERCENTILES)[1]) is None
    # Percentile normalisation maps both to the same range: nothing to warn about.
    trained = normalise_images(sample, "train.tif", "percentile", PERCENTILES)[1]
    assert (
        trained.mismatch(normalise_images(sample.astype(np.uint16) * 200, "test.tif", "percentile", PERCENTILES)[1])
        is None
    )
