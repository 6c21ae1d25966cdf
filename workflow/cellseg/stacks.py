"""Image and label stacks: reading, validation, pixel hashes and unpacked slice arrays.

A stack is an N x H x W TIFF, one page per slice. Images are unpacked to float32 in
[0, 1], scaled by their dtype's range; labels to uint8 with 1 = cell interior and
0 = membrane, from files that store them as 0/1 or 0/255.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from .errors import InputError

log = logging.getLogger(__name__)

LABEL_ENCODINGS = ({0, 1}, {0, 255})


def read_stack(path: str | Path, name: str | None = None) -> np.ndarray:
    """Read an N x H x W TIFF stack; raise ``InputError`` naming the file otherwise.

    ``name`` is how messages call the file (the source of a temporary copy, say).
    """
    shown = name or path
    if not Path(path).is_file():
        raise InputError(f"{shown}: no such file.")
    try:
        array = _read_complete_tiff(path)
    except Exception as error:  # tifffile raises many types for damaged files
        raise InputError(
            f"{shown} could not be read as a TIFF stack ({type(error).__name__}: {error}). "
            "Is it a TIFF, and complete (not a download cut short)?"
        ) from error
    if array.ndim == 4 and array.shape[-1] in (3, 4):
        raise InputError(
            f"{shown} holds colour (RGB/RGBA) slices of shape {array.shape}; cellseg needs a "
            "grey-scale stack of N x H x W. Convert it to one channel first."
        )
    if array.ndim != 3:
        hint = " (a single 2-D image, not a stack of slices)" if array.ndim == 2 else ""
        raise InputError(
            f"{shown} has shape {array.shape}{hint}; cellseg needs a stack of N x H x W, "
            "one TIFF page per slice."
        )
    if 0 in array.shape:
        raise InputError(f"{shown} is an empty stack of shape {array.shape}.")
    return array


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _read_complete_tiff(path: str | Path) -> np.ndarray:
    """Read a TIFF, refusing one whose pages or pixel data run past the end of the file.

    tifffile reads a truncated file without raising: it logs a warning and returns the
    pages it found, or zeros where the pixel data is missing. Both are damage here.
    """
    warnings = _Collect()
    tifffile_log = logging.getLogger("tifffile")
    tifffile_log.addHandler(warnings)
    try:
        with tifffile.TiffFile(path) as tiff:
            size = tiff.filehandle.size
            for page in tiff.pages:
                if any(o + n > size for o, n in zip(page.dataoffsets, page.databytecounts)):
                    raise ValueError(f"pixel data of page {page.index} ends past the file's {size} bytes")
            for series in tiff.series:
                if series.dataoffset is not None and series.dataoffset + series.nbytes > size:
                    raise ValueError(f"pixel data ends past the file's {size} bytes")
            array = tiff.asarray()
    finally:
        tifffile_log.removeHandler(warnings)
    if warnings.messages:
        raise ValueError("; ".join(warnings.messages))
    return array


def pixel_sha256(array: np.ndarray) -> str:
    """sha256 of the decoded pixels: C order, little-endian, in the stack's own dtype."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(np.ascontiguousarray(little).tobytes()).hexdigest()


def scale_images(stack: np.ndarray, path: str | Path) -> np.ndarray:
    """Images as float32 in [0, 1], scaled by the dtype's range (uint8, uint16, float).

    Float stacks must already lie in [0, 1]; NaN or infinite pixels are refused.
    """
    if stack.dtype.kind == "u":
        return stack.astype(np.float32) / np.float32(np.iinfo(stack.dtype).max)
    if stack.dtype.kind != "f":
        raise InputError(
            f"{path} stores pixels as {stack.dtype}; cellseg reads unsigned integers "
            "(uint8, uint16) or floats in [0, 1]."
        )
    finite = np.isfinite(stack)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise InputError(
            f"{path} holds {int((~finite).sum())} NaN or infinite pixels, the first in "
            f"slice {bad[0]} at row {bad[1]}, column {bad[2]}."
        )
    low, high = float(stack.min()), float(stack.max())
    if low < 0 or high > 1:
        raise InputError(
            f"{path} is a float stack with values from {low:g} to {high:g}; float images "
            "must lie in [0, 1]. Rescale it, or save it as uint8 or uint16."
        )
    return stack.astype(np.float32)


def binary_labels(stack: np.ndarray, path: str | Path) -> np.ndarray:
    """Labels as uint8 with 1 = cell interior, 0 = membrane, from 0/1 or 0/255 files."""
    if stack.dtype.kind == "f" and not np.isfinite(stack).all():
        raise InputError(f"{path} holds NaN or infinite label values.")
    values = set(np.unique(stack).tolist())
    if len(values) == 1:
        raise InputError(
            f"{path} holds a single label value ({values.pop():g}) in every pixel; labels "
            "need both classes, 0 = membrane and 1 or 255 = cell interior."
        )
    encoding = next((e for e in LABEL_ENCODINGS if values <= e), None)
    if encoding is None:
        shown = ", ".join(f"{v:g}" for v in sorted(values)[:8])
        more = ", ..." if len(values) > 8 else ""
        raise InputError(
            f"{path} holds label values {{{shown}{more}}}; labels must be two classes, "
            "0 = membrane and 1 or 255 = cell interior."
        )
    return (stack == max(encoding)).astype(np.uint8)


def check_same_shape(
    images: np.ndarray, labels: np.ndarray, images_path: str | Path, labels_path: str | Path
) -> None:
    """Raise ``InputError`` when an image stack and its labels differ in shape."""
    if images.shape != labels.shape:
        raise InputError(
            f"The images {images_path} (N x H x W = {images.shape}) and the labels "
            f"{labels_path} ({labels.shape}) differ in shape; each image slice needs a "
            "label slice of the same size."
        )


def check_stack(stack: np.ndarray, path: str | Path, kind: str) -> None:
    """Validate a stack read from ``path`` as ``kind`` ('images' or 'labels')."""
    if kind == "labels":
        binary_labels(stack, path)
    else:
        scale_images(stack, path)


def unpack(
    images_path: str | Path,
    labels_path: str | Path | None,
    images_out: str | Path,
    labels_out: str | Path | None,
    manifest_out: str | Path,
    images_name: str | None = None,
    labels_name: str | None = None,
) -> pd.DataFrame:
    """Unpack stacks into .npy arrays (images float32 N x H x W; labels uint8 {0, 1}).

    Also writes a manifest TSV with one row per slice: ``slice``, ``height``, ``width``,
    ``image_mean``, ``image_std`` and ``cell_fraction`` (empty without labels).
    ``images_name`` and ``labels_name`` are how messages call the files (their sources).
    Returns the manifest.
    """
    images_name = images_name or str(images_path)
    images = scale_images(read_stack(images_path, images_name), images_name)
    labels = None
    if labels_path is not None:
        labels_name = labels_name or str(labels_path)
        labels = binary_labels(read_stack(labels_path, labels_name), labels_name)
        check_same_shape(images, labels, images_name, labels_name)
    count, height, width = images.shape
    manifest = pd.DataFrame(
        {
            "slice": np.arange(count),
            "height": height,
            "width": width,
            "image_mean": images.mean(axis=(1, 2), dtype=np.float64),
            "image_std": images.std(axis=(1, 2), dtype=np.float64),
            "cell_fraction": (
                labels.mean(axis=(1, 2), dtype=np.float64) if labels is not None else np.nan
            ),
        }
    )
    np.save(images_out, images)
    if labels is not None:
        np.save(labels_out, labels)
    manifest.to_csv(manifest_out, sep="\t", index=False, float_format="%.6g")
    log.info(
        "unpacked %d slices of %d x %d from %s%s", count, height, width, images_name,
        f" with labels from {labels_name}" if labels is not None else "",
    )
    return manifest
