"""Fetching stacks from local paths and from an HTTP server on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cellseg.errors import InputError
from cellseg.fetch import fetch_stack
from cellseg.stackio import read_source
from cellseg.stacks import pixel_sha256
from conftest import closed_port_url, make_stacks, write_stack


def fetch(sources, destination, kind, sha256, options, **network):
    """``fetch_stack`` of the spec these name, as ``datasets.fetch_spec`` makes it: the
    data section's reading options at the schema's defaults unless ``options`` says."""
    reading = {"normalization": "percentile", "percentiles": [1.0, 99.8], **options}
    spec = {"sources": sources, "kind": kind, "sha256": sha256, "options": reading}
    return fetch_stack(spec, destination, network.pop("record", None), network["timeout"], network["retries"])


@pytest.fixture()
def served_hash(stack_server, tmp_path):
    images, _ = make_stacks(tmp_path)  # same seed as the served files
    return pixel_sha256(read_source(images).pixels)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_download_verifies_pixels_and_names_the_source(stack_server, served_hash, tmp_path, caplog):
    caplog.set_level("INFO")
    url = f"{stack_server.url}/files/images.tif"
    destination = tmp_path / "out" / "train_images.npy"
    record = tmp_path / "out" / "train_images.json"
    provenance = fetch([url], destination, "images", {url: served_hash}, {}, timeout=5, retries=0, record=record)
    unknown = {"z": None, "y": None, "x": None, "unit": None}
    assert provenance == {
        "source": url,
        "sha256": served_hash,
        "verified": True,
        "shape": [6, 37, 45],
        "dtype": "uint16",
        "voxel_size": unknown,
        "notes": [],
        "warnings": [],
        "files": {},  # a download: no local file to watch
    }
    assert json.loads(record.read_text()) == provenance
    assert pixel_sha256(np.load(destination)) == served_hash
    assert f"fetched images from {url}" in caplog.text and "verified" in caplog.text
    assert leftovers(destination.parent) == []


def test_sources_are_tried_in_order_past_missing_files_and_http_errors(stack_server, served_hash, tmp_path, caplog):
    caplog.set_level("INFO")
    sources = [
        str(tmp_path / "absent.tif"),
        f"{stack_server.url}/files/nothing.tif",
        closed_port_url(),
        f"{stack_server.url}/files/labels.tif",
    ]
    provenance = fetch(sources, tmp_path / "labels.tif", "labels", {}, {}, timeout=5, retries=1)
    assert provenance["source"] == sources[-1] and not provenance["verified"]
    assert stack_server.hits["/files/nothing.tif"] == 1  # a 404 is not retried
    assert "no expected hash" in caplog.text


def test_a_dropped_connection_is_retried(stack_server, served_hash, tmp_path):
    url = f"{stack_server.url}/flaky/images.tif"
    fetch([url], tmp_path / "i.tif", "images", {url: served_hash}, {}, timeout=5, retries=2)
    assert stack_server.hits["/flaky/images.tif"] == 2


def test_every_source_failing_names_each_and_leaves_no_file(stack_server, tmp_path):
    sources = [
        closed_port_url(),
        f"{stack_server.url}/missing.tif",
        f"{stack_server.url}/drop/images.tif",
        f"{stack_server.url}/slow/images.tif",
    ]
    destination = tmp_path / "i.tif"
    with pytest.raises(InputError) as raised:
        fetch(sources, destination, "images", {}, {}, timeout=0.5, retries=1)
    message = str(raised.value)
    assert "No source of the images stack" in message
    assert "Connection refused" in message and "HTTP 404" in message
    assert "connection closed after" in message and "timed out" in message
    assert stack_server.hits["/drop/images.tif"] == 2
    assert not destination.exists() and leftovers(tmp_path) == []


def test_a_hash_mismatch_shows_both_hashes_and_keeps_the_old_file(stack_server, served_hash, tmp_path):
    url = f"{stack_server.url}/files/images.tif"
    destination = tmp_path / "i.tif"
    destination.write_bytes(b"an earlier result")
    wrong = "0" * 64
    with pytest.raises(InputError) as raised:
        fetch([url], destination, "images", {url: wrong}, {}, timeout=5, retries=0)
    assert f"expected sha256 {wrong}, found {served_hash}" in str(raised.value)
    assert destination.read_bytes() == b"an earlier result" and leftovers(tmp_path) == []


def test_a_malformed_local_stack_is_refused_naming_its_source(tmp_path):
    images, _ = make_stacks(tmp_path)
    with pytest.raises(InputError, match=f"{images} holds label values"):
        fetch([str(images)], tmp_path / "fetched.tif", "labels", {}, {}, timeout=5, retries=0)
    assert not (tmp_path / "fetched.tif").exists() and leftovers(tmp_path) == []


def test_boundary_labels_need_the_declared_convention(tmp_path, caplog):
    membrane = np.random.default_rng(0).random((4, 20, 20)) < 0.2
    path = write_stack(tmp_path / "boundaries.tif", (membrane * 255).astype(np.uint8))
    with pytest.raises(InputError, match=r"data\.label_cell_value: 0"):
        fetch([str(path)], tmp_path / "l.npy", "labels", {}, {}, timeout=5, retries=0)
    provenance = fetch([str(path)], tmp_path / "l.npy", "labels", {}, {"label_cell_value": 0}, timeout=5, retries=0)
    assert provenance["shape"] == [4, 20, 20]


def test_a_configured_voxel_size_fills_and_replaces_the_files(tmp_path, caplog):
    images, _ = make_stacks(tmp_path)
    configured = {"z": 50, "y": 4, "x": None, "unit": "nm"}
    provenance = fetch(
        [str(images)], tmp_path / "i.npy", "images", {}, {"voxel_size": configured}, timeout=5, retries=0
    )
    assert provenance["voxel_size"] == pytest.approx({"z": 0.05, "y": 0.004, "x": None, "unit": "micron"})
    calibrated = tmp_path / "calibrated.tif"
    tifffile.imwrite(
        calibrated,
        np.zeros((2, 8, 8), np.uint8) + np.arange(8, dtype=np.uint8),
        imagej=True,
        resolution=(1 / 0.008, 1 / 0.008),
        metadata={"axes": "ZYX", "spacing": 0.05, "unit": "micron"},
    )
    provenance = fetch(
        [str(calibrated)], tmp_path / "c.npy", "images", {}, {"voxel_size": configured}, timeout=5, retries=0
    )
    assert provenance["voxel_size"] == pytest.approx({"z": 0.05, "y": 0.004, "x": 0.008, "unit": "micron"})
    assert "data.voxel_size.y (0.004 micron) replaces the file's 0.008 micron" in caplog.text


def test_an_unreadable_first_source_falls_through_to_the_next(tmp_path):
    images, _ = make_stacks(tmp_path)
    (tmp_path / "share.html").write_text("<html>Sign in to download</html>")
    provenance = fetch(
        [str(tmp_path / "share.html"), str(images)], tmp_path / "i.npy", "images", {}, {}, timeout=5, retries=0
    )
    assert provenance["source"] == str(images)
    with pytest.raises(InputError) as raised:
        fetch(
            [str(tmp_path / "share.html"), str(tmp_path / "absent.tif")],
            tmp_path / "j.npy",
            "images",
            {},
            {},
            timeout=5,
            retries=0,
        )
    assert "share.html is not a TIFF file" in str(raised.value) and "absent.tif: no such file" in str(raised.value)


def test_the_files_of_a_local_source_and_their_identity_are_recorded(tmp_path):
    import os

    from cellseg.fetch import check_fallbacks
    from cellseg.stackio import source_files, source_identity

    images, _ = make_stacks(tmp_path)
    folder = tmp_path / "sections"
    folder.mkdir()
    for index in (10, 2):  # natural order: z2 before z10
        tifffile.imwrite(folder / f"z{index}.tif", np.zeros((5, 6), np.uint8))
    (folder / "notes.txt").write_text("not a section")
    assert source_files(str(folder)) == [str(folder / "z2.tif"), str(folder / "z10.tif")]
    assert source_files(str(folder / "z*.tif")) == source_files(str(folder))
    assert source_files("http://example.org/a.tif") == [] and source_files(str(tmp_path / "none.tif")) == []
    os.utime(images, ns=(1, 123_456_789))
    assert source_identity(str(images)) == {str(images): [images.stat().st_size, 123_456_789]}
    record = fetch(
        [str(images)], tmp_path / "s.npy", "images", {}, {}, record=tmp_path / "s.json", timeout=1, retries=0
    )
    assert record["files"] == source_identity(str(images)) == json.loads((tmp_path / "s.json").read_text())["files"]
    # Fallbacks: one that exists, then others that do not, or URLs, are fine; two are not.
    check_fallbacks([str(tmp_path / "none.tif"), str(images), "http://example.org/a.tif"], "data.train_images")
    with pytest.raises(InputError, match=r"data.test_images lists 2 sources that exist: .*images.tif, .*sections\."):
        check_fallbacks([str(images), str(folder)], "data.test_images")
