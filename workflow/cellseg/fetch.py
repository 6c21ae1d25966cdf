"""Fetching a stack from its sources: local copies or http(s) downloads, verified by pixels.

Sources are tried in order. A download streams into a temporary file beside the
destination, is checked against the server's Content-Length and decoded, and only then is
renamed into place, so an interrupted transfer never leaves a file that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import InputError
from .stacks import check_stack, pixel_sha256, read_stack

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
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


def fetch_stack(
    sources: list[str],
    destination: str | Path,
    kind: str,
    expected_sha256: dict[str, str],
    timeout: float = 60,
    retries: int = 3,
    record: str | Path | None = None,
) -> dict:
    """Copy or download the first usable source of a stack to ``destination``.

    ``kind`` is 'images' or 'labels' and decides how the stack is validated. When
    ``expected_sha256`` has an entry for the source used, the decoded pixels must match it.
    Returns (and writes to ``record`` as JSON, when given) the provenance: ``source``,
    ``sha256`` of the pixels, ``verified``, ``shape`` and ``dtype``. Raises ``InputError``
    when no source works, a stack is malformed or a hash differs; ``destination`` is
    written only on success.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for source in sources:
        handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
        os.close(handle)
        partial = Path(temporary)
        try:
            if is_url(source):
                log.info("downloading %s", source)
                error_text = download_with_retries(source, partial, timeout, retries)
                if error_text is not None:
                    failures.append(f"{source}: {error_text}")
                    continue
            elif Path(source).is_file():
                log.info("copying %s", source)
                shutil.copyfile(source, partial)
            else:
                failures.append(f"{source}: no such file")
                log.warning("%s: no such file; trying the next source", source)
                continue
            stack = read_stack(partial, name=source)
            check_stack(stack, source, kind)
            found = pixel_sha256(stack)
            expected = expected_sha256.get(source)
            if expected is not None and found != expected:
                raise InputError(
                    f"The pixels of {source} do not match their expected hash: expected "
                    f"sha256 {expected}, found {found}. The file is damaged or is not the "
                    "stack the configuration names (data.sha256)."
                )
            os.replace(partial, destination)
            check = "verified against data.sha256" if expected else "no expected hash in data.sha256"
            log.info("fetched %s from %s: %s, pixel sha256 %s (%s)", kind, source, stack.shape, found, check)
            provenance = {
                "source": source,
                "sha256": found,
                "verified": expected is not None,
                "shape": list(stack.shape),
                "dtype": str(stack.dtype),
            }
            if record is not None:
                Path(record).write_text(json.dumps(provenance, indent=2) + "\n")
            return provenance
        finally:
            partial.unlink(missing_ok=True)
    raise InputError(
        f"No source of the {kind} stack for {destination} could be fetched: "
        + "; ".join(failures)
        + ". Check the paths and URLs in the configuration (data.*)."
    )


def fetched_source(record: str | Path) -> str:
    """The source named in a fetch record: how messages should call the fetched file."""
    return json.loads(Path(record).read_text())["source"]
