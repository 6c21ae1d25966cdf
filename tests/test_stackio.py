"""Reading stacks as Fiji, ilastik, microscope software, Pillow and numpy/tifffile write
them: each kind made here the way those tools write it, and the values read checked."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cellseg.errors import InputError
from cellseg.records import VoxelSize
from cellseg.stackio import read_source, write_stack
from cellseg.stacks import binary_labels

RNG = np.random.default_rng(0)
VOLUME = RNG.integers(0, 256, (6, 40, 48), dtype=np.uint8)


def pages(path, arrays, **options):
    """One TIFF page per array, with no shape metadata (as most writers do)."""
    with tifffile.TiffWriter(path) as tiff:
        for array in arrays:
            tiff.write(array, photometric="minisblack", metadata=None, **options)
    return path


def test_a_plain_multipage_tiff_reads_every_page_in_order(tmp_path):
    stack = read_source(pages(tmp_path / "plain.tif", VOLUME))
    assert np.array_equal(stack.pixels, VOLUME) and stack.notes == [] and stack.warnings == []


# -- label polarity ----------------------------------------------------------------------


def test_a_fiji_mask_saved_inverted_with_min_is_white_reads_as_fiji_shows_it(tmp_path):
    cell = RNG.random((4, 30, 30)) > 0.25
    shown = np.where(cell, 255, 0).astype(np.uint8)  # what Fiji displays: 255 = cell
    # Fiji's binary masks with an inverting LUT store the values flipped, tagged MinIsWhite.
    tifffile.imwrite(tmp_path / "mask.tif", 255 - shown, photometric="miniswhite")
    stack = read_source(tmp_path / "mask.tif")
    assert np.array_equal(stack.pixels, shown)
    assert "MinIsWhite" in stack.notes[0] and "inverted" in stack.notes[0]
    assert np.array_equal(binary_labels(stack.pixels, "mask.tif"), cell)


def test_min_is_white_floats_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", RNG.random((2, 8, 8)).astype(np.float32), photometric="miniswhite")
    with pytest.raises(InputError, match="MinIsWhite"):
        read_source(tmp_path / "f.tif")


# -- stack structure ---------------------------------------------------------------------


def test_pages_of_different_shapes_are_refused_listing_them(tmp_path):
    arrays = [VOLUME[0]] * 6 + [RNG.integers(0, 255, (40, 52), dtype=np.uint8)] * 4
    with pytest.raises(InputError) as raised:
        read_source(pages(tmp_path / "mixed.tif", arrays))
    message = str(raised.value)
    assert "has 10 pages of different shapes" in message
    assert "6 of 40 x 48 uint8" in message and "4 of 40 x 52 uint8" in message


@pytest.mark.parametrize("shaped", [False, True], ids=["generic", "tifffile-shaped"])
def test_a_thumbnail_page_before_the_sections_is_skipped(tmp_path, shaped):
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tiff:
        tiff.write(VOLUME[0, ::4, ::4], subfiletype=1, photometric="minisblack", metadata=None)
        for section in VOLUME:
            tiff.write(section, photometric="minisblack", **({} if shaped else {"metadata": None}))
    stack = read_source(tmp_path / "thumb.tif")
    assert np.array_equal(stack.pixels, VOLUME)
    assert "skipped 1 reduced-resolution page" in stack.notes[0]


def test_a_single_rgb_page_is_refused_as_colour(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", RNG.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="3 colour samples"):
        read_source(tmp_path / "rgb.tif")
    Image.fromarray(RNG.integers(0, 255, (20, 20, 4), dtype=np.uint8), "RGBA").save(tmp_path / "rgba.tif")
    with pytest.raises(InputError, match="4 colour samples"):
        read_source(tmp_path / "rgba.tif")


def test_data_channel_picks_one_colour_sample_of_a_stack(tmp_path):
    colour = RNG.integers(0, 255, (5, 20, 24, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", colour, photometric="rgb")
    stack = read_source(tmp_path / "rgb.tif", channel=1)
    assert np.array_equal(stack.pixels, colour[..., 1]) and "channel 1 of 3" in stack.notes[0]


def test_size_one_axes_of_a_tifffile_array_are_dropped(tmp_path):
    tifffile.imwrite(tmp_path / "n1hw.tif", VOLUME[:, None])
    stack = read_source(tmp_path / "n1hw.tif")
    assert np.array_equal(stack.pixels, VOLUME) and "dropped axes" in stack.notes[0]


def test_an_imagej_hyperstack_reads_z_and_its_calibration_and_refuses_channels(tmp_path):
    hyperstack = RNG.integers(0, 60000, (6, 2, 40, 48), dtype=np.uint16)  # Z, C, Y, X
    tifffile.imwrite(
        tmp_path / "fiji.tif",
        hyperstack,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.004),
        metadata={"axes": "ZCYX", "spacing": 0.05, "unit": "micron"},
    )
    with pytest.raises(InputError, match=r"2 channels \(axis C of its axes ZCYX") as refused:
        read_source(tmp_path / "fiji.tif")
    # Both keys named: data.channel for the training stacks retrains, segment.channel does not.
    assert "data.channel for the training" in str(refused.value) and "segment.channel for stacks to segment" in str(
        refused.value
    )
    stack = read_source(tmp_path / "fiji.tif", channel=1)
    assert np.array_equal(stack.pixels, hyperstack[:, 1])
    assert stack.voxel_size.to_json() == pytest.approx({"z": 0.05, "y": 0.004, "x": 0.004, "unit": "micron"})


def test_an_imagej_time_series_without_z_uses_t_and_z_with_t_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", VOLUME, imagej=True, metadata={"axes": "TYX"})
    assert np.array_equal(read_source(tmp_path / "t.tif").pixels, VOLUME)
    tifffile.imwrite(tmp_path / "tz.tif", VOLUME.reshape(2, 3, 40, 48), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match="T = 2, Z = 3"):
        read_source(tmp_path / "tz.tif")


def test_an_ome_tiff_reads_its_axes_and_physical_size_in_nanometres(tmp_path):
    volume = RNG.integers(0, 4000, (6, 2, 40, 48), dtype=np.uint16)
    tifffile.imwrite(
        tmp_path / "ome.tif",
        volume,
        ome=True,
        metadata={
            "axes": "ZCYX",
            "PhysicalSizeX": 4.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 4.0,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 50.0,
            "PhysicalSizeZUnit": "nm",
        },
    )
    stack = read_source(tmp_path / "ome.tif", channel=0)
    assert np.array_equal(stack.pixels, volume[:, 0])
    assert stack.voxel_size.to_json() == pytest.approx({"z": 0.05, "y": 0.004, "x": 0.004, "unit": "micron"})


def test_tiff_resolution_in_centimetres_is_a_pixel_size_and_72_dpi_is_not(tmp_path):
    tifffile.imwrite(tmp_path / "cm.tif", VOLUME, resolution=(25000, 25000), resolutionunit="CENTIMETER")
    assert read_source(tmp_path / "cm.tif").voxel_size.to_json() == pytest.approx(
        {"z": None, "y": 0.4, "x": 0.4, "unit": "micron"}
    )
    tifffile.imwrite(tmp_path / "dpi.tif", VOLUME, resolution=(72, 72), resolutionunit="INCH")
    assert not read_source(tmp_path / "dpi.tif").voxel_size.known_any


def test_sections_on_the_last_axis_are_read_with_a_warning(tmp_path):
    swapped = RNG.integers(0, 255, (96, 128, 10), dtype=np.uint8)  # 10 sections saved as the last axis
    stack = read_source(pages(tmp_path / "swapped.tif", swapped))
    assert stack.pixels.shape == (96, 128, 10)
    assert "96 sections of 128 x 10" in stack.warnings[0] and "wrong order" in stack.warnings[0]


def test_a_single_2d_image_is_a_stack_of_one_section(tmp_path):
    Image.fromarray(VOLUME[0]).save(tmp_path / "flat.tif")
    stack = read_source(tmp_path / "flat.tif")
    assert np.array_equal(stack.pixels, VOLUME[:1]) and "a single 2-D image" in stack.notes[0]


# -- compression ------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_lossless_compressed_tiffs_read_exactly(tmp_path, compression):
    tifffile.imwrite(tmp_path / "c.tif", VOLUME, compression=compression, photometric="minisblack")
    assert np.array_equal(read_source(tmp_path / "c.tif").pixels, VOLUME)


def test_jpeg_compressed_tiffs_read_close_to_the_original(tmp_path):
    smooth = np.repeat(np.repeat(VOLUME[:, :10, :12], 4, axis=1), 4, axis=2)
    tifffile.imwrite(
        tmp_path / "j.tif", smooth, compression="jpeg", compressionargs={"level": 95}, photometric="minisblack"
    )
    read = read_source(tmp_path / "j.tif").pixels
    assert read.shape == smooth.shape and np.abs(read.astype(int) - smooth).mean() < 4


def test_a_missing_codec_is_named_as_the_cause(tmp_path):
    """A Python without imagecodecs (blocked in a child process, not mocked) reading LZW."""
    import subprocess
    import sys

    tifffile.imwrite(tmp_path / "lzw.tif", VOLUME, compression="lzw", photometric="minisblack")
    code = (
        "import sys; sys.modules['imagecodecs'] = None\n"
        "from cellseg.stackio import read_source\n"
        f"read_source({str(tmp_path / 'lzw.tif')!r})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "InputError" in result.stderr and "imagecodecs" in result.stderr and "LZW" in result.stderr


def test_damaged_files_name_their_actual_cause(tmp_path):
    tifffile.imwrite(tmp_path / "whole.tif", VOLUME, photometric="minisblack")
    (tmp_path / "cut.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:-500])
    with pytest.raises(InputError, match=r"cut\.tif is truncated"):
        read_source(tmp_path / "cut.tif")
    (tmp_path / "notes.tif").write_text("not a tiff")
    with pytest.raises(InputError, match=r"notes\.tif is not a TIFF file.*OME-Zarr"):
        read_source(tmp_path / "notes.tif")
    for name in ("zero.tif", "zero.png"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InputError, match=rf"{name} is empty \(0 bytes\)"):
            read_source(tmp_path / name)


# -- folders, globs and paths -----------------------------------------------------------


def test_a_folder_of_sections_is_read_in_natural_order(tmp_path):
    folder = tmp_path / "sections"
    folder.mkdir()
    for index in range(12):  # z1 .. z12: a plain sort would put z10 after z1
        tifffile.imwrite(folder / f"z{index + 1}.tif", np.full((8, 9), index, np.uint8))
    (folder / ".DS_Store").write_text("")
    (folder / "notes.txt").write_text("")
    stack = read_source(folder)
    assert stack.pixels[:, 0, 0].tolist() == list(range(12))
    assert "12 sections read in natural order, z1.tif to z12.tif" in stack.notes[0]


def test_a_folder_of_16_bit_pngs_and_a_glob(tmp_path):
    for index in range(3):
        Image.fromarray(np.full((8, 9), 1000 * index + 7, np.uint16)).save(tmp_path / f"s_{index:02d}.png")
    stack = read_source(tmp_path)
    assert stack.pixels.dtype == np.uint16 and stack.pixels[:, 0, 0].tolist() == [7, 1007, 2007]
    assert read_source(str(tmp_path / "s_0[12].png")).pixels.shape == (2, 8, 9)
    with pytest.raises(InputError, match="matches no file"):
        read_source(str(tmp_path / "*.tiff"))


def test_a_folder_section_of_another_size_is_named(tmp_path):
    for index, shape in enumerate([(8, 9), (8, 9), (9, 9)]):
        tifffile.imwrite(tmp_path / f"z{index}.tif", np.zeros(shape, np.uint8))
    with pytest.raises(InputError, match=r"z2.tif \(in .*\) is 9 x 9 uint8, but .*z0.tif is 8 x 9 uint8"):
        read_source(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="a folder without any"):
        read_source(empty)


def test_home_and_environment_variables_in_a_source_are_expanded(tmp_path, monkeypatch):
    pages(tmp_path / "stack.tif", VOLUME)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EM_DATA", str(tmp_path))
    assert np.array_equal(read_source("~/stack.tif").pixels, VOLUME)
    assert np.array_equal(read_source("$EM_DATA/stack.tif").pixels, VOLUME)


# -- writing ----------------------------------------------------------------------------


def test_outputs_are_calibrated_imagej_hyperstacks(tmp_path):
    probability = RNG.random((3, 16, 20)).astype(np.float32)
    voxel = {"z": 0.05, "y": 0.004, "x": 0.004, "unit": "micron"}
    write_stack(tmp_path / "p.tif", probability, VoxelSize.from_json(voxel), display_range=(0.0, 1.0))
    with tifffile.TiffFile(tmp_path / "p.tif") as tiff:
        metadata = tiff.imagej_metadata
        assert tiff.series[0].axes == "ZYX" and np.array_equal(tiff.asarray(), probability)
        assert metadata["unit"] == "micron" and metadata["spacing"] == 0.05
        assert (metadata["min"], metadata["max"]) == (0, 1)
        assert tiff.pages.first.get_resolution() == pytest.approx((250, 250))
    assert read_source(tmp_path / "p.tif").voxel_size.to_json() == pytest.approx(voxel)


# -- found by trying it as a user -------------------------------------------------------


def test_a_bool_mask_saved_by_tifffile_reads_as_stored(tmp_path):
    # tifffile tags bool arrays MinIsWhite (the TIFF default for 1-bit), meaning the bits.
    cell = RNG.random((3, 16, 16)) > 0.25
    tifffile.imwrite(tmp_path / "mask.tif", cell)
    stack = read_source(tmp_path / "mask.tif")
    assert np.array_equal(stack.pixels, cell) and "read as stored" in stack.notes[0]


def test_grey_saved_as_rgb_reads_as_grey_and_colour_labels_take_a_channel(tmp_path):
    grey = VOLUME[:3]
    for index, section in enumerate(grey):
        Image.fromarray(section).convert("RGB").save(tmp_path / f"s{index}.png")
    stack = read_source(tmp_path)
    assert np.array_equal(stack.pixels, grey) and "all equal" in stack.notes[-1]
    colour = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    tifffile.imwrite(tmp_path / "colour.tif", colour, photometric="rgb")
    assert np.array_equal(read_source(tmp_path / "colour.tif", channel=1).pixels, 255 - grey)


def test_three_sections_saved_as_tifffile_planar_rgb_say_so(tmp_path):
    tifffile.imwrite(tmp_path / "three.tif", VOLUME[:3], photometric="rgb", planarconfig="separate")
    with pytest.raises(InputError, match="photometric='minisblack'"):
        read_source(tmp_path / "three.tif")


def test_an_ome_tiff_of_two_images_is_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.ome.tif", ome=True) as tiff:
        tiff.write(VOLUME, metadata={"axes": "ZYX"})
        tiff.write(255 - VOLUME, metadata={"axes": "ZYX"})
    with pytest.raises(InputError, match="holding 2 images"):
        read_source(tmp_path / "two.ome.tif")


def test_a_grey_palette_is_applied_and_a_colour_palette_refused(tmp_path):
    inverted = np.tile(np.arange(255, -1, -1, dtype=np.uint16) * 257, (3, 1))
    tifffile.imwrite(tmp_path / "lut.tif", VOLUME, photometric="palette", colormap=inverted)
    stack = read_source(tmp_path / "lut.tif")
    assert np.array_equal(stack.pixels, 255 - VOLUME) and "grey LUT applied" in stack.notes[0]
    coloured = inverted.copy()
    coloured[0] = 0
    tifffile.imwrite(tmp_path / "colour_lut.tif", VOLUME, photometric="palette", colormap=coloured)
    with pytest.raises(InputError, match="palette"):
        read_source(tmp_path / "colour_lut.tif")
    image = Image.fromarray(VOLUME[0], "P")
    image.putpalette([255 - g for g in range(256) for _ in range(3)])
    (tmp_path / "png").mkdir()
    image.save(tmp_path / "png" / "p.png")
    assert np.array_equal(read_source(tmp_path / "png").pixels[0], 255 - VOLUME[0])


def test_a_folder_whose_name_looks_like_a_glob(tmp_path):
    folder = tmp_path / "brain[1]"
    folder.mkdir()
    for index in range(2):
        tifffile.imwrite(folder / f"z{index}.tif", VOLUME[index])
    assert np.array_equal(read_source(folder).pixels, VOLUME[:2])


def test_two_unnamed_axes_are_shown_with_their_sizes(tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", np.stack([VOLUME, 255 - VOLUME], 1))
    with pytest.raises(InputError, match=r"Q = 6, Q = 2"):
        read_source(tmp_path / "two.tif")


def test_angstrom_calibration_is_converted(tmp_path):
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        VOLUME,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 40.0,
            "PhysicalSizeXUnit": "Å",
            "PhysicalSizeY": 40.0,
            "PhysicalSizeYUnit": "Å",
            "PhysicalSizeZ": 500.0,
            "PhysicalSizeZUnit": "Å",
        },
    )
    assert read_source(tmp_path / "a.ome.tif").voxel_size.to_json() == pytest.approx(
        {"z": 0.05, "y": 0.004, "x": 0.004, "unit": "micron"}
    )


# -- lazy reading (stacks larger than memory) ---------------------------------------------


def test_a_lazy_read_gives_the_eager_read_s_pixels_for_every_kind_of_file(tmp_path):
    from cellseg.stackio import sections

    tifffile.imwrite(tmp_path / "lzw.tif", VOLUME, photometric="minisblack", compression="lzw")
    tifffile.imwrite(tmp_path / "inverted.tif", VOLUME, photometric="miniswhite")
    hyperstack = RNG.integers(0, 65535, (3, 2, 20, 24), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "zcyx.tif", hyperstack, imagej=True, metadata={"axes": "ZCYX"})
    tifffile.imwrite(tmp_path / "grey_rgb.tif", np.repeat(VOLUME[0][..., None], 3, axis=2), photometric="rgb")
    folder = tmp_path / "folder"
    folder.mkdir()
    for index, section in enumerate(VOLUME):
        tifffile.imwrite(folder / f"z{index}.tif", section)
    expected = {
        "lzw.tif": VOLUME,
        "inverted.tif": 255 - VOLUME,
        "zcyx.tif": hyperstack[:, 1],
        "grey_rgb.tif": VOLUME[:1],
        "folder": VOLUME,
    }
    for name, pixels in expected.items():
        lazy = read_source(tmp_path / name, channel=1 if name == "zcyx.tif" else None, lazy=True)
        eager = read_source(tmp_path / name, channel=1 if name == "zcyx.tif" else None)
        assert not isinstance(lazy.pixels, np.ndarray) and isinstance(eager.pixels, np.ndarray), name
        read = np.concatenate(list(sections(lazy.pixels, name, count=4)))
        assert np.array_equal(read, pixels) and np.array_equal(eager.pixels, pixels), name
        assert lazy.notes == eager.notes, name


def test_damaged_compressed_data_found_while_reading_lazily_names_the_file(tmp_path):
    from cellseg.stackio import sections

    tifffile.imwrite(
        tmp_path / "whole.tif",
        RNG.integers(0, 255, (4, 64, 64), dtype=np.uint8),
        photometric="minisblack",
        compression="zlib",
    )
    data = bytearray((tmp_path / "whole.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "whole.tif") as tiff:
        offset = tiff.pages[3].dataoffsets[0]
    data[offset : offset + 64] = bytes(64)  # the last section's deflate stream overwritten
    (tmp_path / "damaged.tif").write_bytes(bytes(data))
    stack = read_source(tmp_path / "damaged.tif", lazy=True)  # headers are intact
    with pytest.raises(InputError, match=r"damaged\.tif: its pixel data could not be decoded"):
        list(sections(stack.pixels, "damaged.tif"))
    with pytest.raises(InputError, match=r"damaged\.tif: its pixel data could not be decoded"):
        read_source(tmp_path / "damaged.tif")


def test_a_folder_section_saved_inverted_is_named_before_any_pixel_is_read(tmp_path):
    for index in range(3):
        tifffile.imwrite(
            tmp_path / f"z{index}.tif", VOLUME[index], photometric="miniswhite" if index == 2 else "minisblack"
        )
    with pytest.raises(
        InputError, match=r"z2.tif \(in .*\) is 40 x 48 uint8 \(MinIsWhite\), but .*z0.tif is 40 x 48 uint8:"
    ):
        read_source(tmp_path, lazy=True)


def test_an_ome_zarr_image_is_read_lazily_at_its_scale_and_channel(tmp_path):
    import zarr
    from ome_zarr.writer import write_image

    from cellseg.stackio import sections

    volume = RNG.integers(0, 65535, (2, 5, 64, 72), dtype=np.uint16)  # c, z, y, x as napari saves it
    write_image(
        volume,
        zarr.open_group(str(tmp_path / "volume.ome.zarr"), mode="w"),
        scale_factors=[2],
        axes="czyx",
        scale={"c": 1.0, "z": 0.05, "y": 0.004, "x": 0.004},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    with pytest.raises(InputError, match=r"has 2 channels \(axis C of its axes CZYX"):
        read_source(tmp_path / "volume.ome.zarr")
    stack = read_source(tmp_path / "volume.ome.zarr", channel=1, lazy=True)
    assert stack.voxel_size.to_json() == {
        "z": pytest.approx(0.05),
        "y": pytest.approx(0.004),
        "x": pytest.approx(0.004),
        "unit": "micron",
    }
    assert np.array_equal(np.concatenate(list(sections(stack.pixels, "v", 2))), volume[1])
    assert "OME-Zarr image, level s0 of 2" in stack.notes[0]
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").create_array("a", shape=(2, 4, 4), dtype="u1")
    with pytest.raises(InputError, match="without OME-Zarr 'multiscales' metadata"):
        read_source(tmp_path / "plain.zarr")


def test_an_empty_stack_is_refused_as_empty_not_as_truncated(tmp_path):
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 37, 45), np.uint8))
    with pytest.raises(InputError, match=r"empty.tif is an empty stack of shape \(0, 37, 45\)"):
        read_source(tmp_path / "empty.tif")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_bioformats2raw_output_is_read_as_its_one_series_or_refused_naming_each(tmp_path, version):
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    # bioformats2raw's layout: no image at the root, which says so; the series are groups
    # 0, 1, ... below it, and OME/ lists them (the NGFF spec's "bioformats2raw.layout").
    fmt, zarr_format = (FormatV04(), 2) if version == "0.4" else (FormatV05(), 3)
    root = zarr.open_group(str(tmp_path / "volume.zarr"), mode="w", zarr_format=zarr_format)
    layout = {"bioformats2raw.layout": 3}
    root.attrs.update(layout if version == "0.4" else {"ome": {"version": "0.5", **layout}})
    volume = RNG.integers(0, 255, (3, 32, 40), dtype=np.uint8)
    scale = {"z": 0.05, "y": 0.008, "x": 0.008}
    units = dict.fromkeys("zyx", "micrometer")
    write_image(volume, root.create_group("0"), axes="zyx", fmt=fmt, scale=scale, axes_units=units)
    root.create_group("OME").attrs.update({"series": ["0"]})
    stack = read_source(tmp_path / "volume.zarr")
    assert np.array_equal(stack.pixels, volume)
    assert stack.voxel_size.to_json()["x"] == pytest.approx(0.008)
    assert "bioformats2raw layout, its one image series 0 read" in stack.notes[0]
    write_image(volume[:2], root.create_group("1"), axes="zyx", fmt=fmt, scale=scale, axes_units=units)
    root["OME"].attrs.update({"series": ["0", "1"]})
    with pytest.raises(InputError, match=r"2 image series; give the one to read as the source: .*volume.zarr/0, "):
        read_source(tmp_path / "volume.zarr")
    # The path it names is read.
    assert read_source(tmp_path / "volume.zarr" / "1").pixels.shape == (2, 32, 40)


def test_a_tiff_header_without_pages_is_refused_clearly(tmp_path):
    (tmp_path / "cut.tif").write_bytes(b"II*\x00\x00\x00\x00\x00")  # an interrupted write
    with pytest.raises(InputError, match=r"cut.tif holds no image \(a TIFF header without pages\)"):
        read_source(tmp_path / "cut.tif")
