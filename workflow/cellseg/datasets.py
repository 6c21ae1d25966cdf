"""Where an experiment's data lives under resources/: one folder per data source.

Each fetched stack and each unpacked set is named by a digest of everything that decides
its content (its sources, the reading options, the expected hashes), so experiments on
different data sit side by side without touching each other's files, and an experiment
run again finds its own stacks where it left them:

| path | content | named by |
| --- | --- | --- |
| ``resources/stacks/<stack>-<digest>.npy``, ``.json`` | one fetched stack (N, H, W) in its own dtype, and its provenance | the stack's sources, ``data.channel``, ``data.voxel_size``, ``data.sha256`` of those sources, and (to validate) the label or normalisation options |
| ``resources/unpacked/<digest>/train_*`` | labelled images normalised, labels {0, 1}, manifest, record | the two fetched stacks, normalisation, label convention |
| ``resources/unpacked/<digest>/test_*`` | the unlabelled stack normalised, manifest, record | the fetched stack, normalisation |
| ``resources/stacks/segment-<digest>.npy``, ``.json`` | a stack to segment (``segment.stacks``), as read | its sources and the reading options |
"""

from __future__ import annotations

import hashlib
import json

STACKS = ("train_images", "train_labels", "test_images")
DIGEST_LENGTH = 12


def digest(value) -> str:
    """A short sha256 of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:DIGEST_LENGTH]


def stack_kind(stack: str) -> str:
    return "labels" if stack == "train_labels" else "images"


def options(data: dict) -> dict:
    """The ``data`` keys that decide how stacks are read, validated and unpacked
    (``unlabelled_value`` only where set, so that the digests of dense labels stay)."""
    keys = ("channel", "label_cell_value", "normalization", "percentiles", "voxel_size")
    found = {key: data[key] for key in keys}
    if data.get("unlabelled_value") is not None:
        found["unlabelled_value"] = data["unlabelled_value"]
    return found


def fetch_spec(data: dict, stack: str, sources: list[str] | None = None) -> dict:
    """What the fetch_stack job of one of the config's stacks needs (its params);
    ``sources`` for stacks outside ``data`` (``segment``: a stack to segment)."""
    sources = data[stack] if sources is None else sources
    reading = options(data)
    if stack_kind(stack) == "labels":
        reading = {
            k: reading[k] for k in ("channel", "label_cell_value", "unlabelled_value", "voxel_size") if k in reading
        }
    else:
        reading = {k: reading[k] for k in ("channel", "normalization", "percentiles", "voxel_size")}
    return {
        "sources": list(sources),
        "kind": stack_kind(stack),
        "sha256": {s: data["sha256"][s] for s in sources if s in data["sha256"]},
        "options": reading,
    }


def stack_id(data: dict, stack: str, sources: list[str] | None = None) -> str | None:
    """``<stack>-<digest>``: the name of a fetched stack; None for an empty test stack."""
    if not (data[stack] if sources is None else sources):
        return None
    return f"{stack}-{digest([stack, fetch_spec(data, stack, sources)])}"


def segment_data(config: dict) -> dict:
    """The ``data`` section as stacks to segment are read: ``segment.channel``, where set,
    replaces ``data.channel``, so that picking the channel of a stack to segment never
    touches the training stacks (nor retrains); ``data.voxel_size`` is the training and
    test stacks' and is not applied, so each stack to segment keeps its own calibration
    (its pixel size is what is checked against the models')."""
    channel = config["segment"]["channel"]
    data = {**config["data"], "voxel_size": {}}
    return data if channel is None else {**data, "channel": channel}


def unpack_spec(data: dict, role: str) -> dict:
    """What an unpack job needs: the fetched stacks it reads and the options."""
    reading = options(data)
    unpacking = {k: reading[k] for k in ("normalization", "percentiles")}
    if role == "train":
        unpacking["label_cell_value"] = reading["label_cell_value"]
        if "unlabelled_value" in reading:
            unpacking["unlabelled_value"] = reading["unlabelled_value"]
        stacks = {"images": stack_id(data, "train_images"), "labels": stack_id(data, "train_labels")}
    else:
        stacks = {"images": stack_id(data, "test_images")}
    return {"role": role, "stacks": stacks, "options": unpacking}


def unpacked_id(data: dict, role: str) -> str | None:
    """The folder under resources/unpacked/ of the labelled ('train') or unlabelled
    ('test') set; None when the config has no test stack."""
    if role == "test" and not data["test_images"]:
        return None
    return digest(unpack_spec(data, role))
