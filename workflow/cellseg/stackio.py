"""Reading a stack from what users bring: TIFF files of any common flavour, folders or
globs of single-section images, with their calibration; or a clear refusal.

What is accepted, and what happens to it (docs/input-formats.md repeats
this table for users):

| input | what cellseg does |
| --- | --- |
| multi-page TIFF, one page per section (Fiji, tifffile, Pillow, microscope software) | every page read, in file order |
| pages of different shapes | refused, listing the page count and the shapes found |
| reduced-resolution pages (``NewSubfileType`` bit 0: thumbnails, overviews, pyramid levels) | skipped, with a log line |
| ImageJ hyperstack, OME-TIFF | axes from the metadata: Z is the slice axis (T where there is no Z); a channel axis (C, or colour samples S) of more than one channel is refused unless ``data.channel`` picks one; Z and T both above one is refused |
| size-1 axes (an (N, 1, H, W) array written by tifffile) | dropped, with a log line |
| a page with colour samples (RGB, RGBA) | refused as colour (unless ``data.channel``); all samples equal: read as grey, with a log line |
| palette (indexed) images | a grey LUT applied, with a log line; a colour LUT refused |
| an OME-TIFF of several images | refused |
| a single 2-D page | a stack of one section (training refuses fewer sections than folds) |
| ``PhotometricInterpretation = MinIsWhite`` (Fiji's inverted binary masks) | values read as a viewer shows them (inverted), with a log line; 1-bit pages read as stored (tifffile writes bool arrays so) |
| LZW, Deflate, Zstd, PackBits, JPEG compression | decoded by tifffile with ``imagecodecs`` |
| a folder, or a glob pattern, of single-section TIFF or PNG files (Fiji's "Image Sequence") | files in natural order (``z2`` before ``z10``), all of one shape and dtype; each file named in errors |
| an OME-Zarr image (NGFF 0.4 or 0.5, a folder such as ``volume.ome.zarr``) | its full-resolution level, axes and physical sizes from its ``multiscales`` metadata (channels as for TIFF), read lazily |
| bioformats2raw output (an OME-Zarr whose root says ``bioformats2raw.layout``) | its one image series (group ``0``) read as above; several series refused, naming the path of each to give instead |
| ``~`` and ``$VARIABLES`` in a source | expanded |
| calibration: ImageJ ``spacing``/``unit`` and resolution tags, OME ``PhysicalSize*`` (Å to mm), TIFF resolution in centimetres | converted once into ``voxel_size`` (``records.VoxelSize``, micrometres); TIFF resolution in inches (the 72 dpi of most writers) is not a physical size and is ignored |

Every correction made while reading (an inversion, a skipped page, a dropped axis) is in
``Stack.notes``; every doubt about the result (sections likely on the wrong axis) in
``Stack.warnings``. Both are logged and recorded in the stack's provenance.

Read with ``lazy=True``, a stack is a dask array over tifffile's zarr view of the file (a
folder: one delayed read per file): nothing is decoded until asked for, so a stack larger
than memory is read section by section (``sections``). Every correction above is part of
that lazy array, so lazy and eager reads give the same pixels.
"""

from __future__ import annotations

import collections
import glob
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import tifffile

from .errors import InputError
from .records import MICROMETRES, UNCALIBRATED, SegmentationPlan, VoxelSize, unit_name

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
GLOB_CHARACTERS = set("*?[")


@dataclass
class Stack:
    """A stack as read: ``pixels`` (N, H, W) in the file's own dtype, values as a viewer
    shows them (a numpy array, or a dask array when read lazily); ``voxel_size`` in
    micrometres, converted from the file's unit here (z the section spacing, y and x the
    pixel size); ``notes`` the corrections made while
    reading, ``warnings`` the doubts about the result, both for the log and provenance."""

    pixels: np.ndarray
    voxel_size: VoxelSize = field(default_factory=VoxelSize)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def expand(source: str) -> str:
    """``~`` and environment variables of a source expanded (URLs are left alone)."""
    if source.startswith(("http://", "https://")):
        return source
    return os.path.expandvars(os.path.expanduser(source))


def exists(source: str) -> bool:
    """Whether a local source names something to read: a file, a folder or a matching glob."""
    path = expand(source)
    return Path(path).exists() or bool(GLOB_CHARACTERS & set(path) and glob.glob(path))


def read_source(source: str | Path, name: str | None = None, channel: int | None = None, lazy: bool = False) -> Stack:
    """Read a stack from a TIFF file, a folder or a glob of single-section images.

    ``name`` is how messages call the source (the URL of a downloaded copy, say);
    ``channel`` picks one channel of a multi-channel file (``data.channel``, or
    ``segment.channel`` for stacks to segment). Returns a
    ``Stack`` of pixels (N, H, W), N >= 1: a numpy array, or with ``lazy`` a dask array
    whose sections are decoded when asked for (read them with ``sections``). Raises
    ``InputError`` naming the source and what is wrong for anything it cannot read as one
    grey-scale stack (with ``lazy``, damaged pixel data is found by ``sections``).
    """
    path = expand(str(source))
    shown = name or str(source)
    if GLOB_CHARACTERS & set(path) and not Path(path).exists():
        files = _sections_of(path)
        if not files:
            raise InputError(f"{shown}: the pattern matches no file.")
        stack = _read_sections(files, shown, channel)
    elif _is_zarr(Path(path)):
        stack = _read_ome_zarr(Path(path), shown, channel)
    elif Path(path).is_dir():
        files = _sections_of(path)
        if not files:
            raise InputError(f"{shown} is a folder without any {', '.join(IMAGE_SUFFIXES)} file.")
        stack = _read_sections(files, shown, channel)
    elif not Path(path).is_file():
        raise InputError(f"{shown}: no such file.")
    else:
        stack = _read_file(Path(path), shown, channel, lazy=lazy)
        if stack.pixels.ndim == 2:
            stack.pixels = stack.pixels[None]
            stack.notes.append(f"{shown}: a single 2-D image, read as a stack of one section")
    stack = _checked(stack, shown)
    if not lazy:
        stack.pixels = _computed(stack.pixels, shown)
    return stack


def _sections_of(path: str) -> list[Path]:
    """The section files of a glob (every match) or a folder (its visible image files), in
    natural order."""
    if Path(path).is_dir():
        found = (
            str(p) for p in Path(path).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
    else:
        found = glob.glob(path)
    return [Path(f) for f in tifffile.natural_sorted(found)]


def source_files(source: str) -> list[str]:
    """The local files a source is read from, as ``read_source`` reads them: a file
    itself, a glob's matches, a folder's section files; of an OME-Zarr store, its root
    metadata (``zarr.json`` or ``.zattrs``, which a writer rewrites; its chunks are too
    many to list). [] for a URL or a source that does not exist."""
    path = expand(source)
    if source.startswith(("http://", "https://")) or not exists(source):
        return []
    if _is_zarr(Path(path)):
        return [str(Path(path) / name) for name in ("zarr.json", ".zattrs") if (Path(path) / name).is_file()][:1]
    if Path(path).is_file():
        return [path]
    return [str(f) for f in _sections_of(path)]


def source_identity(source: str) -> dict[str, list[int]]:
    """Each local file of ``source`` (``source_files``) to [size in bytes, modification
    time in ns]: what tells that a file was replaced under the same name."""
    return {file: [(stat := Path(file).stat()).st_size, stat.st_mtime_ns] for file in source_files(source)}


def sections(pixels, shown: str, count: int = 1):
    """The sections of a stack as read (numpy or dask, N x H x W), ``count`` at a time, as
    numpy arrays (``count`` x H x W, the last one shorter): a lazy stack is decoded one
    slab at a time. Raises ``InputError`` naming ``shown`` where the pixel data cannot be
    decoded (a missing codec, damaged compressed data) or tifffile reports damage."""
    for start in range(0, len(pixels), count):
        yield _computed(pixels[start : start + count], shown)


def _computed(array, shown: str) -> np.ndarray:
    """A (dask or numpy) array as numpy, decoding errors and tifffile's complaints
    turned into ``InputError``; dask's single-threaded scheduler keeps memory to one
    slab."""
    if not isinstance(array, da.Array):
        return np.asarray(array)
    complaints = _Collect()
    tifffile_log = logging.getLogger("tifffile")
    tifffile_log.addHandler(complaints)
    try:
        result = array.compute(scheduler="synchronous")
    except InputError:
        raise
    except (KeyError, ValueError) as error:
        if "imagecodecs" in str(error):
            raise InputError(
                f"{shown} is compressed with a codec ({error}) that tifffile decodes with the "
                "imagecodecs package; install it (pip install imagecodecs)."
            ) from error
        raise InputError(f"{shown}: its pixel data could not be decoded ({type(error).__name__}: {error}).") from error
    except tifffile.TiffFileError as error:
        raise InputError(
            f"{shown} is truncated or damaged: {error} (a download cut short, or an incomplete copy)."
        ) from error
    except Exception as error:  # damaged compressed data raises codec-specific types
        raise InputError(f"{shown}: its pixel data could not be decoded ({type(error).__name__}: {error}).") from error
    finally:
        tifffile_log.removeHandler(complaints)
    if complaints.messages:
        raise InputError(
            f"{shown} is truncated or damaged: tifffile reports {'; '.join(complaints.messages)} "
            "(a download cut short, or an incomplete copy)."
        )
    return result


def _checked(stack: Stack, shown: str) -> Stack:
    """Refuse an empty stack; warn where the axes look swapped."""
    count, height, width = stack.pixels.shape
    if 0 in stack.pixels.shape:
        raise InputError(f"{shown} is an empty stack of shape {stack.pixels.shape}.")
    if min(height, width) < count:
        stack.warnings.append(
            f"{shown}: read as {count} sections of {height} x {width} pixels; a section "
            "narrower than the number of sections suggests the axes are in the wrong order "
            "(sections on the last axis). Check the shape before trusting the results."
        )
    return stack


def _read_sections(files: list[Path], shown: str, channel: int | None) -> Stack:
    """One 2-D image per file, stacked in the order given: the first file read, every
    other file's header checked against it now and its pixels read when asked for (a
    file whose pixels then differ raises ``InputError`` from ``sections``)."""
    first = _read_file(files[0], str(files[0]), channel, lazy=False)
    header = _header(files[0])
    for file in files:
        found = header if file == files[0] else _header(file)
        if first.pixels.ndim != 2 or found[0] > 1:
            raise InputError(
                f"{file} (in {shown}) holds {found[0]} sections; a folder or pattern must list one 2-D image per file."
            )
        if found != header:
            raise InputError(
                f"{file} (in {shown}) is {_describe(found)}, but {files[0]} is "
                f"{_describe(header)}: every section must have one size and type."
            )

    def read(file: Path) -> np.ndarray:
        stack = _read_file(file, str(file), channel, lazy=False)
        if (stack.pixels.shape, stack.pixels.dtype) != (first.pixels.shape, first.pixels.dtype):
            raise InputError(
                f"{file} (in {shown}) reads as {stack.pixels.shape} {stack.pixels.dtype}, but "
                f"{files[0]} as {first.pixels.shape} {first.pixels.dtype}: every section must "
                "have one size and type."
            )
        return stack.pixels

    pixels = da.stack(
        [da.from_array(first.pixels)]
        + [da.from_delayed(dask.delayed(read)(file), first.pixels.shape, first.pixels.dtype) for file in files[1:]]
    )
    notes = [f"{shown}: {len(files)} sections read in natural order, {files[0].name} to {files[-1].name}"]
    return Stack(pixels, first.voxel_size, notes + first.notes)


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup"))


def _multiscale(attributes: dict, shown: str) -> dict:
    """The first image of an OME-Zarr group's ``multiscales`` metadata (NGFF 0.4 keeps it
    at the top of the attributes, 0.5 under ``ome``). Raises ``InputError`` without one."""
    multiscales = attributes.get("ome", attributes).get("multiscales")
    if not multiscales:
        raise InputError(
            f"{shown} is a Zarr store without OME-Zarr 'multiscales' metadata; cellseg reads OME-Zarr images "
            "(NGFF 0.4 or 0.5), such as those napari, ome-zarr-py or bioformats2raw write."
        )
    return multiscales[0]


def _full_resolution(group, shown: str) -> da.Array:
    """The full-resolution level of an OME-Zarr image group, lazily."""
    return da.from_zarr(group[_multiscale(dict(group.attrs), shown)["datasets"][0]["path"]])


def _bioformats2raw_series(root, path: Path, shown: str, notes: list[str]) -> tuple:
    """The one image of a bioformats2raw layout (its root holds no image; the series are
    the groups ``0``, ``1``, ... below it, listed in ``OME``'s ``series`` where written),
    and the name to call it by. Raises ``InputError`` naming each series' path when there
    are several: which one is the stack is the user's choice. The layout is described in
    the NGFF specification's "bioformats2raw.layout" section."""
    names = list(dict(root["OME"].attrs).get("series", [])) if "OME" in root else []
    if not names:
        names = tifffile.natural_sorted(name for name, _ in root.groups() if name.isdigit())
    if not names:
        raise InputError(f"{shown} has the bioformats2raw layout but no image series (no group 0, 1, ... below it).")
    if len(names) > 1:
        raise InputError(
            f"{shown} is bioformats2raw output with {len(names)} image series; give the one to read as the "
            f"source: {', '.join(str(path / name) for name in names)}."
        )
    notes.append(f"{shown}: bioformats2raw layout, its one image series {names[0]} read")
    return root[names[0]], f"{shown}/{names[0]}"


def _read_ome_zarr(path: Path, shown: str, channel: int | None) -> Stack:
    """The full-resolution level of an OME-Zarr image, lazily, with its physical sizes."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attributes = dict(group.attrs)
    except Exception as error:  # zarr raises many types for a damaged store
        raise InputError(f"{shown} could not be opened as a Zarr group ({type(error).__name__}: {error}).") from error
    notes: list[str] = []
    if "bioformats2raw.layout" in attributes.get("ome", attributes):
        group, shown = _bioformats2raw_series(group, path, shown, notes)
        attributes = dict(group.attrs)
    image = _multiscale(attributes, shown)
    axes = [a["name"] if isinstance(a, dict) else a for a in image["axes"]]
    level = image["datasets"][0]
    pixels = da.from_zarr(group[level["path"]])
    scale = next((t["scale"] for t in level.get("coordinateTransformations", []) if t["type"] == "scale"), None)
    voxel = {}
    units = {a["name"]: a.get("unit") for a in image["axes"] if isinstance(a, dict)}
    for name, size in zip(axes, scale or [], strict=False):
        unit = _unit(units.get(name))  # NGFF names units as UDUNITS-2 does: micrometer, nanometer
        if name in "zyx" and unit is not None:
            voxel[name] = float(size) * MICROMETRES[unit]
    notes.append(
        f"{shown}: OME-Zarr image, level {level['path']} of {len(image['datasets'])} (full resolution), "
        f"axes {''.join(axes)}"
    )
    letters = "".join({"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}.get(a, "Q") for a in axes)
    return Stack(_to_sections(pixels, letters, shown, channel, notes), VoxelSize(**voxel), notes)


def _header(path: Path) -> tuple:
    """(pages, shape, dtype, photometric) of an image file, without decoding its pixels."""
    if path.suffix.lower() == ".png":
        from PIL import Image

        try:
            with Image.open(path) as image:
                return 1, image.size[::-1], image.mode, None
        except Exception as error:
            raise InputError(f"{path} could not be read as a PNG image ({type(error).__name__}: {error}).") from error
    try:
        with tifffile.TiffFile(path) as tiff:
            main = [p for p in tiff.pages if not p.subfiletype & 1]
            return len(main), main[0].shape, str(main[0].dtype), int(main[0].photometric)
    except (tifffile.TiffFileError, OSError) as error:
        raise InputError(f"{path} is not a readable TIFF file ({error}).") from error


def _describe(header: tuple) -> str:
    _pages, shape, dtype, photometric = header
    inverted = " (MinIsWhite)" if photometric == tifffile.PHOTOMETRIC.MINISWHITE else ""
    return f"{' x '.join(map(str, shape))} {dtype}{inverted}"


def _read_file(path: Path, shown: str, channel: int | None, lazy: bool) -> Stack:
    """A TIFF or PNG file as (N, H, W) or, for a single section, (H, W): a dask array that
    keeps the file open with ``lazy``, else a numpy array."""
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{shown} is empty (0 bytes): an interrupted copy or download?")
    if path.suffix.lower() == ".png":
        return _read_png(path, shown, channel)
    try:
        tiff = tifffile.TiffFile(path)
    except tifffile.TiffFileError as error:
        raise InputError(
            f"{shown} is not a TIFF file ({error}); cellseg reads TIFF stacks, OME-Zarr images "
            "(a folder such as volume.ome.zarr), and folders or globs of TIFF or PNG sections."
        ) from error
    except OSError as error:
        raise InputError(f"{shown} could not be opened ({error}).") from error
    # tifffile reads a damaged file without raising: it logs what it skipped (pages past
    # the end, invalid offsets) and returns what it found. Here that is damage.
    complaints = _Collect()
    tifffile_log = logging.getLogger("tifffile")
    tifffile_log.addHandler(complaints)
    try:
        _refuse_truncated(tiff, shown)
        notes: list[str] = []
        pixels, axes = _main_image(tiff, shown, notes)
        pixels = _as_viewed(pixels, tiff.pages.first, shown, notes)
        pixels = _to_sections(pixels, axes, shown, channel, notes)
        voxel_size = _calibration(tiff)
        if not lazy:
            pixels = _computed(pixels, shown)
    except tifffile.TiffFileError as error:
        raise InputError(
            f"{shown} is truncated or damaged: {error} (a download cut short, or an incomplete copy)."
        ) from error
    finally:
        tifffile_log.removeHandler(complaints)
        if not lazy:
            tiff.close()  # a lazy stack reads from the open file later
    if complaints.messages:
        raise InputError(
            f"{shown} is truncated or damaged: tifffile reports {'; '.join(complaints.messages)} "
            "(a download cut short, or an incomplete copy)."
        )
    return Stack(pixels, voxel_size, notes)


class _Collect(logging.Handler):
    """Collects the warnings and errors a library logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _read_png(path: Path, shown: str, channel: int | None) -> Stack:
    from PIL import Image  # Pillow: matplotlib's dependency, declared in pyproject

    try:
        with Image.open(path) as image:
            if image.mode == "P":  # a palette: its colours (grey ones collapse to grey below)
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            pixels = np.asarray(image)
    except Exception as error:  # Pillow raises many types for damaged files
        raise InputError(f"{shown} could not be read as a PNG image ({type(error).__name__}: {error}).") from error
    axes = "YXS" if pixels.ndim == 3 else "YX"
    notes: list[str] = []
    return Stack(_computed(_to_sections(da.from_array(pixels), axes, shown, channel, notes), shown), notes=notes)


def _refuse_truncated(tiff: tifffile.TiffFile, shown: str) -> None:
    """tifffile reads a truncated file without raising (a warning, and zeros where the
    pixel data is missing); here that is damage."""
    size = tiff.filehandle.size
    for page in tiff.pages:
        # A strip of no bytes (an empty stack's page) points nowhere: not damage.
        if any(n and o + n > size for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)):
            raise InputError(
                f"{shown} is truncated: the pixel data of page {page.index} ends past the "
                f"file's {size} bytes (a download cut short, or an incomplete copy)."
            )


def _main_image(tiff: tifffile.TiffFile, shown: str, notes: list[str]) -> tuple[np.ndarray, str]:
    """Every full-resolution page as one array and its axes; reduced pages skipped."""
    pages = list(tiff.pages)
    if not pages:
        raise InputError(f"{shown} holds no image (a TIFF header without pages): an interrupted write or copy?")
    if pages and 0 in pages[0].shape:  # tifffile writes an empty stack as one page of no pixels
        raise InputError(f"{shown} is an empty stack of shape {tiff.series[0].shape}.")
    main = [p for p in pages if not p.subfiletype & 1]
    reduced = len(pages) - len(main)
    if reduced:
        notes.append(
            f"{shown}: skipped {reduced} reduced-resolution page(s) (TIFF NewSubfileType: a "
            "thumbnail, overview or pyramid level)"
        )
    if tiff.is_ome and len(tiff.series) > 1:
        raise InputError(
            f"{shown} is an OME-TIFF holding {len(tiff.series)} images (series of shapes "
            f"{', '.join(str(s.shape) for s in tiff.series)}); cellseg reads one image of "
            "sections per file. Save each image to a file of its own."
        )
    shapes = collections.Counter((p.shape, str(p.dtype)) for p in main)
    if len(shapes) > 1:
        found = "; ".join(f"{n} of {' x '.join(map(str, s))} {d}" for (s, d), n in shapes.items())
        raise InputError(
            f"{shown} has {len(main)} pages of different shapes ({found}); cellseg reads a "
            "stack whose every section has one size. Save the sections that belong together "
            "as one stack."
        )
    # A series that holds exactly the main pages keeps the axes its metadata names.
    for series in tiff.series:
        if len(series.pages) == len(main) and not series.pages[0].subfiletype & 1:
            return _lazy(series), series.axes
    pixels = da.stack([_lazy(p) for p in main])
    return pixels, "I" + main[0].axes


def _lazy(item) -> da.Array:
    """A tifffile series or page as a dask array over its zarr view: one chunk a page."""
    return da.from_zarr(item.aszarr())


def _as_viewed(pixels: np.ndarray, page, shown: str, notes: list[str]) -> np.ndarray:
    """Values as a viewer shows them: MinIsWhite pages (0 = white) inverted; grey
    palettes (a LUT) applied.

    Bilevel (1-bit) pages are the exception: MinIsWhite is the TIFF default for them, and
    tifffile writes every bool array so, meaning the stored bits; they are read as stored.
    """
    if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
        return _grey_palette(pixels, page, shown, notes)
    if page.photometric != tifffile.PHOTOMETRIC.MINISWHITE:
        return pixels
    if page.bitspersample == 1:
        notes.append(f"{shown}: 1-bit pages tagged MinIsWhite (the TIFF default for bilevel images) read as stored")
        return pixels
    if pixels.dtype.kind == "u":
        inverted = (pixels.dtype.type(2**page.bitspersample - 1) - pixels).astype(pixels.dtype)
    else:
        raise InputError(
            f"{shown} stores {pixels.dtype} pixels tagged PhotometricInterpretation = "
            "MinIsWhite (0 = white); cellseg inverts only unsigned integer pixels. Save it "
            "as MinIsBlack."
        )
    notes.append(
        f"{shown}: tagged PhotometricInterpretation = MinIsWhite (inverted, as Fiji saves "
        f"masks with an inverting LUT); values inverted to read as a viewer shows them "
        f"(v -> {2**page.bitspersample - 1} - v)"
    )
    return inverted


def _grey_palette(pixels: np.ndarray, page, shown: str, notes: list[str]) -> np.ndarray:
    """A palette (indexed) image through its colour map, which must be grey."""
    colormap = page.colormap  # (3, 2**bits) uint16
    if colormap is None or not (np.array_equal(colormap[0], colormap[1]) and np.array_equal(colormap[0], colormap[2])):
        raise InputError(
            f"{shown} is a palette (indexed colour) image with a colour LUT; cellseg reads "
            "grey-scale values. Save the grey values themselves (in Fiji: Image > Type > 8-bit)."
        )
    grey = colormap[0].astype(np.float64) / 65535 * np.iinfo(pixels.dtype).max
    notes.append(f"{shown}: palette image; its grey LUT applied to read values as a viewer shows them")
    dtype = pixels.dtype
    return pixels.map_blocks(lambda block: np.round(grey[block]).astype(dtype), dtype=dtype)


def _to_sections(pixels: np.ndarray, axes: str, shown: str, channel: int | None, notes: list[str]) -> np.ndarray:
    """(N, H, W) or (H, W) from an array and its axes (tifffile's letters)."""
    axes = axes.upper()
    if "S" in axes and pixels.shape[axes.index("S")] in (3, 4):
        samples = np.moveaxis(pixels, axes.index("S"), 0)
        grey = (samples[0] == samples[1]).all() & (samples[0] == samples[2]).all()
        if len(samples) == 4:
            grey = grey & (samples[3].min() == samples[3].max())
        if _computed(grey, shown):
            pixels, axes = samples[0], axes.replace("S", "")
            notes.append(f"{shown}: RGB samples all equal (grey saved as colour), read as one grey channel")
    for letter in "SC":  # colour samples, then channels
        if letter in axes and pixels.shape[axes.index(letter)] > 1:
            size = pixels.shape[axes.index(letter)]
            what = (
                {2: "samples (grey and alpha)"}.get(size, "colour samples (RGB/RGBA)") if letter == "S" else "channels"
            )
            if channel is None:
                planar = (
                    " If these are sections, not colours: tifffile saves an array of 3 or 4 "
                    "sections as planar RGB unless told otherwise; save it with "
                    "photometric='minisblack'."
                    if letter == "S" and axes.index("S") == 0
                    else ""
                )
                raise InputError(
                    f"{shown} has {size} {what} (axis {letter} of its axes {axes}, shape "
                    f"{pixels.shape}); cellseg segments one grey-scale channel. Set the channel "
                    "to use (0 first): data.channel for the training and test stacks, "
                    "segment.channel for stacks to segment (it leaves the models alone); or "
                    f"convert the file to one channel.{planar}"
                )
            if not 0 <= channel < size:
                raise InputError(
                    f"{shown} has {size} {what}; channel {channel} (data.channel or segment.channel) is not one of "
                    f"them (0 to {size - 1})."
                )
            pixels = np.take(pixels, channel, axis=axes.index(letter))
            axes = axes.replace(letter, "")
            notes.append(f"{shown}: channel {channel} of {size} {what} used (the channel setting)")
    dropped = [f"{a} (size 1)" for a, n in zip(axes, pixels.shape, strict=True) if n == 1 and a not in "YX"]
    if dropped:
        keep = [i for i, (a, n) in enumerate(zip(axes, pixels.shape, strict=True)) if n > 1 or a in "YX"]
        pixels = pixels.reshape([pixels.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
        notes.append(f"{shown}: dropped axes {', '.join(dropped)}")
    others = [i for i, a in enumerate(axes) if a not in "YX"]
    if len(others) > 1:
        sizes = ", ".join(f"{axes[i]} = {pixels.shape[i]}" for i in others)
        raise InputError(
            f"{shown} has axes {axes} of shape {pixels.shape} ({sizes}); cellseg reads one "
            "axis of sections (Z, or T where there is no Z). Save one Z stack, or one time "
            "series, per file (with tifffile: metadata={'axes': 'ZYX'}, or 'ZCYX' with "
            "data.channel or segment.channel for channels)."
        )
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{shown} has axes {axes} of shape {pixels.shape}, without both Y and X.")
    order = [*others, axes.index("Y"), axes.index("X")]
    return np.transpose(pixels, order)


def _unit(value) -> str | None:
    return unit_name(value) if value else None


def _calibration(tiff: tifffile.TiffFile) -> VoxelSize:
    """Voxel size from ImageJ or OME metadata, or TIFF resolution in centimetres."""
    voxel = {"z": None, "y": None, "x": None, "unit": None}
    page = tiff.pages.first
    if tiff.is_ome:
        pixels = tifffile.xml2dict(tiff.ome_metadata).get("OME", {}).get("Image", {})
        pixels = (pixels[0] if isinstance(pixels, list) else pixels).get("Pixels", {})
        voxel["unit"] = "micron"
        for axis in "zyx":
            size = pixels.get(f"PhysicalSize{axis.upper()}")
            unit = _unit(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm"))  # OME's default unit
            if size and unit is not None:
                voxel[axis] = float(size) * MICROMETRES[unit]
    elif tiff.is_imagej:
        metadata = tiff.imagej_metadata or {}
        unit = _unit(metadata.get("unit"))
        if unit is not None:
            voxel["unit"] = unit
            voxel["x"], voxel["y"] = _pixel_size(page)
            spacing = metadata.get("spacing")
            voxel["z"] = float(spacing) if spacing else None
    elif page.resolutionunit == tifffile.RESUNIT.CENTIMETER:
        x, y = _pixel_size(page)
        if x is not None:
            voxel.update(unit="micron", x=x * 1e4, y=y * 1e4)
    return VoxelSize.in_unit(voxel["z"], voxel["y"], voxel["x"], voxel["unit"])


def _pixel_size(page) -> tuple[float | None, float | None]:
    """Pixel size (x, y) in the resolution's unit, from its pixels per unit."""
    try:
        x, y = page.get_resolution()
    except Exception:  # no resolution tags
        return None, None
    if not x or not y or (x == 1 and y == 1):  # 1 pixel per unit: uncalibrated
        return None, None
    return 1.0 / x, 1.0 / y


def write_stack(
    path: str | Path,
    pixels: np.ndarray,
    voxel_size: VoxelSize = UNCALIBRATED,
    display_range: tuple[float, float] | None = None,
) -> None:
    """Write ``pixels`` (N, H, W) or (H, W) as a calibrated ImageJ hyperstack (axes ZYX
    or YX) that Fiji and napari open at the right scale.

    ``voxel_size`` in micrometres (pixel size as the resolution, section spacing as
    ImageJ's ``spacing``, unit ``micron``); ``display_range`` (min, max) for
    ImageJ's display, (0, 1) for probability maps. dtypes ImageJ cannot hold (uint32
    instance labels, say) are written as OME-TIFF with its physical sizes instead, which
    Fiji (Bio-Formats) and napari read at scale.
    """
    tifffile.imwrite(path, pixels, **_calibrated_options(pixels.ndim, pixels.dtype, voxel_size, display_range))


def stack_on_disk(
    path: str | Path,
    shape: tuple[int, ...],
    dtype,
    voxel_size: VoxelSize = UNCALIBRATED,
    display_range: tuple[float, float] | None = None,
) -> np.memmap:
    """A calibrated stack file as ``write_stack`` writes it, created empty and returned as
    a writable memory map: filled slab by slab, it never needs the whole stack in memory.
    Flush it (or delete it) when done."""
    return tifffile.memmap(
        path, shape=shape, dtype=dtype, **_calibrated_options(len(shape), np.dtype(dtype), voxel_size, display_range)
    )


def _calibrated_options(ndim: int, dtype: np.dtype, voxel_size: VoxelSize, display_range) -> dict:
    """tifffile.imwrite's options for a calibrated ImageJ hyperstack, or OME-TIFF for
    dtypes ImageJ cannot hold."""
    axes = "ZYX" if ndim == 3 else "YX"
    sizes = dict(zip("zyx", voxel_size.axes, strict=True))
    if dtype not in (np.uint8, np.uint16, np.float32):
        metadata = {"axes": axes}
        for axis in axes.lower():
            if sizes[axis]:
                metadata[f"PhysicalSize{axis.upper()}"] = sizes[axis]
                metadata[f"PhysicalSize{axis.upper()}Unit"] = "µm"
        return {"ome": True, "photometric": "minisblack", "metadata": metadata}
    metadata: dict = {"axes": axes}
    options: dict = {"imagej": True, "photometric": "minisblack", "metadata": metadata}
    if voxel_size.known_any:
        metadata["unit"] = "micron"
        if voxel_size.z and ndim == 3:
            metadata["spacing"] = voxel_size.z
        if voxel_size.pixel_known:
            options["resolution"] = (1.0 / voxel_size.x, 1.0 / voxel_size.y)
    if display_range is not None:
        metadata["min"], metadata["max"] = display_range
    return options


# Writing a segmented stack from its slab jobs' arrays (.npy files, in order): as
# calibrated TIFF stacks and as one OME-Zarr image with its label image, in bounded memory.
SEGMENTATION_LAYERS = ("probability", "uncertainty", "labels")


def gathered(paths: list[str | Path]) -> da.Array:
    """The slabs' arrays (.npy files, in order) as one lazy stack, a chunk a slab: each
    slab is read when its chunk is needed and freed after."""
    parts = []
    for path in paths:
        header = np.load(path, mmap_mode="r")
        parts.append(da.from_delayed(dask.delayed(np.load)(path), header.shape, header.dtype))
        del header
    return da.concatenate(parts)


def write_tiff_stacks(
    plan: SegmentationPlan, slabs: dict[str, list[str | Path]], outputs: dict[str, str | Path]
) -> None:
    """The slabs' ``probability``, ``uncertainty`` and ``labels`` as calibrated TIFF stacks
    (``stack_on_disk``: ImageJ hyperstacks, OME-TIFF (BigTIFF past 4 GB) for uint32
    labels), filled one slab at a time. ImageJ hyperstacks past 4 GB are written as
    ImageJ itself writes them, which is logged."""
    for key, display in zip(SEGMENTATION_LAYERS, ((0.0, 1.0), (0.0, 0.5), None), strict=True):
        first = np.load(slabs[key][0], mmap_mode="r")
        output = stack_on_disk(outputs[key], plan.shape, first.dtype, plan.voxel_size, display)
        del output
        for (start, stop), path in zip(plan.slabs, slabs[key], strict=True):
            # Mapped for one slab only: written pages leave the process with the mapping.
            # A one-section file maps as (H, W): seen as the stack it is.
            output = tifffile.memmap(outputs[key], mode="r+").reshape(plan.shape)
            output[start:stop] = np.load(path, mmap_mode="r")
            output.flush()
            del output
        log.info("wrote %s (%s)", outputs[key], " x ".join(map(str, plan.shape)))
        if key != "labels" and Path(outputs[key]).stat().st_size > 2**32:
            log.warning(
                "%s is over 4 GB: written as ImageJ writes such stacks (one directory, the sections "
                "contiguous after it), which Fiji and tifffile read whole but other TIFF readers see as "
                "one section; segmentation.ome.zarr holds the same values for any reader",
                outputs[key],
            )


OME_ZARR_CHANNELS = [
    {
        "label": "cell probability",
        "color": "FFFFFF",
        "active": True,
        "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0},
    },
    {
        "label": "fold disagreement",
        "color": "FF00FF",
        "active": False,
        "window": {"start": 0.0, "end": 0.5, "min": 0.0, "max": 0.5},
    },
]


def write_ome_zarr(plan: SegmentationPlan, slabs: dict[str, list[str | Path]], output: str | Path) -> None:
    """The slabs as one OME-Zarr image (NGFF, written by ome-zarr-py), which napari and
    Fiji's N5/Zarr readers open at scale: the image has channels ``cell probability`` and
    ``fold disagreement`` (float32, axes c, z, y, x), the instance labels are its label
    image ``labels/cells`` (uint32, z, y, x); chunks of one section, a resolution pyramid
    (x2 in y and x per level, down to about 256 pixels), physical sizes in micrometres
    where the stack's voxel size is known. Written from the slabs lazily: memory holds a
    few sections, whatever the stack's length."""
    import zarr
    from ome_zarr.writer import write_image, write_labels

    output = Path(output)
    if output.exists():
        shutil.rmtree(output)  # a partial store of a killed run
    count, height, width = plan.shape
    levels, factor = [], 2
    while min(height, width) // factor >= 256:
        levels.append(factor)
        factor *= 2
    scale, units = _ngff_scale(plan.voxel_size, output)
    image = da.stack([gathered(slabs["probability"]), gathered(slabs["uncertainty"])])
    group = zarr.open_group(str(output), mode="w")
    # One section a chunk at every level of the pyramid.
    sizes = [(height // f, width // f) for f in [1, *levels]]
    write_image(
        image,
        group,
        scale_factors=levels,
        axes="czyx",
        scale={"c": 1.0} | scale,
        axes_units=units,
        storage_options=[{"chunks": (1, 1, *size)} for size in sizes],
        name=plan.source,
        omero={"channels": OME_ZARR_CHANNELS},
    )
    write_labels(
        gathered(slabs["labels"]),
        group,
        name="cells",
        scaler=None,
        scale_factors=levels,
        axes="zyx",
        label_metadata={"source": {"image": "../../"}},
        scale=scale,
        axes_units=units,
        storage_options=[{"chunks": (1, *size)} for size in sizes],
    )
    log.info("wrote %s: %d sections of %d x %d, %d pyramid level(s)", output, count, height, width, len(levels) + 1)


def _ngff_scale(voxel: VoxelSize, output: Path) -> tuple[dict, dict | None]:
    """The physical size of a voxel along z, y, x in micrometres, and the axes' units, for
    NGFF metadata. NGFF needs a number for every axis: an unknown section spacing
    becomes the pixel size (isotropic, as a viewer assumes without calibration), which is
    logged; an uncalibrated stack is scaled in pixels, without units."""
    if voxel.x is None:
        return dict.fromkeys("zyx", 1.0), None
    scale = {"y": voxel.x if voxel.y is None else voxel.y, "x": voxel.x}
    if voxel.z is None:
        log.warning(
            "%s: the section spacing is unknown; the OME-Zarr's z scale is set to the pixel size (%g "
            "micron, isotropic). Calibrate the stack's section spacing (Fiji: Image > Properties, voxel depth) "
            "to record the real one.",
            output,
            scale["x"],
        )
    scale["z"] = scale["x"] if voxel.z is None else voxel.z
    return {axis: scale[axis] for axis in "zyx"}, dict.fromkeys("zyx", "micrometer")


def read_segmentation(paths: dict[str, str | Path]) -> dict[str, da.Array | np.ndarray]:
    """A segmented stack as written, lazily (dask arrays over the OME-Zarr store
    ``paths['zarr']`` when given, else memory maps of the TIFF files ``paths[key]``;
    N x H x W): ``probability``, ``uncertainty`` and ``labels``."""
    if paths.get("zarr"):
        import zarr

        shown = str(paths["zarr"])
        group = zarr.open_group(shown, mode="r")
        image = _full_resolution(group, shown)
        return {
            "probability": image[0],
            "uncertainty": image[1],
            "labels": _full_resolution(group["labels/cells"], shown),
        }
    return {key: tifffile.memmap(paths[key], mode="r") for key in SEGMENTATION_LAYERS}
