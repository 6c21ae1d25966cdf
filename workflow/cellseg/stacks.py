"""Validating stacks and unpacking them into the arrays training and prediction read.

Images are normalised per stack from their own intensities (``normalise_images``), so
that the same sample stored as uint8, uint16 or float gives the model the same input.
Labels become uint8 with 1 = cell interior, 0 = membrane and, for sparse labels,
``metrics.UNLABELLED`` where no one labelled (``binary_labels``).
Reading files is ``stackio``'s concern.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .metrics import UNLABELLED
from .records import NORMALISATIONS, Intensities

log = logging.getLogger(__name__)

LABEL_ENCODINGS = ({0, 1}, {0, 255})


def release(array: np.ndarray) -> None:
    """Drop the pages a memory-mapped array has read or written from this process's
    resident memory. They stay in the page cache (written ones are written back as
    usual) and are read again if touched, so a pass over a stack larger than memory keeps
    the resident memory of one section. Does nothing for other arrays."""
    mapping = getattr(array, "_mmap", None)  # numpy.memmap's mapping, shared by its slices
    if mapping is not None:
        mapping.madvise(mmap.MADV_DONTNEED)


def pixel_sha256(array: np.ndarray) -> str:
    """sha256 of the decoded pixels: C order, little-endian, in the stack's own dtype.
    Hashed one section (first-axis entry) at a time, so a memory-mapped stack stays on
    disk; the digest is that of the whole array's bytes."""
    digest = hashlib.sha256()
    little = array.dtype.newbyteorder("<")
    for part in array if array.ndim > 1 else [array]:
        digest.update(np.ascontiguousarray(part, dtype=little).tobytes())
        release(array)
    return digest.hexdigest()


# Statistics of a stack come from at most this many pixels of evenly spaced sections,
# so that a stack larger than memory normalises with bounded memory; smaller stacks use
# every pixel.
SAMPLE_PIXELS = 1 << 24


def normalise_images(
    stack: np.ndarray, path: str | Path, method: str, percentiles: tuple[float, float]
) -> tuple[np.ndarray, Intensities]:
    """Images (N, H, W) of any integer or float dtype as float32, normalised per stack.

    ``percentile`` (the schema's default): (v - p_low) / (p_high - p_low) with the stack's
    ``percentiles`` (CSBDeep's ``normalize``, 1 and 99.8 by default; Weigert et al. 2018,
    Nature Methods 15:1090), not clipped; ``mean_std``: (v - mean) / sd of the stack;
    ``dtype_range``: v / the dtype's maximum (unsigned integers) or v itself (floats in
    [0, 1]). The first two are invariant to how the sample was stored (uint8, uint16 or
    float32 of the same values give the same result up to float rounding); the third is
    not. Returns the array and the record of ``intensity_record``. Raises ``InputError``
    for NaN or infinite pixels, a constant stack, or a dtype the method cannot read.
    """
    record = intensity_record(stack, path, method, percentiles)
    return record.apply(stack), record


def intensity_record(stack: np.ndarray, path: str | Path, method: str, percentiles: tuple[float, float]) -> Intensities:
    """The normalisation of a stack (N, H, W): ``method``, ``percentiles`` and the raw
    statistics it needs (``low``, ``high``: the percentiles, ``mean``, ``std``, ``min``,
    ``max``, ``dtype``) and the 1st to 99th percentiles (``quantiles``), from at most
    ``SAMPLE_PIXELS`` pixels of evenly spaced sections and reading one section at a time
    (a memory-mapped stack stays on disk). Raises ``InputError`` as ``normalise_images``
    does."""
    if stack.dtype.kind not in "uif" or stack.dtype == bool:
        raise InputError(f"{path} stores pixels as {stack.dtype}; cellseg reads integer or float images.")
    if method not in NORMALISATIONS:
        raise InputError(f"data.normalization is '{method}'; it must be one of {', '.join(NORMALISATIONS)}.")
    low_value, high_value = np.inf, -np.inf
    for index, section in enumerate(stack):
        if stack.dtype.kind == "f" and not np.isfinite(section).all():
            bad = np.argwhere(~np.isfinite(section))[0]
            raise InputError(
                f"{path} holds NaN or infinite pixels, the first in slice {index} at row {bad[0]}, column {bad[1]}."
            )
        low_value, high_value = min(low_value, float(section.min())), max(high_value, float(section.max()))
        release(stack)
    count, height, width = stack.shape
    sampled = np.unique(np.linspace(0, count - 1, max(1, min(count, SAMPLE_PIXELS // (height * width)))).astype(int))
    values = np.asarray(stack[sampled], dtype=np.float64)
    release(stack)
    low, high = (float(v) for v in np.percentile(values, percentiles))
    record = Intensities(
        method=method,
        percentiles=tuple(percentiles),
        low=low,
        high=high,
        mean=float(values.mean()),
        std=float(values.std()),
        min=low_value,
        max=high_value,
        dtype=str(stack.dtype),
        sampled_sections=len(sampled),
        quantiles=tuple(float(v) for v in np.percentile(values, np.arange(1, 100))),
    )
    if method == "dtype_range":
        if stack.dtype.kind == "f" and (low_value < 0 or high_value > 1):
            raise InputError(
                f"{path} is a float stack with values from {low_value:g} to {high_value:g}; "
                "with data.normalization: dtype_range float images must lie in [0, 1]. Use "
                "the default percentile normalisation, or rescale it."
            )
        if stack.dtype.kind == "i":
            raise InputError(
                f"{path} stores pixels as {stack.dtype}; "
                "data.normalization: dtype_range reads unsigned integers or floats in [0, 1]."
            )
        return record
    scale = high - low if method == "percentile" else record.std
    if scale <= 0:
        raise InputError(
            f"{path} has no contrast to normalise: {method} normalisation divides by "
            f"{scale:g} (values {low_value:g} to {high_value:g})."
        )
    return record


def binary_labels(
    stack: np.ndarray, path: str | Path, cell_value: float | None = None, unlabelled_value: float | None = None
) -> np.ndarray:
    """Labels as uint8 with 1 = cell interior, 0 = membrane.

    With ``unlabelled_value`` (``data.unlabelled_value``: sparse labels, such as
    ilastik's export of brush strokes, 0 = unlabelled), pixels of that value become
    ``metrics.UNLABELLED``, ``cell_value`` (needed) cell interior and the one other value
    membrane; a class may be absent, not every pixel unlabelled.

    With ``cell_value`` None (``data.label_cell_value`` unset), files store 0 = membrane
    and 1 or 255 = cell interior, and the cell class must cover at least half of the
    pixels: in membrane segmentation the cell interior is the majority class, so labels
    that are mostly "cell" the other way round store the membrane as the foreground. With
    ``cell_value`` set, that stored value is cell interior and the other one membrane.
    Raises ``InputError`` for other values, a single value, or a minority cell class.
    """
    if stack.dtype.kind == "f" and not np.isfinite(stack).all():
        raise InputError(f"{path} holds NaN or infinite label values.")
    values = np.unique(stack)
    shown = ", ".join(f"{v:g}" for v in values[:8].tolist()) + (", ..." if len(values) > 8 else "")
    if unlabelled_value is not None:
        return _sparse_labels(stack, path, values, shown, cell_value, unlabelled_value)
    if len(values) == 1:
        raise InputError(
            f"{path} holds a single label value ({values[0]:g}) in every pixel; labels "
            "need both classes, 0 = membrane and 1 or 255 = cell interior."
        )
    if cell_value is not None:
        if len(values) != 2 or cell_value not in values.tolist():
            raise InputError(
                f"{path} holds label values {{{shown}}}; with data.label_cell_value = "
                f"{cell_value:g} labels must be two values, {cell_value:g} = cell interior and "
                "the other one membrane."
            )
        return (stack == cell_value).astype(np.uint8)
    encoding = next((e for e in LABEL_ENCODINGS if set(values.tolist()) <= e), None)
    if encoding is None:
        raise InputError(
            f"{path} holds label values {{{shown}}}; labels must be two classes, "
            "0 = membrane and 1 or 255 = cell interior (or set data.label_cell_value to the "
            "stored value meaning cell interior)."
        )
    cell_value = max(encoding)
    cell = stack == cell_value
    fraction = float(cell.mean())
    if fraction < 0.5:
        raise InputError(
            f"{path}: the labels' cell class (value {cell_value}) covers only {100 * fraction:.1f} % "
            f"of the labelled pixels and the membrane (value 0) {100 * (1 - fraction):.1f} %. "
            f"cellseg's convention is 0 = membrane and {cell_value} = cell interior, and in "
            "membrane segmentation the cell interior is the majority class, so these labels "
            "most likely store the membrane as the foreground (as boundary maps and many "
            "ilastik exports do), or are a mask saved inverted. If so, set "
            f"data.label_cell_value: 0 (the stored value meaning cell interior); if cells "
            f"really are the minority here, set data.label_cell_value: {cell_value} to say so."
        )
    return cell.astype(np.uint8)


def _sparse_labels(
    stack: np.ndarray, path: str | Path, values: np.ndarray, shown: str, cell_value: float | None, unlabelled: float
) -> np.ndarray:
    """``binary_labels`` of sparse labels (its ``unlabelled_value``)."""
    if cell_value is None:
        raise InputError(
            f"data.unlabelled_value is {unlabelled:g}, so data.label_cell_value must say which stored value of "
            f"{path} is cell interior (its values: {{{shown}}}); ilastik numbers the classes in the order "
            "they were made (1, 2, ...)."
        )
    painted = set(values.tolist()) - {unlabelled}
    if not painted:
        raise InputError(f"{path} holds no labelled pixel: every pixel is data.unlabelled_value ({unlabelled:g}).")
    if len(painted - {cell_value}) > 1:
        raise InputError(
            f"{path} holds label values {{{shown}}}; with data.unlabelled_value = {unlabelled:g} and "
            f"data.label_cell_value = {cell_value:g}, labels must be those two and one more value, membrane."
        )
    if len(painted) < 2 or cell_value not in painted:
        missing = "cell interior" if cell_value not in painted else "membrane"
        raise InputError(
            f"{path} holds label values {{{shown}}}: with data.unlabelled_value = {unlabelled:g} and "
            f"data.label_cell_value = {cell_value:g}, no pixel is labelled {missing}. Both classes must be painted "
            "somewhere (a model trained on one learns nothing of the other), and data.label_cell_value must be a "
            "stored value of the strokes."
        )
    labels = np.where(stack == cell_value, 1, 0).astype(np.uint8)
    labels[stack == unlabelled] = UNLABELLED
    return labels


def check_same_shape(images: np.ndarray, labels: np.ndarray, images_path: str | Path, labels_path: str | Path) -> None:
    """Raise ``InputError`` when an image stack and its labels differ in shape."""
    if images.shape != labels.shape:
        raise InputError(
            f"The images {images_path} (N x H x W = {images.shape}) and the labels "
            f"{labels_path} ({labels.shape}) differ in shape; each image slice needs a "
            "label slice of the same size."
        )


def check_stack(stack: np.ndarray, path: str | Path, kind: str, options: dict) -> None:
    """Validate a stack read from ``path`` as ``kind`` ('images' or 'labels') with the
    data ``options`` (the config's ``data`` section)."""
    if kind == "labels":
        binary_labels(stack, path, options.get("label_cell_value"), options.get("unlabelled_value"))
    else:
        # The statistics say whether it can be normalised; the arrays are made at unpack.
        intensity_record(stack, path, options["normalization"], tuple(options["percentiles"]))


def cell_fractions(labels: np.ndarray) -> np.ndarray:
    """Per slice of ``labels`` (N, H, W), the cell class's share of its labelled pixels."""
    if not (labels == UNLABELLED).any():
        return labels.mean(axis=(1, 2), dtype=np.float64)
    cell = (labels == 1).sum(axis=(1, 2), dtype=np.float64)
    return cell / np.maximum((labels != UNLABELLED).sum(axis=(1, 2), dtype=np.float64), 1)


def unpack(inputs: dict[str, str | Path], outputs: dict[str, str | Path], options: dict) -> pd.DataFrame:
    """Unpack fetched stacks (.npy of ``fetch.fetch_stack``) into the arrays training and
    prediction read: images float32 (N, H, W) normalised per
    stack (``options['normalization']``, ``options['percentiles']``), labels uint8
    {0, 1} (``options['label_cell_value']``).

    ``inputs``: ``images`` and ``images_record`` (the fetched stack and its fetch record,
    whose ``source`` names the files in messages), and for a labelled set ``labels`` and
    ``labels_record``. ``outputs``: ``images``, ``labels`` (with labels), ``manifest``
    (a TSV with one row per slice: ``slice``, ``height``, ``width``, ``image_mean``,
    ``image_std`` of the normalised image, ``cell_fraction``, empty without labels) and
    ``record`` (JSON: the normalisation and its raw statistics, the voxel size, the
    sources, and every note and warning of reading and fetching). Returns the manifest.
    """
    images_path, labels_path = inputs["images"], inputs.get("labels")
    images_record, labels_record = inputs["images_record"], inputs.get("labels_record")
    fetched = {
        k: json.loads(Path(p).read_text()) for k, p in (("images", images_record), ("labels", labels_record)) if p
    }
    images_name = fetched.get("images", {}).get("source", str(images_path))
    images, normalisation = normalise_images(
        np.load(images_path),
        images_name,
        options["normalization"],
        tuple(options["percentiles"]),
    )
    labels = None
    if labels_path is not None:
        labels_name = fetched.get("labels", {}).get("source", str(labels_path))
        labels = binary_labels(
            np.load(labels_path), labels_name, options.get("label_cell_value"), options.get("unlabelled_value")
        )
        check_same_shape(images, labels, images_name, labels_name)
    count, height, width = images.shape
    manifest = pd.DataFrame(
        {
            "slice": np.arange(count),
            "height": height,
            "width": width,
            "image_mean": images.mean(axis=(1, 2), dtype=np.float64),
            "image_std": images.std(axis=(1, 2), dtype=np.float64),
            "cell_fraction": cell_fractions(labels) if labels is not None else np.nan,
        }
    )
    record = {
        "normalisation": normalisation.to_json(),
        "voxel_size": fetched["images"]["voxel_size"],
        "shape": list(images.shape),
        "sources": {k: v.get("source") for k, v in fetched.items()},
        "notes": [n for v in fetched.values() for n in v.get("notes", [])],
        "warnings": [w for v in fetched.values() for w in v.get("warnings", [])],
    }
    if labels is not None:
        painted = labels != UNLABELLED
        if painted.all():
            record["cell_fraction"] = float(labels.mean(dtype=np.float64))
        else:  # of the labelled pixels
            record["cell_fraction"] = float((labels == 1).sum(dtype=np.float64) / painted.sum(dtype=np.float64))
            record["labelled_fraction"] = float(painted.mean(dtype=np.float64))
        # Refused unless data.label_cell_value declared it; strokes have no such rule.
        if record["cell_fraction"] < 0.5 and painted.all():
            record["warnings"].append(
                f"{labels_name}: the cell class (data.label_cell_value = {options['label_cell_value']:g}) covers "
                f"{100 * record['cell_fraction']:.1f} % of the labelled pixels, less than the membrane; kept as "
                "declared. In membrane segmentation the cell interior is usually the majority: check the value."
            )
            log.warning("%s", record["warnings"][-1])
    np.save(outputs["images"], images)
    if labels is not None:
        np.save(outputs["labels"], labels)
    manifest.to_csv(outputs["manifest"], sep="\t", index=False, float_format="%.6g")
    Path(outputs["record"]).write_text(json.dumps(record, indent=2) + "\n")
    log.info(
        "unpacked %d slices of %d x %d from %s%s; images normalised by %s (raw %g to %g)",
        count,
        height,
        width,
        images_name,
        f" with labels from {labels_name}" if labels is not None else "",
        normalisation.method,
        normalisation.low,
        normalisation.high,
    )
    return manifest
