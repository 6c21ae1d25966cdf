"""Sharing a run's fold models as one BioImage Model Zoo package (bioimage.io model spec 0.5).

Fiji (deepImageJ), ilastik, napari and QuPath run bioimage.io packages: a zip of an
``rdf.yaml`` describing the tensors and their processing, the weights, test tensors, a
cover and a documentation page. ``export_package`` writes one for the fold ensemble:

- the input is one grey-scale section (batch, channel, y, x) in its raw values; the
  package's preprocessing is the pipeline's per-stack normalisation in the spec's own
  terms, computed per section (``scale_range`` with the recorded percentiles,
  ``zero_mean_unit_variance`` or a fixed ``scale_linear``), so it equals cellseg's own
  prediction of a section alone (``FoldEnsemble.predict_raw`` of a 2-D array);
- each fold's standardisation (its training mean and sd), the test-time augmentation and
  the mean over folds, which the spec cannot express, are inside the network
  (``model.Ensemble``, which every cellseg prediction runs): TorchScript in fp32 (what
  deepImageJ and QuPath run) and a
  ``pytorch_state_dict`` with ``model.py`` as its architecture (what bioimageio.core and
  ilastik load);
- the output is the cell-interior probability in [0, 1] (1 = cell interior, 0 = membrane)
  and, for a network of affinities, one more channel per offset (the probability that a
  pixel and the one at that offset lie in one cell); the documentation names the
  post-processing that makes cells of it (``post_processing``).

``validate_package`` runs bioimageio.core's model test, which every package passes
before it is written. bioimageio.spec and
bioimageio.core are optional: ``pip install -e '.[bioimageio]'``.
"""

from __future__ import annotations

import copy
import logging
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch
import yaml
from matplotlib.figure import Figure

from .errors import InputError
from .folds import read_folds
from .inference import FoldEnsemble
from .model import BatchNorm2d, Ensemble, affinity_offsets
from .records import InferenceSettings, Intensities, TrainingInput
from .scores import MAIN_SCORES, better
from .selection import stack_threshold

log = logging.getLogger(__name__)

UNET_PAPER = (
    "Ronneberger, Fischer and Brox (2015), U-Net: Convolutional Networks for Biomedical Image "
    "Segmentation. MICCAI 2015, LNCS 9351, 234-241.",
    "10.1007/978-3-319-24574-4_28",
)
DEFAULT_AUTHOR = "cellseg user"
TEST_SIDE = 256


def _spec():
    try:
        import bioimageio.spec.model.v0_5 as spec
    except ImportError as error:
        raise InputError(
            "Exporting a bioimage.io package needs bioimageio.spec: pip install -e '.[bioimageio]'"
        ) from error
    return spec


def check_sharing_config(sharing: dict) -> None:
    """Raise ``InputError`` naming the ``bioimageio`` key the spec rejects: no author, an
    empty license or one that is not an SPDX id the zoo accepts, a name with characters
    it does not allow. Warn when the authors are still the placeholder. Checked before
    any job runs (the rule's input function), so a bad key never costs a good package."""
    if not [a for a in sharing["authors"] if a.strip()]:
        raise InputError(
            "bioimageio.authors is empty: a bioimage.io package names at least one author; "
            "set it to the people who trained the model (--config 'bioimageio={authors: [Ada Lovelace]}')."
        )
    if not sharing["license"].strip():
        raise InputError(
            "bioimageio.license is empty: a bioimage.io package needs an SPDX license id, e.g. CC-BY-4.0 or MIT."
        )
    spec = _spec()
    try:
        spec.LicenseId(sharing["license"])
    except ValueError as error:
        raise InputError(
            f"bioimageio.license is '{sharing['license']}', not an SPDX license id the bioimage.io spec accepts "
            "(CC-BY-4.0, CC0-1.0, MIT, BSD-3-Clause, Apache-2.0, ...; https://spdx.org/licenses/)."
        ) from error
    if sharing["name"] and not re.fullmatch(r"[A-Za-z0-9_+\- ()]+", sharing["name"]):
        raise InputError(
            f"bioimageio.name '{sharing['name']}' holds characters the spec does not allow; "
            "use letters, digits, spaces and _+-() only."
        )
    if sharing["authors"] == [DEFAULT_AUTHOR]:
        log.warning(
            "bioimageio.authors is the default [%s]: set it to the model's authors before sharing the package.",
            DEFAULT_AUTHOR,
        )


def package_ensemble(model_paths: list[Path], tta: int, side: int) -> tuple[FoldEnsemble, list[dict]]:
    """The fold models as the package runs them (CPU, fp32, contiguous, a section of up
    to ``side`` pixels whole), and the fold descriptions of its ``model.Ensemble`` (the
    architecture's ``folds`` argument). Raises ``InputError`` for no models, a peer
    architecture, or folds normalised differently."""
    if not model_paths:
        raise InputError("No trained models to export; train the experiment first.")
    settings = InferenceSettings(
        tta=tta, tile_size=side, tile_overlap=0.25, device="cpu", precision="fp32", channels_last=False
    )
    ensemble = FoldEnsemble(model_paths, settings)
    for path, record in zip(model_paths, ensemble.records, strict=True):
        if record.model["architecture"] != "unet":
            raise InputError(f"{path} is a {record.model['architecture']} model; only cellseg's own UNet is exported.")
        if record.input.normalisation != ensemble.training.normalisation:
            raise InputError(f"{path} was normalised unlike {model_paths[0]}; one package needs one normalisation.")
        if record.model.get("context_sections", 0):
            raise InputError(
                f"{path} reads {record.model['context_sections']} neighbouring section(s) on each side (2.5-D); a "
                "bioimage.io package's input is one section, so only 2-D models (model.context_sections: 0) "
                "are exported."
            )
    keys = ("depth", "base_channels", "norm", "output", "offsets")
    folds = [
        {key: record.model[key] for key in keys if key in record.model} | record.standardisation
        for record in ensemble.records
    ]
    return ensemble, folds


def output_channels(folds: list[dict]) -> list[str]:
    """The names of the package's output channels: ``cell``, then one ``affinity_<dy>_<dx>``
    per affinity offset (``m`` for minus: identifiers take no sign)."""
    names = ["cell"]
    for dy, dx in affinity_offsets(folds[0]):
        names.append("affinity_" + "_".join(f"m{-v}" if v < 0 else str(v) for v in (dy, dx)))
    return names


def post_processing(config: dict, folds: list[dict], merge_threshold: float) -> str:
    """The Markdown paragraph that says how cellseg makes cells of the package's output,
    with the run's merge threshold (``selection.stack_threshold``)."""
    segment, offsets = config["segment"], affinity_offsets(folds[0])
    method = segment["method"]
    if method == "watershed":
        how = (
            f"a seeded watershed of the cell probability (seeds above {segment['seed_threshold']:g}, cells above "
            f"{segment['threshold']:g}, at least {segment['min_size_px']} pixels)"
        )
    elif method == "agglomerate":
        how = (
            "waterz's agglomeration: the fragments of a watershed of the nearest-neighbour affinities "
            "(or, from a cell probability alone, min(p(x), p(y)) of neighbours), merged while 1 - their mean "
            "boundary affinity is below the merge threshold"
        )
    else:
        how = (
            "the mutex watershed (mwatershed) of the affinities: nearest neighbours attract above the merge "
            "threshold and repel below it, longer offsets only repel"
        )
    if method == "watershed":
        chosen = ""
    elif segment["merge_threshold"] == "auto":
        chosen = (
            f"; merge threshold {merge_threshold:g}, chosen on the run's held-out slices "
            "(its `metrics/cell_thresholds.tsv`)"
        )
    else:
        chosen = f"; merge threshold {merge_threshold:g}, set in the run's config"
    return (
        f"cellseg makes cells of this output with {how}{chosen}, then keeps the cells' mask "
        f"(cell probability above {segment['threshold']:g}). In Python: "
        "`cellseg.selection.run_recipe(run).of(outputs)`; outside cellseg, waterz or mwatershed with "
        + (f"the offsets {offsets}." if offsets else "the affinities of the cell probability.")
    )


def torchscript(ensemble: Ensemble) -> torch.jit.ScriptModule:
    """The ensemble compiled by TorchScript. cellseg's ``BatchNorm2d`` differs from
    PyTorch's only in training on a CPU (a layout change TorchScript cannot compile), so
    a copy with plain ``nn.BatchNorm2d`` is scripted: the same weights, the same output."""
    plain = copy.deepcopy(ensemble)
    for module in plain.modules():
        if isinstance(module, BatchNorm2d):
            module.__class__ = torch.nn.BatchNorm2d
    with warnings.catch_warnings():
        # PyTorch deprecates TorchScript for torch.export, but TorchScript is what
        # deepImageJ and QuPath run and what the spec's torchscript weights are.
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
        return torch.jit.script(plain)


def preprocessing(record: Intensities, spec) -> list:
    """The spec's steps that normalise a raw section as ``records.Intensities.apply``
    does with ``record``'s method, computed from the section itself."""
    yx = [spec.AxisId("y"), spec.AxisId("x")]
    steps = [spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))]
    if record.method == "percentile":
        low, high = record.percentiles
        steps.append(
            spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(axes=yx, min_percentile=low, max_percentile=high))
        )
    elif record.method == "mean_std":
        steps.append(spec.ZeroMeanUnitVarianceDescr(kwargs=spec.ZeroMeanUnitVarianceKwargs(axes=yx)))
    else:
        dtype = np.dtype(record.dtype)
        gain = 1.0 / np.iinfo(dtype).max if dtype.kind == "u" else 1.0
        steps.append(spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=gain, offset=0.0)))
    return steps


def test_crop(stack: np.ndarray, folds_table: pd.DataFrame) -> tuple[np.ndarray, int]:
    """A centred crop (at most ``TEST_SIDE`` square, sides a multiple of 16) of the first
    held-out slice of fold 0, raw, as float32 (y, x), and that slice's index."""
    index = int(folds_table.loc[folds_table["fold"] == 0, "slice"].min())
    section = np.asarray(stack[index], dtype=np.float32)
    side_y, side_x = (min(TEST_SIDE, n - n % 16 or n) for n in section.shape)
    top, left = (section.shape[0] - side_y) // 2, (section.shape[1] - side_x) // 2
    return section[top : top + side_y, left : left + side_x], index


def draw_cover(image: np.ndarray, probability: np.ndarray, path: Path) -> None:
    """A 2:1 PNG for the zoo's listing: the section and its cell probability."""
    figure = Figure(figsize=(6, 3), dpi=100)
    for position, (shown, title) in enumerate([(image, "EM section"), (probability, "cell probability")]):
        axes = figure.add_axes((position / 2, 0, 0.5, 0.9))
        axes.imshow(shown, cmap="gray", vmin=0 if position else None, vmax=1 if position else None)
        axes.set_title(title, fontsize=9)
        axes.set_axis_off()
    figure.savefig(path)


def score_rows(summary: pd.DataFrame) -> list[str]:
    """The package page's table rows of the main scores: mean, 95 % interval, direction."""
    rows = []
    for score, name in MAIN_SCORES.items():
        if score in summary.index:
            row = summary.loc[score]
            rows.append(
                f"| {name} | {row['mean']:.3f} | {row['ci95_low']:.3f} to {row['ci95_high']:.3f} | {better(score)} |"
            )
    return rows


def augmentation_words(augment: dict) -> str:
    """The augmentations an ``augment`` config section turns on, in words ("none" without)."""
    used = [
        ("flips", augment["flips"]),
        ("90-degree rotations", augment["rot90"]),
        (f"rotations up to {augment['rotation_degrees']} degrees", augment["rotation_degrees"]),
        (
            f"elastic deformation (p {augment['elastic_probability']:g}, {augment['elastic_std_px']:g} px)",
            augment["elastic_probability"],
        ),
        (
            f"brightness and contrast ({augment['brightness']:g}, {augment['contrast']:g})",
            augment["brightness"] or augment["contrast"],
        ),
    ]
    return ", ".join(name for name, on in used if on) or "none"


def documentation(
    config: dict,
    summary: pd.DataFrame,
    folds: list[dict],
    training: TrainingInput,
    slice_index: int,
    merge_threshold: float,
) -> str:
    """The package's Markdown page: what the model segments, its labels, its
    cross-validated scores with their intervals, its recipe, its pixel size and how
    cells are made of its output (``post_processing``)."""
    rows = score_rows(summary)
    model, train, predict = config["model"], config["train"], config["predict"]
    experiment, record, voxel = config["experiment"], training.normalisation, training.voxel_size
    voxel_line = (
        f"{voxel.y:g} x {voxel.x:g} micron pixels (y, x)"
        if voxel.pixel_known
        else "not recorded (the training stack's files carried none and data.voxel_size was not set)"
    )
    method = record.method
    normalisation = {
        "percentile": f"percentiles {record.percentiles[0]:g} and {record.percentiles[1]:g} of each section "
        "mapped to 0 and 1 (not clipped)",
        "mean_std": "each section's mean and standard deviation mapped to 0 and 1",
        "dtype_range": f"divided by the maximum of {record.dtype}",
    }[method]
    augmentations = augmentation_words(config["augment"])
    loss = train["loss"]
    border = (
        f", border-weighted (w0 {loss['border_weight']:g}, sigma {loss['border_sigma_px']:g} px)"
        if loss["border_weight"]
        else ""
    )
    offsets = affinity_offsets(folds[0])
    affinity_words = (
        f", and for each offset (dy, dx) of {offsets} the probability that a pixel and the one at that offset "
        "lie in one cell (affinities)"
        if offsets
        else ""
    )
    affinity_channels = ", then the affinity of each pixel to the one at each offset (dy, dx)" if offsets else ""
    return f"""# {experiment}: membrane segmentation of serial-section EM (cellseg)

Predicts, for every pixel of an electron-microscopy section, the probability that it lies
inside a cell (1) rather than on a membrane (0){affinity_words}; the labels it learnt from
stored cell interior as 1 (or 255) and membrane as 0, as the ISBI 2012 challenge's do.
Threshold the cell probability at 0.5 for a binary segmentation. {post_processing(config, folds, merge_threshold)}

## Input and output
- Input: one grey-scale section, axes (batch, channel, y, x), its raw pixel values (any
  range; uint8 and uint16 are cast to float32). Normalisation: {normalisation}, as the
  training stack was normalised per stack (method `{method}`). Computed per section here,
  which differs slightly from a whole stack's statistics; a constant section has no
  contrast to normalise and gives a meaningless output.
- Output: float32 in [0, 1], the input's size, channels {", ".join(output_channels(folds))}:
  the cell-interior probability{affinity_channels}.
- Inside the network: the {len(folds)} fold models of the cross-validation, each
  standardising its input with its own training mean and standard deviation, each
  averaged over the first {predict["tta"]} of the 8 flips and transposes of a section
  (test-time augmentation), then averaged over folds.
- Sizes: any of at least {2 ** model["depth"]} pixels a side; multiples of
  {2 ** model["depth"]} need no padding (other sizes are padded by reflection inside the
  network). The model was trained on {train["crop_size"]} px crops: tiles at least that
  large (or the whole section) keep its context; smaller tiles score worse at their
  edges. Pixel size at training: {voxel_line}. Rescale sections at another pixel size
  to it first.

## Cross-validated scores
Mean over the {len(folds)} folds of held-out slices, 95 % interval (Student's t over the
fold means, cut to each score's range). The test tensor is a crop (at most {TEST_SIDE} px a side) of slice
{slice_index} of the training stack, held out in fold 0 (the other folds trained on it);
its expected output is cellseg's own prediction of the crop.

| score | mean | 95 % interval | better |
| --- | --- | --- | --- |
{chr(10).join(rows)}

## Training recipe
cellseg's hand-written UNet (depth {model["depth"]}, {model["base_channels"]} base channels,
{model["norm"]} normalisation), {train["steps"]} steps of {train["batch_size"]} random crops of
{train["crop_size"]} px; {train["optimizer"]}, learning rate {train["learning_rate"]:g}, weight decay
{train["weight_decay"]:g}, {train["schedule"]} schedule; loss binary cross-entropy{border} plus Dice
(weight {loss["dice_weight"]:g}); augmentation: {augmentations}; seed {config["seed"]}.
Experiment `{experiment}`; the whole config that trained it is `config.yaml` in this package.

## Validation
Made by cellseg's `export_bioimageio` rule, which runs bioimageio.core's `test_model` on the
package (every weight format reproduces the test output from the test input, and runs at
several sizes and batch sizes) and refuses a package that fails it.

## Citations
Cite the U-Net paper and the training data's papers (`cite` in rdf.yaml).
"""


def stage_files(
    staging: Path,
    tensors: tuple[np.ndarray, np.ndarray],
    ensemble: Ensemble,
    architecture_path: str | Path,
    run_config: dict,
    readme: str,
) -> None:
    """Write the package's files into ``staging``: test and sample tensors (``tensors``:
    the crop and its expected output), both weight formats, the architecture, the run's
    config, the cover and the documentation."""
    crop, expected = tensors
    expected = expected[None] if expected.ndim == 2 else expected  # (channels, y, x)
    np.save(staging / "input.npy", crop[None, None])
    np.save(staging / "output.npy", expected[None].astype(np.float32))
    tifffile.imwrite(staging / "input.tif", crop)
    tifffile.imwrite(staging / "output.tif", expected.astype(np.float32), photometric="minisblack")
    torch.jit.save(torchscript(ensemble), staging / "weights.torchscript.pt")
    torch.save(ensemble.state_dict(), staging / "weights.pt")
    shutil.copyfile(architecture_path, staging / "cellseg_model.py")
    (staging / "config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
    draw_cover(crop, expected[0], staging / "cover.png")
    (staging / "README.md").write_text(readme)


def tensor_descriptions(
    spec, staging: Path, config: dict, training: TrainingInput, folds: list[dict]
) -> tuple[list, list]:
    """The spec's descriptions of the package's input (a raw section, normalised by
    ``preprocessing``) and output (the cell probability, the input's size), at the
    training stack's pixel size where it is known."""
    voxel = training.voxel_size
    unit = "micrometer" if voxel.pixel_known else None
    smallest = 2 ** config["model"]["depth"]

    def space(axis: str):
        # Any size: the UNet pads to a multiple of 2**depth itself and crops back.
        scale = float(getattr(voxel, axis)) if unit else 1.0
        return spec.SpaceInputAxis(
            id=spec.AxisId(axis), size=spec.ParameterizedSize(min=smallest, step=1), scale=scale, unit=unit
        )

    def same_size(axis: str):
        return spec.SpaceOutputAxis(
            id=spec.AxisId(axis),
            size=spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(axis)),
            scale=float(getattr(voxel, axis)) if unit else 1.0,
            unit=unit,
        )

    inputs = [
        spec.InputTensorDescr(
            id=spec.TensorId("raw"),
            description="one grey-scale EM section, raw values",
            axes=[
                spec.BatchAxis(),
                spec.ChannelAxis(channel_names=[spec.Identifier("em")]),
                space("y"),
                space("x"),
            ],
            test_tensor=spec.FileDescr(source=staging / "input.npy"),
            sample_tensor=spec.FileDescr(source=staging / "input.tif"),
            data=spec.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=preprocessing(training.normalisation, spec),
        )
    ]
    names = output_channels(folds)
    outputs = [
        spec.OutputTensorDescr(
            id=spec.TensorId("cell_probability" if len(names) == 1 else "cell_probability_and_affinities"),
            description="probability of cell interior (1) against membrane (0)"
            + ("" if len(names) == 1 else ", then the affinity of each pixel to the one at each offset"),
            axes=[
                spec.BatchAxis(),
                spec.ChannelAxis(channel_names=[spec.Identifier(name) for name in names]),
                same_size("y"),
                same_size("x"),
            ],
            test_tensor=spec.FileDescr(source=staging / "output.npy"),
            sample_tensor=spec.FileDescr(source=staging / "output.tif"),
            data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        )
    ]
    return inputs, outputs


def describe_package(spec, staging: Path, config: dict, folds: list[dict], training: TrainingInput):
    """The spec's ``ModelDescr`` of the files staged in ``staging`` (``stage_files``).
    Raises ``InputError`` with the spec's own message for a field it rejects."""
    from bioimageio.spec import ValidationContext

    sharing, experiment = config["bioimageio"], config["experiment"]
    pytorch_version = spec.Version(torch.__version__.split("+")[0])
    with ValidationContext(root=staging, perform_io_checks=True):
        try:
            inputs, outputs = tensor_descriptions(spec, staging, config, training, folds)
            return spec.ModelDescr(
                name=sharing["name"] or f"cellseg {experiment}",
                description=sharing["description"]
                or (
                    f"Membrane segmentation of serial-section EM: cell-interior probability from an ensemble of "
                    f"{len(folds)} cross-validated UNets trained by cellseg (experiment {experiment})."
                ),
                authors=[spec.Author(name=name) for name in sharing["authors"] if name.strip()],
                license=sharing["license"],
                cite=[
                    spec.CiteEntry(text=entry["text"], doi=spec.Doi(entry["doi"]) if entry.get("doi") else None)
                    for entry in [{"text": UNET_PAPER[0], "doi": UNET_PAPER[1]}, *sharing["cite"]]
                ],
                attachments=[spec.FileDescr(source=staging / "config.yaml")],
                documentation=spec.FileDescr(source=staging / "README.md"),
                covers=[spec.FileDescr(source=staging / "cover.png")],
                tags=["electron-microscopy", "segmentation", "membrane", "unet", "2d", "pytorch", "cellseg"],
                inputs=inputs,
                outputs=outputs,
                weights=spec.WeightsDescr(
                    torchscript=spec.TorchscriptWeightsDescr(
                        source=staging / "weights.torchscript.pt",
                        pytorch_version=pytorch_version,
                        parent="pytorch_state_dict",
                    ),
                    pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                        source=staging / "weights.pt",
                        architecture=spec.ArchitectureFromFileDescr(
                            source=staging / "cellseg_model.py",
                            callable=spec.Identifier("Ensemble"),
                            kwargs={"folds": folds, "tta": config["predict"]["tta"]},
                        ),
                        pytorch_version=pytorch_version,
                    ),
                ),
            )
        except ValueError as error:  # pydantic's ValidationError: which field, and why
            raise InputError(f"The bioimage.io description of {experiment} is not valid:\n{error}") from error


def export_package(
    model_paths: list[str | Path], stack: np.ndarray, run_files: dict[str, str | Path], config: dict, output: str | Path
) -> dict:
    """Write the bioimage.io package (zip) of a run's fold models.

    Args:
        model_paths: ``results/<experiment>/models/fold<k>.pt``, in fold order.
        stack: the raw training stack (N, H, W), any dtype: the test tensor is a crop of
            its first slice held out in fold 0.
        run_files: the run's ``folds`` (``folds.tsv``), ``summary``
            (``metrics/summary.tsv``) and ``thresholds`` (``metrics/cell_thresholds.tsv``),
            and the ``architecture`` (``cellseg/model.py``,
            shipped as the state dict's architecture).
        config: the run's validated config (its ``experiment``, ``seed``, ``bioimageio``,
            ``model``, ``train``, ``augment``, ``predict`` and ``segment``).
        output: the zip to write (removed again if the model test fails).
    The package is written only if bioimageio.core's model test passes it
    (``validate_package``). Returns {"crop": (h, w), "slice": int, "bytes": int,
    "validation": the test's summary as Markdown}. Raises ``InputError`` for an empty
    author list or license, no models, a peer architecture, or a package the spec or
    the model test rejects (their errors in the message).
    """
    spec = _spec()
    from bioimageio.spec import save_bioimageio_package

    check_sharing_config(config["bioimageio"])
    crop, slice_index = test_crop(stack, read_folds(run_files["folds"]))
    ensemble, folds = package_ensemble([Path(p) for p in model_paths], config["predict"]["tta"], max(crop.shape))
    # The pipeline's own prediction of the crop alone, in fp32 and whole, as the package runs it.
    expected = ensemble.predict_raw(crop, name="the test crop")
    summary = pd.read_csv(run_files["summary"], sep="\t").set_index("metric")
    merge_threshold = stack_threshold(run_files["thresholds"])
    readme = documentation(config, summary, folds, ensemble.training, slice_index, merge_threshold)

    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    # A fixed place, emptied first: what a killed export left is cleared by the next one.
    staging = output.with_name(output.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    passed = False
    try:
        stage_files(
            staging, (crop, expected), ensemble.network, run_files["architecture"], ensemble.records[0].config, readme
        )
        save_bioimageio_package(describe_package(spec, staging, config, folds, ensemble.training), output_path=output)
        passed, validation = validate_package(output)
        log.info("bioimageio.core's model test of %s:\n%s", output, validation)
        if not passed:
            raise InputError(f"bioimageio.core's model test failed for {output} (removed):\n{validation}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not passed:
            output.unlink(missing_ok=True)
    return {"crop": crop.shape, "slice": slice_index, "bytes": output.stat().st_size, "validation": validation}


def validate_package(package: str | Path) -> tuple[bool, str]:
    """bioimageio.core's model test of a package (``test_model``: the description, its
    files, and each weight format predicting the test input within the spec's
    tolerance of the test output). Returns (passed, the summary as Markdown)."""
    try:
        from bioimageio.core import test_model
    except ImportError as error:
        raise InputError(
            "Validating a bioimage.io package needs bioimageio.core: pip install -e '.[bioimageio]'"
        ) from error
    summary = test_model(str(package))
    return summary.status == "passed", summary.format()
