"""Fetching a stack from its sources: local files, folders or http(s) downloads, verified by pixels.

Sources are tried in order. A download streams into a temporary file beside the
destination, is checked against the server's Content-Length and decoded, and only then is
renamed into place, so an interrupted transfer never leaves a file that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .errors import InputError
from .records import VoxelSize
from .stackio import Stack, exists, expand, read_source, sections, source_identity
from .stacks import check_stack, pixel_sha256, release

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# A source is copied this many bytes of sections at a time (at least one section).
SLAB_BYTES = 1 << 26
MAX_BACKOFF_SECONDS = 30.0


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def download(url: str, destination: Path, timeout: float) -> None:
    """Stream ``url`` into ``destination``; raise ``OSError`` on any incomplete transfer."""
    request = urllib.request.Request(url, headers={"User-Agent": "cellseg"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        expected = response.headers.get("Content-Length")
        received = 0
        with open(destination, "wb") as handle:
            while chunk := response.read(CHUNK_BYTES):
                handle.write(chunk)
                received += len(chunk)
    # http.client returns a short body without error when the peer closes early.
    if expected is not None and received != int(expected):
        raise OSError(f"connection closed after {received} of {expected} bytes")


def download_with_retries(url: str, destination: Path, timeout: float, retries: int) -> str | None:
    """Try ``url`` up to ``retries + 1`` times; return None on success, else the last error."""
    error_text = None
    for attempt in range(retries + 1):
        if attempt:
            delay = min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            log.info("retrying %s in %.1f s (attempt %d of %d)", url, delay, attempt + 1, retries + 1)
            time.sleep(delay)
        try:
            download(url, destination, timeout)
            return None
        except urllib.error.HTTPError as error:
            error_text = f"HTTP {error.code} {error.reason}"
            if 400 <= error.code < 500 and error.code not in (408, 429):
                break  # the server said no; asking again will not change that
        except (OSError, ValueError) as error:  # URLError, timeouts, resets, short bodies
            error_text = str(getattr(error, "reason", None) or error)
        log.warning("download of %s failed: %s", url, error_text)
    return error_text


def check_fallbacks(sources: list[str], what: str) -> None:
    """Refuse a list of sources in which more than one local source exists: the list holds
    fallbacks, tried in order, so all but the first would be ignored, which is never
    what a user listing two stacks means. ``what`` names the list (``data.train_images``).
    Raises ``InputError`` naming them."""
    found = [source for source in sources if not is_url(source) and exists(source)]
    if len(found) > 1:
        raise InputError(
            f"{what} lists {len(found)} sources that exist: {', '.join(found)}. The list holds fallbacks, "
            "tried in order, and only the first that can be read is used, so the others would be ignored. "
            "List one stack there (a folder or glob of sections is one stack)"
            + (
                "; several stacks to segment each get a name of their own under segment.stacks."
                if what.startswith("segment.")
                else "; several labelled volumes are not trained on together yet."
            )
        )


def calibrated(found: VoxelSize, configured: dict | None, source: str) -> VoxelSize:
    """The voxel size to record: the file's (``found``), each axis replaced by
    ``data.voxel_size`` (``configured``, in its ``unit``) where that is set; a replaced
    value that differs from the file's is logged."""
    configured = configured or {}
    ours = VoxelSize.in_unit(
        configured.get("z"), configured.get("y"), configured.get("x"), configured.get("unit", "micron")
    )
    for axis, mine, theirs in zip("zyx", found.axes, ours.axes, strict=True):
        if mine is not None and theirs is not None and not np.isclose(theirs, mine, rtol=1e-3):
            log.warning("%s: data.voxel_size.%s (%g micron) replaces the file's %g micron", source, axis, theirs, mine)
    return found.replaced(ours)


def _save_verified(
    source: str, partial: Path, saved: Path, kind: str, expected: str | None, options: dict
) -> tuple[Stack, str]:
    """Read one source (a download in ``partial``) lazily into ``saved`` (.npy), slab by
    slab, then validate what was saved and hash its pixels: memory holds one slab of the
    source, whatever its size. Returns the stack as read (its pixels lazy) and the pixel
    hash; ``InputError`` when it cannot be read, is malformed or its hash differs."""
    if is_url(source):
        stack = read_source(partial, name=source, channel=options.get("channel"), lazy=True)
    else:
        log.info("reading %s%s", source, f" ({expand(source)})" if expand(source) != source else "")
        stack = read_source(source, channel=options.get("channel"), lazy=True)
    for note in stack.notes:
        log.info("%s", note)
    for warning in stack.warnings:
        log.warning("%s", warning)
    count, height, width = stack.pixels.shape
    per_slab = max(1, SLAB_BYTES // (height * width * stack.pixels.dtype.itemsize))
    out = np.lib.format.open_memmap(saved, mode="w+", dtype=stack.pixels.dtype, shape=stack.pixels.shape)
    began = time.perf_counter()
    for start, slab in zip(range(0, count, per_slab), sections(stack.pixels, source, per_slab), strict=True):
        out[start : start + len(slab)] = slab
        out.flush()
        release(out)
        if count > per_slab:
            done = start + len(slab)
            rate = done / (time.perf_counter() - began)
            log.info("read %d of %d sections (%.1f a second, ETA %.0f s)", done, count, rate, (count - done) / rate)
    out.flush()
    del out
    pixels = np.load(saved, mmap_mode="r")
    check_stack(pixels, source, kind, options)
    found = pixel_sha256(pixels)
    if expected is not None and found != expected:
        raise InputError(
            f"The pixels of {source} do not match their expected hash: expected "
            f"sha256 {expected}, found {found}. The file is damaged or is not the "
            "stack the configuration names (data.sha256)."
        )
    return stack, found


def _temporary(destination: Path, suffix: str) -> Path:
    """A new empty file beside ``destination``, hidden, for a transfer or copy in progress."""
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=suffix)
    os.close(handle)
    return Path(temporary)


def fetch_stack(spec: dict, destination: str | Path, record: str | Path | None, timeout: float, retries: int) -> dict:
    """Read the first usable source of a stack and save it to ``destination`` (.npy).

    ``spec`` (``datasets.fetch_spec``): the ``sources`` to try in order, the stack's
    ``kind``, the ``sha256`` expected of each source and the data ``options``; URLs are
    read with ``timeout`` seconds and ``retries`` further tries.

    A source is a local file, folder or glob (``stackio.read_source`` says which kinds of
    file it reads) or an http(s) URL of a TIFF. ``kind`` is 'images' or 'labels' and
    decides how the stack is validated, with the config's ``data`` section ``options``
    (``channel``, ``label_cell_value``, ``normalization``, ``voxel_size``). When
    ``expected_sha256`` has an entry for the source used, the decoded pixels (as
    ``stackio`` reads them, C order, their own dtype) must match it. The saved array is
    (N, H, W) in the source's dtype, copied a slab at a time (``SLAB_BYTES``) from a lazy
    read, so that a stack larger than memory is fetched in bounded memory. Returns (and
    writes to ``record`` as JSON, when given) the provenance: ``source``, ``sha256`` of the
    pixels, ``verified``, ``shape``, ``dtype``, ``voxel_size`` (``records.VoxelSize``),
    the ``notes`` and ``warnings`` of reading it and, of a local source, the ``files``
    read with their size and modification time (``stackio.source_identity``). A source
    that cannot be read, is malformed or whose hash differs is skipped for the next, as
    one that cannot be reached is. Raises ``InputError`` when no source works (a single
    source's own refusal as it is); ``destination`` is written only on success.
    """
    sources, kind, expected_sha256, options = spec["sources"], spec["kind"], spec["sha256"], spec["options"]
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures, refusals = [], []
    for source in sources:
        partial, saved = (_temporary(destination, suffix) for suffix in (".part", ".npy.part"))
        try:
            if is_url(source):
                log.info("downloading %s", source)
                error_text = download_with_retries(source, partial, timeout, retries)
                if error_text is not None:
                    failures.append(f"{source}: {error_text}")
                    continue
            elif not exists(source):
                failures.append(f"{source}: no such file")
                log.warning("%s: no such file; trying the next source", source)
                continue
            expected = expected_sha256.get(source)
            try:
                stack, found = _save_verified(source, partial, saved, kind, expected, options)
            except InputError as error:  # a damaged mirror, an HTML page served as the file
                refusals.append(error)
                failures.append(str(error))
                log.warning("%s%s", error, "; trying the next source" if source != sources[-1] else "")
                continue
            os.replace(saved, destination)
            check = "verified against data.sha256" if expected else "no expected hash in data.sha256"
            voxel_size = calibrated(stack.voxel_size, options.get("voxel_size"), source)
            log.info(
                "fetched %s from %s: %s %s, pixel sha256 %s (%s), voxel size %s",
                kind,
                source,
                stack.pixels.shape,
                stack.pixels.dtype,
                found,
                check,
                voxel_size.describe(),
            )
            provenance = {
                "source": source,
                "sha256": found,
                "verified": expected is not None,
                "shape": list(stack.pixels.shape),
                "dtype": str(stack.pixels.dtype),
                "voxel_size": voxel_size.to_json(),
                "notes": stack.notes,
                "warnings": stack.warnings,
                # What tells a file replaced under the same name (the rule reruns on it).
                "files": {} if is_url(source) else source_identity(source),
            }
            if record is not None:
                Path(record).write_text(json.dumps(provenance, indent=2) + "\n")
            return provenance
        finally:
            partial.unlink(missing_ok=True)
            saved.unlink(missing_ok=True)
    if len(failures) == 1 and refusals:
        raise refusals[0]  # one source, read and refused: its own paragraph says it all
    raise InputError(
        f"No source of the {kind} stack for {destination} could be fetched: "
        + "; ".join(failures)
        + ". Check the paths and URLs in the configuration (data.*, or segment.stacks for a stack to segment)."
    )
