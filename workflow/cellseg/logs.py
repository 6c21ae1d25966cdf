"""Logging for pipeline steps: progress into the rule's log file, bad input to the user."""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger(__name__)

# Errors of the machine rather than of the code: a folder that cannot be written, a full
# disk. They get the one-paragraph treatment of bad input.
STORAGE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR}


@contextlib.contextmanager
def logged_step(log_path: str | Path) -> Iterator[None]:
    """Route logging into ``log_path`` for the duration of one pipeline step.

    An ``InputError`` is written to the log and to stderr as its message alone, and the
    process exits with status 1 (Snakemake then marks the job failed); so is an
    ``OSError`` of storage (``STORAGE_ERRORS``: permissions, a read-only or full disk, a
    file where a folder should be), naming the path. Any other exception is logged with
    its traceback and raised again.
    """
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except InputError as error:
        log.error("%s", error)
        print(f"cellseg: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as error:
        if error.errno not in STORAGE_ERRORS:
            log.exception("unexpected error; the traceback follows")
            raise
        message = (
            f"{error.filename or 'a file'}: {error.strerror} ({errno.errorcode[error.errno]}). The step could not "
            "write (or read) there: check that the folder exists as a folder, that it may be written, and the "
            "free space. Earlier results are untouched; run the same command again once it is fixed."
        )
        log.error("%s", message)
        print(f"cellseg: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception:
        log.exception("unexpected error; the traceback follows")
        raise
    finally:
        # The kernel's high-water mark of this process (Linux: kilobytes), exact where
        # Snakemake's benchmark files sample it every few seconds.
        log.info(
            "peak resident memory of this step: %.0f MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        root.removeHandler(handler)
        handler.close()
