"""Reading, validating and unpacking stacks: the real ISBI data and generated odd cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellseg.errors import InputError
from cellseg.stacks import binary_labels, pixel_sha256, read_stack, scale_images, unpack
from conftest import make_stacks, write_stack

ISBI_SHA256 = {
    "train-volume.tif": "200da3d452d726e6c9ca1ce04b869d4edb727320d23b516d01cce707dc8c4760",
    "train-labels.tif": "a7cb64000a1a7e542682927e19c91339f58f9f178e0bcce4e207371116f0ca36",
    "test-volume.tif": "1b58fa7ec1d0ff9d39a855622db3ff66a97863036339b0d04be51b2f5a99b0e9",
}


@pytest.mark.parametrize("name", sorted(ISBI_SHA256))
def test_isbi_pixel_hashes_match_the_readme(isbi_dir, name):
    stack = read_stack(isbi_dir / name)
    assert stack.shape == (30, 512, 512) and stack.dtype == np.uint8
    assert pixel_sha256(stack) == ISBI_SHA256[name]


def test_unpack_isbi_training_stack(isbi_dir, tmp_path):
    out = {name: tmp_path / name for name in ("images.npy", "labels.npy", "slices.tsv")}
    manifest = unpack(
        isbi_dir / "train-volume.tif", isbi_dir / "train-labels.tif",
        out["images.npy"], out["labels.npy"], out["slices.tsv"],
    )
    images, labels = np.load(out["images.npy"]), np.load(out["labels.npy"])
    raw = read_stack(isbi_dir / "train-volume.tif")
    assert images.dtype == np.float32 and images.shape == (30, 512, 512)
    assert np.array_equal(images * 255, raw.astype(np.float32))
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    # The README: 255 = cell interior, about 78 % of the training pixels.
    assert np.array_equal(labels == 1, read_stack(isbi_dir / "train-labels.tif") == 255)
    assert 0.75 < labels.mean() < 0.81
    pd.testing.assert_frame_equal(pd.read_csv(out["slices.tsv"], sep="\t"), manifest, rtol=1e-5)
    assert manifest.slice.tolist() == list(range(30))


def test_unpack_odd_sized_uint16_with_01_labels_and_no_test_labels(tmp_path):
    images_path, labels_path = make_stacks(tmp_path, slices=7, height=37, width=45)
    manifest = unpack(images_path, labels_path, tmp_path / "i.npy", tmp_path / "l.npy", tmp_path / "m.tsv")
    images, labels = np.load(tmp_path / "i.npy"), np.load(tmp_path / "l.npy")
    assert images.shape == labels.shape == (7, 37, 45)
    assert np.allclose(images, read_stack(images_path) / 65535.0)
    assert np.array_equal(labels, read_stack(labels_path))
    assert manifest.height.eq(37).all() and manifest.width.eq(45).all()
    unlabelled = unpack(images_path, None, tmp_path / "t.npy", None, tmp_path / "t.tsv")
    assert unlabelled.cell_fraction.isna().all() and not (tmp_path / "l2.npy").exists()


def test_float_images_in_unit_range_are_kept():
    stack = np.linspace(0, 1, 2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    scaled = scale_images(stack, "f.tif")
    assert scaled.dtype == np.float32 and np.allclose(scaled, stack)


@pytest.mark.parametrize("encoding", [(0, 1), (0, 255), (False, True)])
def test_label_encodings(encoding):
    raw = np.array([[[encoding[0], encoding[1]], [encoding[1], encoding[1]]]])
    assert binary_labels(raw, "l.tif").tolist() == [[[0, 1], [1, 1]]]


@pytest.mark.parametrize(
    "array, kind, message",
    [
        (np.zeros((2, 4, 4, 3), np.uint8), "images", "colour"),
        (np.full((2, 4, 4), np.nan, np.float32), "images", "NaN or infinite"),
        (np.full((2, 4, 4), 2.0, np.float32), "images", "must lie in [0, 1]"),
        (np.zeros((2, 4, 4), np.int16), "images", "stores pixels as int16"),
        (np.full((2, 4, 4), 255, np.uint8), "labels", "single label value"),
        (np.arange(32, dtype=np.uint8).reshape(2, 4, 4) % 3, "labels", "label values {0, 1, 2}"),
        (np.array([[[0, 128]]], np.uint8), "labels", "label values {0, 128}"),
    ],
)
def test_bad_stacks_are_refused_naming_the_file(tmp_path, array, kind, message):
    path = write_stack(tmp_path / "bad.tif", array)
    with pytest.raises(InputError) as raised:
        stack = read_stack(path)
        (binary_labels if kind == "labels" else scale_images)(stack, path)
    assert message in str(raised.value) and str(path) in str(raised.value)


def test_unreadable_files_are_refused(tmp_path):
    images_path, _ = make_stacks(tmp_path)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(images_path.read_bytes()[:-500])
    text = tmp_path / "notes.tif"
    text.write_text("not a tiff")
    for path, message in [
        (truncated, "could not be read as a TIFF stack"),
        (text, "could not be read as a TIFF stack"),
        (tmp_path / "absent.tif", "no such file"),
        (write_stack(tmp_path / "flat.tif", np.zeros((4, 4), np.uint8)), "a single 2-D image"),
        (write_stack(tmp_path / "empty.tif", np.zeros((0, 4, 4), np.uint8)), "empty stack|could not be read"),
    ]:
        with pytest.raises(InputError, match=message):
            read_stack(path)


def test_images_and_labels_of_different_shapes(tmp_path):
    images_path, _ = make_stacks(tmp_path / "a", height=20)
    _, labels_path = make_stacks(tmp_path / "b", height=21)
    with pytest.raises(InputError, match="differ in shape") as raised:
        unpack(images_path, labels_path, tmp_path / "i.npy", tmp_path / "l.npy", tmp_path / "m.tsv")
    assert str(images_path) in str(raised.value) and str(labels_path) in str(raised.value)
    assert not (tmp_path / "i.npy").exists()
