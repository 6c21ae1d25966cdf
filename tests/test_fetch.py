"""Fetching stacks from local paths and from an HTTP server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from cellseg.errors import InputError
from cellseg.fetch import fetch_stack
from cellseg.stacks import pixel_sha256, read_stack
from conftest import closed_port_url, make_stacks


@pytest.fixture()
def served_hash(stack_server, tmp_path):
    images, _ = make_stacks(tmp_path)  # same seed as the served files
    return pixel_sha256(read_stack(images))


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_download_verifies_pixels_and_names_the_source(stack_server, served_hash, tmp_path, caplog):
    caplog.set_level("INFO")
    url = f"{stack_server.url}/files/images.tif"
    destination = tmp_path / "out" / "train_images.tif"
    record = tmp_path / "out" / "train_images.json"
    provenance = fetch_stack([url], destination, "images", {url: served_hash}, timeout=5, retries=0, record=record)
    assert provenance == {"source": url, "sha256": served_hash, "verified": True, "shape": [6, 37, 45], "dtype": "uint16"}
    assert json.loads(record.read_text()) == provenance
    assert pixel_sha256(read_stack(destination)) == served_hash
    assert f"fetched images from {url}" in caplog.text and "verified" in caplog.text
    assert leftovers(destination.parent) == []


def test_sources_are_tried_in_order_past_missing_files_and_http_errors(stack_server, served_hash, tmp_path, caplog):
    caplog.set_level("INFO")
    sources = [str(tmp_path / "absent.tif"), f"{stack_server.url}/files/nothing.tif", closed_port_url(),
               f"{stack_server.url}/files/labels.tif"]
    provenance = fetch_stack(sources, tmp_path / "labels.tif", "labels", {}, timeout=5, retries=1)
    assert provenance["source"] == sources[-1] and not provenance["verified"]
    assert stack_server.hits["/files/nothing.tif"] == 1  # a 404 is not retried
    assert "no expected hash" in caplog.text


def test_a_dropped_connection_is_retried(stack_server, served_hash, tmp_path):
    url = f"{stack_server.url}/flaky/images.tif"
    fetch_stack([url], tmp_path / "i.tif", "images", {url: served_hash}, timeout=5, retries=2)
    assert stack_server.hits["/flaky/images.tif"] == 2


def test_every_source_failing_names_each_and_leaves_no_file(stack_server, tmp_path):
    sources = [closed_port_url(), f"{stack_server.url}/missing.tif", f"{stack_server.url}/drop/images.tif",
               f"{stack_server.url}/slow/images.tif"]
    destination = tmp_path / "i.tif"
    with pytest.raises(InputError) as raised:
        fetch_stack(sources, destination, "images", {}, timeout=0.5, retries=1)
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
        fetch_stack([url], destination, "images", {url: wrong}, timeout=5, retries=0)
    assert f"expected sha256 {wrong}, found {served_hash}" in str(raised.value)
    assert destination.read_bytes() == b"an earlier result" and leftovers(tmp_path) == []


def test_a_malformed_local_stack_is_refused_naming_its_source(tmp_path):
    images, _ = make_stacks(tmp_path)
    with pytest.raises(InputError, match=f"{images} holds label values"):
        fetch_stack([str(images)], tmp_path / "fetched.tif", "labels", {}, timeout=5, retries=0)
    assert not (tmp_path / "fetched.tif").exists() and leftovers(tmp_path) == []
