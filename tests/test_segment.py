"""Segmenting new stacks with trained fold models: the fold ensemble, instance labels, the rule."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from cellseg.cells import CellRecipe, instance_labels
from cellseg.errors import InputError
from cellseg.inference import FoldEnsemble
from cellseg.records import UNCALIBRATED, Intensities, SegmentationPlan, VoxelSize
from cellseg.segment import summary_table
from cellseg.stackio import read_segmentation, read_source, write_ome_zarr, write_tiff_stacks
from conftest import planned_jobs, snakemake
from test_predict import recipe, save_model

SETTINGS = {"threshold": 0.5, "seed_threshold": 0.9, "min_size_px": 20}


def test_without_settings_the_schemas_segment_defaults_label_a_probability_map():
    from cellseg.config import defaults

    assert {key: defaults("segment")[key] for key in SETTINGS} == SETTINGS
    # One cell at 0.85 inside: only a seed threshold above it (the default 0.9) loses it.
    probability = grid_of_cells(cells_per_side=2)
    probability[3:23, 3:23] = 0.85
    assert instance_labels(probability).max() == 3
    assert instance_labels(probability, {**SETTINGS, "seed_threshold": 0.8}).max() == 4


def one_slab_plan(shape: tuple[int, int, int], voxel_size: VoxelSize) -> SegmentationPlan:
    """The plan of a stack of ``shape`` segmented as one slab (its normalisation unused)."""
    normalisation = Intensities("percentile", (1.0, 99.8), 0.0, 1.0, 0.5, 0.2, 0.0, 1.0, "float32", shape[0])
    return SegmentationPlan("one.tif", shape, "float32", voxel_size, [], normalisation, shape[0], [(0, shape[0])])


def grid_of_cells(cells_per_side=4, cell=20, wall=3, seed=0):
    """A probability map of cells_per_side**2 square cells (0.95) behind walls (0.05), noisy."""
    side = cells_per_side * (cell + wall) + wall
    probability = np.full((side, side), 0.05)
    for row in range(cells_per_side):
        for column in range(cells_per_side):
            top, left = wall + row * (cell + wall), wall + column * (cell + wall)
            probability[top : top + cell, left : left + cell] = 0.95
    noise = np.random.default_rng(seed).normal(0, 0.03, probability.shape)
    return np.clip(probability + noise, 0, 1).astype(np.float32)


def test_a_grid_of_cells_is_counted_and_specks_are_dropped():
    probability = grid_of_cells()
    probability[1, 1] = 0.99  # a one-pixel speck inside a wall
    labels = instance_labels(probability, SETTINGS)
    assert labels.dtype == np.uint32 and labels.max() == 16
    areas = np.bincount(labels.ravel())[1:]
    assert (areas >= 380).all() and labels[1, 1] == 0  # each cell about 20 x 20


def test_touching_cells_split_along_their_weakest_line():
    probability = grid_of_cells(cells_per_side=2)
    probability[3:23, 23:26] = 0.6  # the wall between the top two cells, faint but above the threshold
    labels = instance_labels(probability, SETTINGS)
    assert labels.max() == 4 and labels[10, 10] != labels[10, 40]


def test_stacks_are_labelled_per_section_and_summarised():
    stack = np.stack([grid_of_cells(seed=0), grid_of_cells(seed=1)])
    stack[1, 3:23, 3:23] = 0.05  # one cell fewer
    labels = instance_labels(stack)
    summary = summary_table(labels, stack, np.zeros_like(stack), 0.5, VoxelSize(y=0.004, x=0.004))
    assert summary.cells.tolist() == [16, 15]
    assert summary.median_cell_area_um2[0] == pytest.approx(summary.median_cell_area_px[0] * 0.004**2)
    # A pixel size in nanometres is converted; without one the same columns, NaN.
    in_nm = summary_table(labels, stack, np.zeros_like(stack), 0.5, VoxelSize.in_unit(None, 4, 4, "nm"))
    pd.testing.assert_frame_equal(in_nm, summary)
    unknown = summary_table(labels, stack, np.zeros_like(stack), 0.5, UNCALIBRATED)
    assert unknown.columns.tolist() == summary.columns.tolist() and unknown.median_cell_area_um2.isna().all()
    assert summary.membrane_fraction[0] == pytest.approx((stack[0] <= 0.5).mean())


def test_bad_thresholds_are_refused():
    with pytest.raises(InputError, match="seed_threshold"):
        instance_labels(grid_of_cells(), {**SETTINGS, "threshold": 0.9, "seed_threshold": 0.5})


def test_the_fold_ensemble_predicts_the_test_volume_as_the_pipeline_does(isbi_run, isbi_dir):
    work, _ = isbi_run
    ensemble = FoldEnsemble.from_run(work / "results/smoke")
    raw = read_source(isbi_dir / "test-volume.tif").pixels  # uint8, as on disk
    probability, uncertainty = ensemble.predict_raw(raw, uncertainty=True)
    pipeline = tifffile.imread(work / "results/smoke/predictions/test_volume.tif")
    spread = tifffile.imread(work / "results/smoke/predictions/test_volume_uncertainty.tif")
    # One inference path: the raw stack normalised by its own statistics is what the
    # pipeline unpacked and predicted, to the bit.
    assert probability.shape == raw.shape and np.array_equal(probability, pipeline)
    assert np.array_equal(uncertainty, spread) and uncertainty.min() >= 0 and uncertainty.max() > 0
    single = FoldEnsemble([work / "results/smoke/models/fold0.pt"])
    section, spread = single.predict_raw(raw[3], uncertainty=True)
    assert section.shape == (512, 512) and not spread.any()


def test_the_python_api_fills_partial_settings_and_refuses_what_it_cannot_use(isbi_run, isbi_dir):
    work, _ = isbi_run
    run = work / "results/smoke"
    ensemble = FoldEnsemble.from_run(run, {"precision": "fp32"})  # the rest is the run's own
    assert (
        ensemble.settings.precision == "fp32" and ensemble.settings.tta == ensemble.records[0].config["predict"]["tta"]
    )
    with pytest.raises(InputError, match=r"unknown config key 'predict\.ttaa'; did you mean 'predict\.tta'"):
        FoldEnsemble.from_run(run, {"ttaa": 1})
    with pytest.raises(InputError, match=r"'predict\.tta': 3 is not one of"):
        FoldEnsemble.from_run(run, {"tta": 3})
    raw = read_source(isbi_dir / "test-volume.tif").pixels[:2, :64, :64]
    whole = ensemble.intensities(raw)
    with pytest.raises(InputError, match="is float32, but the intensities given were measured on a uint8 stack"):
        ensemble.predict_raw(raw.astype(np.float32), intensities=whole)
    with pytest.raises(InputError, match=r"is empty \(shape \(0, 64, 64\)\)"):
        ensemble.predict_raw(raw[:0])


def test_no_models_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="holds no trained models"):
        FoldEnsemble.from_run(tmp_path)
    with pytest.raises(InputError, match="No trained model at"):
        FoldEnsemble([tmp_path / "fold0.pt"])


def test_adding_a_stack_to_segment_plans_only_its_jobs(isbi_run, tmp_path):
    work, _ = isbi_run
    # segment.channel reads the stacks to segment only: the training stacks stay as they are.
    (work / "segment.yaml").write_text(
        yaml.safe_dump({"segment": {"channel": 0, "stacks": {"isbi-test": ["../shared/isbi2012/test-volume.tif"]}}})
    )
    result = snakemake(work, "--configfile", "config/smoke.yaml", "segment.yaml", "-n")
    assert result.returncode == 0, result.stderr
    # The slab jobs are planned once segment_plan has counted the stack's sections.
    assert planned_jobs(result.stdout) == {
        "fetch_stack": 1,
        "segment_plan": 1,
        "segment_tiff": 1,
        "segment_zarr": 1,
        "segment_summary": 1,
        "segment_report": 1,
        "all": 1,
    }


def test_segment_target_writes_calibrated_outputs_and_a_killed_run_redoes_only_unfinished_slabs(
    isbi_run, isbi_dir, tmp_path
):
    """A Fiji-calibrated stack segmented by the smoke run's models, through the target,
    one slab job per section."""
    work = tmp_path / "work"
    shutil.copytree(isbi_run[0], work, symlinks=True)
    (tmp_path / "shared").symlink_to((isbi_run[0].parent / "shared").resolve(), target_is_directory=True)
    tifffile.imwrite(
        tmp_path / "fiji.tif",
        read_source(isbi_dir / "test-volume.tif").pixels[:3, :96, :128],
        imagej=True,
        resolution=(250, 250),
        metadata={"axes": "ZYX", "spacing": 0.05, "unit": "micron"},
    )
    # The smoke models are weak: their probabilities rarely pass the default seed threshold.
    (work / "segment.yaml").write_text(
        yaml.safe_dump(
            {"segment": {"seed_threshold": 0.6, "slab_slices": 1, "stacks": {"fiji": [str(tmp_path / "fiji.tif")]}}}
        )
    )
    out = work / "results/smoke/segment/fiji"
    # A run killed after two of the three slabs: their outputs are there, the third's not.
    slab_files = [
        f"results/smoke/segment/fiji/slabs/{k}/{f}"
        for k in (0, 1)
        for f in ("probability.npy", "uncertainty.npy", "labels.npy", "summary.tsv")
    ]
    result = snakemake(work, *slab_files, "--configfile", "config/smoke.yaml", "segment.yaml")
    assert result.returncode == 0, result.stderr
    result = snakemake(work, "segment", "--configfile", "config/smoke.yaml", "segment.yaml", "-n")
    # The seed threshold made the held-out cells anew (the slabs needed their thresholds
    # table): their scores, which the segmentation report shows, follow.
    assert planned_jobs(result.stdout) == {
        "evaluate": 1,
        "segment_slab": 1,
        "segment_tiff": 1,
        "segment_zarr": 1,
        "segment_summary": 1,
        "segment_report": 1,
        "segment": 1,
    }
    slab_job = result.stdout.split("rule segment_slab:")[1].split("\n\n")[0]
    assert "slab=2" in slab_job, slab_job
    result = snakemake(work, "segment", "--configfile", "config/smoke.yaml", "segment.yaml")
    assert result.returncode == 0, result.stderr
    assert "rule train_unet:" not in result.stderr
    assert not (out / "slabs/0/probability.npy").exists()  # slabs are temporary once gathered
    with tifffile.TiffFile(out / "probability.tif") as tiff:
        assert tiff.series[0].shape == (3, 96, 128) and tiff.imagej_metadata["spacing"] == pytest.approx(0.05)
    labels = read_source(out / "labels.tif")
    assert labels.pixels.dtype == np.uint32 and labels.voxel_size.z == pytest.approx(0.05)
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert summary.section.tolist() == [0, 1, 2]
    assert summary.cells.tolist() == [len(np.unique(s[s > 0])) for s in labels.pixels]
    # The OME-Zarr store as napari's reader (ome-zarr-py) sees it: the same values, at scale.
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    image, _, cells = list(Reader(parse_url(str(out / "segmentation.ome.zarr")))())
    assert image.metadata["channel_names"] == ["cell probability", "fold disagreement"]
    assert image.metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([1, 0.05, 0.004, 0.004])
    assert np.array_equal(np.asarray(image.data[0][0]), tifffile.imread(out / "probability.tif"))
    assert np.array_equal(np.asarray(cells.data[0]), labels.pixels)
    report = (out / "report.html").read_text()
    # The slice viewer over its 3 sections; the cells' outlines come through losslessly.
    import base64
    import io
    import json
    import re

    from PIL import Image
    from skimage.segmentation import find_boundaries

    viewer = json.loads(re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', report, re.S)[1])
    sections = viewer[0]["slices"]
    assert [s["index"] for s in sections] == [0, 1, 2] and viewer[0]["layers"][:2] == ["segments", "outlines"]

    def decoded(uri):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))

    masks = decoded(sections[1]["masks"])
    assert np.array_equal(masks[..., 2] > 127, find_boundaries(labels.pixels[1], mode="inner"))
    # The fold disagreement in full colour (255) from an sd of 0.25 (lossy WebP: about).
    spread = tifffile.imread(out / "uncertainty.tif")[1]
    drawn = decoded(sections[1]["uncertainty"]).astype(float)[..., 0]  # decoded as RGB, grey
    expected = np.clip(spread / 0.25, 0, 1) * 255
    # WebP's loss is noise of a few levels; a scale off by 2 would halve the mean.
    assert drawn.mean() == pytest.approx(expected.mean(), rel=0.05) and np.abs(drawn - expected).mean() < 8
    assert "full colour from 0.25" in report
    assert (
        "z 0.05, y 0.004, x 0.004 micron" in report
        and "membrane Dice" in report
        and "3 job(s) of up to 1 sections" in report
    )
    assert 'src="http' not in report  # nothing to fetch when opened
    # The ISBI training stack has no calibration: the scale cannot be checked, and the
    # report says so among its warnings and in its provenance.
    warning = "fiji.tif: the pixel size of the training stack is unknown, so the scale cannot be checked"
    assert report.count(warning) == 2, report


def test_slab_by_slab_equals_the_whole_stack_at_once(isbi_run, isbi_dir, tmp_path):
    from cellseg.segment import plan_segmentation, segment_slab

    work, _ = isbi_run
    np.save(tmp_path / "stack.npy", read_source(isbi_dir / "test-volume.tif").pixels[:5, :128, :160])
    stack = np.load(tmp_path / "stack.npy", mmap_mode="r")  # as the rules pass it
    models = sorted((work / "results/smoke/models").glob("fold*.pt"))
    predict = recipe(channels_last=False)
    settings = CellRecipe({"method": "watershed", "threshold": 0.5, "seed_threshold": 0.6, "min_size_px": 20})
    voxel = VoxelSize(0.05, 0.004, 0.004)
    results = {}
    for size in (1, 2, 100):
        plan = plan_segmentation(stack, "stack", voxel, models, size)
        assert plan.slabs == [(s, min(s + size, 5)) for s in range(0, 5, size)]
        plan.save(tmp_path / "plan.json")
        assert SegmentationPlan.load(tmp_path / "plan.json") == plan  # the record round-trips through JSON
        slabs = {k: [] for k in ("probability", "uncertainty", "labels", "summary")}
        for index in range(len(plan.slabs)):
            outputs = {k: tmp_path / f"{size}_{index}_{k}.{'tsv' if k == 'summary' else 'npy'}" for k in slabs}
            segment_slab(stack, plan, index, predict, settings, outputs)
            for key, path in outputs.items():
                slabs[key].append(path)
        write_tiff_stacks(
            plan, slabs, {k: tmp_path / f"{size}_{k}.tif" for k in ("probability", "uncertainty", "labels")}
        )
        write_ome_zarr(plan, slabs, tmp_path / f"{size}.ome.zarr")
        tiff = read_segmentation({k: tmp_path / f"{size}_{k}.tif" for k in ("probability", "uncertainty", "labels")})
        zarr = read_segmentation({"zarr": tmp_path / f"{size}.ome.zarr"})
        for key in ("probability", "uncertainty", "labels"):
            assert np.array_equal(np.asarray(tiff[key]), np.asarray(zarr[key]))
        results[size] = {k: np.asarray(v) for k, v in tiff.items()}
        results[size]["summary"] = pd.concat([pd.read_csv(p, sep="\t") for p in slabs["summary"]], ignore_index=True)
    whole, spread = FoldEnsemble(models, predict).predict_raw(stack, uncertainty=True)
    assert (
        np.abs(results[100]["probability"] - whole).max() <= 1e-6
        and np.abs(results[100]["uncertainty"] - spread).max() <= 1e-6
    )
    for size in (1, 2):
        for key in ("probability", "uncertainty"):
            assert np.abs(results[size][key] - results[100][key]).max() <= 1e-6
        assert np.array_equal(results[size]["labels"], results[100]["labels"])
        pd.testing.assert_frame_equal(results[size]["summary"], results[100]["summary"])
    assert results[1]["summary"].section.tolist() == [0, 1, 2, 3, 4]
    assert results[1]["summary"].median_cell_area_um2.notna().all()
    with pytest.raises(InputError, match="slab_slices is 0"):
        plan_segmentation(stack, "stack", voxel, models, 0)


def test_an_output_folder_that_cannot_be_written_is_one_paragraph_naming_it(tmp_path, capsys):
    from cellseg.logs import logged_step

    slabs = {}
    for key, dtype in (("probability", np.float32), ("uncertainty", np.float32), ("labels", np.uint32)):
        np.save(tmp_path / f"{key}.npy", np.zeros((2, 8, 8), dtype))
        slabs[key] = [tmp_path / f"{key}.npy"]
    plan = one_slab_plan((2, 8, 8), UNCALIBRATED)
    (tmp_path / "results").write_text("a file where the output folder should be")
    earlier = (tmp_path / "probability.npy").read_bytes()
    with pytest.raises(SystemExit) as exited, logged_step(tmp_path / "step.log"):
        write_tiff_stacks(plan, slabs, {k: tmp_path / "results" / f"{k}.tif" for k in slabs})
    assert exited.value.code == 1
    message = capsys.readouterr().err
    assert (
        message.startswith("cellseg: error: ") and str(tmp_path / "results") in message and "Traceback" not in message
    )
    assert "ENOTDIR" in message and "Earlier results are untouched" in message
    assert (tmp_path / "probability.npy").read_bytes() == earlier


def test_the_python_api_refuses_what_it_cannot_read():
    with pytest.raises(InputError, match=r"in \[0, 1\]; this one has shape \(2, 2\) and values 0 to 255"):
        instance_labels(np.array([[0, 255], [255, 255]], np.float32))
    with pytest.raises(InputError, match=r"'segment\.min_size_px': 0 is less than the minimum of 1"):
        instance_labels(grid_of_cells(), {**SETTINGS, "min_size_px": 0})
    with pytest.raises(
        InputError, match=r"unknown config key 'segment\.seed_treshold'; did you mean 'segment\.seed_thr"
    ):
        instance_labels(grid_of_cells(), {"seed_treshold": 0.5})
    # Some of the keys: the schema's defaults fill the rest.
    assert instance_labels(grid_of_cells(), {"threshold": 0.4}).max() == 16
    with pytest.raises(InputError, match=r"\(N, H, W\) or \(H, W\)"):
        instance_labels(grid_of_cells()[None, None])


def test_a_one_section_stack_and_an_unknown_section_spacing_are_written_right(tmp_path):
    import zarr

    rng = np.random.default_rng(1)
    slabs, written = {}, {}
    for key, dtype in (("probability", np.float32), ("uncertainty", np.float32), ("labels", np.uint32)):
        written[key] = (rng.random((1, 8, 9)) * (9 if key == "labels" else 1)).astype(dtype)
        np.save(tmp_path / f"{key}.npy", written[key])
        slabs[key] = [tmp_path / f"{key}.npy"]
    plan = one_slab_plan((1, 8, 9), VoxelSize(None, 0.004, 0.004))  # no ImageJ spacing
    write_tiff_stacks(plan, slabs, {k: tmp_path / f"{k}.tif" for k in slabs})
    write_ome_zarr(plan, slabs, tmp_path / "one.ome.zarr")
    for outputs in ({k: tmp_path / f"{k}.tif" for k in slabs}, {"zarr": tmp_path / "one.ome.zarr"}):
        for key, array in read_segmentation(outputs).items():
            assert np.array_equal(np.asarray(array).reshape(1, 8, 9), written[key]), (outputs, key)
    scale = zarr.open_group(str(tmp_path / "one.ome.zarr"), mode="r").attrs["ome"]["multiscales"][0]["datasets"][0]
    # The unknown spacing is the pixel size (isotropic), not 1 micrometre.
    assert scale["coordinateTransformations"][0]["scale"] == pytest.approx([1.0, 0.004, 0.004, 0.004])


def test_a_slab_of_a_2_5d_affinity_network_reads_its_neighbours_across_the_slab_border(tmp_path):
    from cellseg.segment import segment_slab

    offsets = [[-1, 0], [0, -1], [-3, 0], [0, -3]]
    model = save_model(tmp_path / "m.pt", output="affinities", offsets=offsets, context_sections=1)
    stack = np.random.default_rng(0).random((6, 40, 44), dtype=np.float32)
    ensemble = FoldEnsemble([model], recipe(tta=2))
    assert ensemble.context == 1 and ensemble.offsets == offsets
    whole = ensemble.predict_raw(stack)
    assert whole.shape == (6, 5, 40, 44)
    normalisation = ensemble.intensities(stack)
    plan = SegmentationPlan(
        "s.tif", stack.shape, "float32", UNCALIBRATED, [str(model)], normalisation, 3, [(0, 3), (3, 6)]
    )
    outputs = {key: tmp_path / f"{key}.npy" for key in ("probability", "uncertainty", "labels")}
    outputs["summary"] = tmp_path / "summary.tsv"
    cells = CellRecipe({"method": "mutex", "min_size_px": 1}, offsets, 0.5)
    summary = segment_slab(stack, plan, 1, recipe(tta=2), cells, outputs)
    # Section 3 reads section 2, of the other slab, as the whole stack's prediction does.
    np.testing.assert_allclose(np.load(outputs["probability"]), whole[3:, 0], atol=1e-6)
    assert np.array_equal(np.load(outputs["labels"]), cells.of(whole[3:]))
    assert summary.section.tolist() == [3, 4, 5]


def calibrated_models(run, folder, voxel_size: VoxelSize) -> list:
    """The run's fold model files copied into ``folder`` with their training stack's
    voxel size set to ``voxel_size``, as a run of a calibrated stack records it."""
    import torch

    from cellseg.layout import model_files

    paths = []
    for path in model_files(run):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        payload["input"]["voxel_size"] = voxel_size.to_json()
        torch.save(payload, folder / path.name)
        paths.append(folder / path.name)
    return paths


def test_a_stack_unlike_the_training_data_is_warned_about_and_the_isbi_test_stack_is_not(isbi_run, isbi_dir):
    from cellseg.layout import model_files
    from cellseg.segment import plan_segmentation

    models = model_files(isbi_run[0] / "results/smoke")
    raw = read_source(isbi_dir / "test-volume.tif").pixels
    plan = plan_segmentation(raw, "test-volume.tif", UNCALIBRATED, models, 16)
    assert not [w for w in plan.warnings if "does not look like the training data" in w], plan.warnings
    assert "the pixel size of the stack and of the training stack is unknown, so the scale cannot be checked" in (
        plan.scale
    )
    # Inverted contrast (an inverting LUT baked into 16-bit pixels): the range is
    # normalised away, the histogram's shape is not.
    inverted = (65535 - raw.astype(np.uint16) * 257).astype(np.uint16)
    plan = plan_segmentation(inverted, "inverted.tif", UNCALIBRATED, models, 16)
    (warning,) = [w for w in plan.warnings if "does not look like the training data" in w]
    assert warning.startswith("inverted.tif: ") and "leans the other way" in warning
    assert plan.to_json()["warnings"] == SegmentationPlan.from_json(plan.to_json()).warnings


def test_half_resolution_sections_segment_like_their_originals(isbi_run, isbi_dir, tmp_path):
    from cellseg.selection import run_recipe

    nm = 1e-3
    run = isbi_run[0] / "results/smoke"
    ensemble = FoldEnsemble(calibrated_models(run, tmp_path, VoxelSize(0.05, 4 * nm, 4 * nm)))
    cells = run_recipe(run)
    full = read_source(isbi_dir / "test-volume.tif").pixels[:4]
    # The same sections imaged at 8 nm pixels: each 2 x 2 block of 4 nm pixels averaged.
    half = full.reshape(4, 256, 2, 256, 2).mean(axis=(2, 4)).round().astype(np.uint8)
    assert ensemble.pixel_zoom(VoxelSize(0.05, 4 * nm, 4 * nm), "full").zoom is None
    zoom = ensemble.pixel_zoom(VoxelSize(0.05, 8 * nm, 8 * nm), "half").zoom
    reference = ensemble.predict_raw(full)
    matched, as_is = ensemble.predict_raw(half, zoom=zoom), ensemble.predict_raw(half)

    def membrane_fraction(probability):
        return float((probability <= 0.5).mean())

    def cells_per_section(probability, zoom=None):
        # Cells of at least 500 pixels of 4 nm: the smoke model's specks are noise.
        pixel = 4 if probability.shape[-1] == 256 else 1
        areas = [np.bincount(section.ravel())[1:] * pixel for section in cells.of(probability, zoom)]
        return float(np.mean([(area >= 500).sum() for area in areas]))

    assert matched.shape == half.shape
    truth_fraction, truth_cells = membrane_fraction(reference), cells_per_section(reference)
    found = {
        "matched": (membrane_fraction(matched), cells_per_section(matched, zoom)),
        "as is": (membrane_fraction(as_is), cells_per_section(as_is)),
    }
    print(f"full resolution: membrane fraction {truth_fraction:.3f}, {truth_cells:.1f} cells a section;", found)
    errors = {
        name: (abs(fraction - truth_fraction), abs(count / truth_cells - 1))
        for name, (fraction, count) in found.items()
    }
    assert errors["matched"][0] < 0.01 and errors["matched"][1] < 0.15
    assert errors["as is"][0] > 2 * errors["matched"][0] and errors["as is"][1] > 1.5 * errors["matched"][1]
