"""Shared fixtures: the real ISBI stacks, generated stacks, and Snakemake runs in a copy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

# The benchmarks' library (benchmarks/tools.py, installed with the package) is measured by
# tests/test_benchmark.py and copies the workflow for the Snakemake runs of both.
from benchmarks.tools import copy_workflow as copy_workflow_from

REPO = Path(__file__).resolve().parents[1]
ISBI_DIR = Path(os.environ.get("CELLSEG_ISBI_DIR", REPO.parent / "shared" / "isbi2012"))
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip a test whose prerequisite is missing on a user's machine; fail it on CI."""
    if not condition:
        if ON_CI:
            pytest.fail(f"required on CI: {reason}")
        pytest.skip(reason)


def pytest_sessionfinish(session, exitstatus):
    # A run that collected no tests has tested nothing: make it a failure.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    require(
        (ISBI_DIR / "train-volume.tif").is_file(),
        f"the ISBI 2012 stacks are not at {ISBI_DIR} (set CELLSEG_ISBI_DIR)",
    )
    return ISBI_DIR


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Rule name -> job count from the 'Job stats' table of a dry run."""
    table = dry_run_output.split("Job stats:")[1]
    return {
        rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE) if rule != "total"
    }


@pytest.fixture(scope="session")
def isbi_run(isbi_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("isbi")
    # The default sources are ../shared/isbi2012/...: give the copy a ../shared of its own.
    (root / "shared").symlink_to(isbi_dir.parent, target_is_directory=True)
    work = copy_workflow(root / "work")
    return work, snakemake(work, "--configfile", "config/smoke.yaml")


def write_stack(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as a multi-page TIFF and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 4 else "minisblack")
    return path


def make_stacks(folder: Path, slices: int = 6, height: int = 37, width: int = 45, seed: int = 0):
    """Small uint16 images with 0/1 labels of odd size; returns (images, labels) paths."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((slices, height, width)) > 0.3).astype(np.uint8)
    images = (labels.astype(np.uint16) * 30000 + rng.integers(0, 20000, labels.shape)).astype(np.uint16)
    return (
        write_stack(folder / "images.tif", images),
        write_stack(folder / "labels.tif", labels),
    )


def copy_workflow(destination: Path) -> Path:
    """A copy of this checkout's workflow to run Snakemake in."""
    return copy_workflow_from(REPO, destination)


def snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run Snakemake in ``workdir`` and return the finished process (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class StackServer:
    """An HTTP server on 127.0.0.1 serving files from ``folder``, with failure modes.

    ``/files/NAME`` serves NAME; ``/drop/NAME`` sends half of it and closes the
    connection; ``/flaky/NAME`` drops the first request only; ``/slow/NAME`` waits past
    any short timeout; anything else is a 404. ``hits`` counts requests per path.
    """

    def __init__(self, folder: Path) -> None:
        import collections
        import http.server
        import threading
        import time

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.hits[self.path] += 1
                mode, _, name = self.path.strip("/").partition("/")
                path = folder / name
                if mode not in ("files", "drop", "flaky", "slow") or not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                body = path.read_bytes()
                if mode == "slow":
                    time.sleep(3)
                drop = mode == "drop" or (mode == "flaky" and server.hits[self.path] == 1)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if drop else body)
                if drop:
                    self.close_connection = True

        class QuietServer(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients of the failure modes hang up on purpose

        self.hits: collections.Counter = collections.Counter()
        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/files/images.tif"


@pytest.fixture(scope="module")
def stack_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    make_stacks(folder)
    server = StackServer(folder)
    yield server
    server.close()
