"""Measurements behind ``benchmarks.bench`` and ``benchmarks.gpu_check`` (beside the
pipeline, not in its package): the machine's peaks, what a training step
costs and where its time goes, inference time and memory; and what the benchmarks
share: the checkout's paths, the ISBI stacks and how a peer's fold is scored.

Every figure is measured on the machine the function runs on; nothing here asserts a
time. FLOPs are counted by ``torch.utils.flop_counter`` (convolutions and matrix
products, forward plus backward), the convention of MFU figures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from cellseg.config import defaults
from cellseg.evaluate import evaluate_held_out, per_fold_table
from cellseg.model import build_model
from cellseg.records import TrainingInput
from cellseg.runtime import autocast
from cellseg.scores import MAIN_SCORES
from cellseg.selection import segment_held_out
from cellseg.stackio import read_source
from cellseg.stacks import binary_labels, normalise_images
from cellseg.train import CropSampler, Trainee, TrainingData, batch_stream, make_optimizer, training_step

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
ISBI = REPO.parent / "shared/isbi2012"
PHASES = ("data", "forward", "backward", "optimizer")
WORKFLOW_FOLDERS = ("workflow", "config", "profiles")


def copy_workflow(checkout: Path, destination: Path) -> Path:
    """A copy of the workflow (Snakefile, workflow/, config/, profiles/) of ``checkout`` at
    ``destination``, for benchmarks and tests to run Snakemake in without touching it."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(checkout / "Snakefile", destination / "Snakefile")
    for folder in WORKFLOW_FOLDERS:
        shutil.copytree(
            checkout / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    return destination


def isbi_stacks() -> TrainingData:
    """The ISBI training images (float32, normalised as the pipeline does by default),
    labels (1 = cell) and the images' normalisation."""
    images, labels = ISBI / "train-volume.tif", ISBI / "train-labels.tif"
    data = defaults("data")
    normalised, record = normalise_images(
        read_source(images).pixels, images, data["normalization"], data["percentiles"]
    )
    return TrainingData(normalised, binary_labels(read_source(labels).pixels, labels), TrainingInput(record))


@dataclass(frozen=True)
class StepVariant:
    """How a training step runs: on ``device`` in ``precision``, channels-last or not,
    compiled by torch.compile or not."""

    device: torch.device
    precision: str
    channels_last: bool
    compiled: bool = False


@dataclass(frozen=True)
class Budget:
    """How long a step is timed: ``warmup`` steps first, then steps until ``min_seconds``
    have passed (at least one, at most ``max_steps``)."""

    warmup: int = 2
    min_seconds: float = 10.0
    max_steps: int = 20


DEFAULT_BUDGET = Budget()


# The columns a peer's fold is reported with: the registry's main scores.
PEER_SCORES = tuple(MAIN_SCORES)


def score_fold(held_out: list[int], predictions: Path, labels: np.ndarray) -> dict[str, float]:
    """The pipeline's scores (``evaluate.evaluate_held_out``) of one fold's held-out
    slices from the ``slice_NNN.tif`` cell probabilities in ``predictions`` against
    ``labels`` (N, H, W, 1 = cell), the fold scored alone: the challenge's thresholds are
    chosen on its slices, and the cells are the seeded watershed's (no threshold to
    choose), the same way for every peer."""
    folds = predictions.parent / f"{predictions.name}_folds.tsv"
    cells = {0: predictions.parent / f"{predictions.name}_cells"}
    pd.DataFrame({"slice": held_out, "fold": 0}).to_csv(folds, sep="\t", index=False)
    segment_held_out(folds, {0: predictions}, labels, {"method": "watershed"}, [], cells)
    per_slice, _ = evaluate_held_out(folds, {0: predictions}, labels, 0.5, cells)
    return per_fold_table(per_slice)[list(PEER_SCORES)].iloc[0].to_dict()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, max_size: int = 4096, seconds: float = 2.0) -> float:
    """Dense square matrix product throughput in GFLOP/s, best of repeats.

    The size grows from 256 until one product takes a tenth of ``seconds`` (or reaches
    ``max_size``), so a dtype without fast kernels is measured without taking minutes.
    """
    size = 128
    while True:
        size *= 2
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        torch.mm(a, b)  # warm-up: kernel selection, caches
        synchronize(device)
        began = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        if time.perf_counter() - began > seconds / 10 or size >= max_size:
            break
    best, spent = float("inf"), 0.0
    while spent < seconds:
        began = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        elapsed = time.perf_counter() - began
        best, spent = min(best, elapsed), spent + elapsed
    return 2 * size**3 / best / 1e9


def peaks(device: torch.device) -> pd.DataFrame:
    """``matmul_peak`` in fp32 and bf16 (and fp16 on a GPU): the machine's ceilings."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    # A GPU's matrix units fill only with large products (8192 cubed: about 790 TFLOP/s
    # bf16 on an H100 or H200).
    max_size = 8192 if device.type == "cuda" else 4096
    return pd.DataFrame(
        [{"dtype": name, "gflops": matmul_peak(dtype, device, max_size)} for name, dtype in dtypes.items()]
    )


def step_flops(config: dict, device: torch.device) -> float:
    """FLOPs of one training step of ``config``'s model (forward and backward)."""
    model = build_model(config["model"]).to(device)
    side, batch = config["train"]["crop_size"], config["train"]["batch_size"]
    image = torch.randn(batch, 1, side, side, device=device)
    with FlopCounterMode(display=False) as counter:
        model(image).sum().backward()
    return float(counter.get_total_flops())


def convolution_shapes(config: dict, device: torch.device) -> list[tuple[torch.nn.Module, torch.Size, bool]]:
    """Every convolution of ``config``'s model with the input shape it sees in a training
    step and whether that input needs a gradient (the image itself does not)."""
    model = build_model(config["model"]).to(device)
    side, batch = config["train"]["crop_size"], config["train"]["batch_size"]
    seen: list[tuple[torch.nn.Module, torch.Size, bool]] = []

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append((module, inputs[0].shape, inputs[0].requires_grad))

    convolutions = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    hooks = [m.register_forward_hook(record) for m in convolutions]
    model(torch.randn(batch, 1, side, side, device=device))
    for hook in hooks:
        hook.remove()
    return seen


def time_convolutions(
    config: dict, device: torch.device, precision: str, channels_last: bool, seconds_per_layer: float = 0.3
) -> list[dict]:
    """Each convolution of a training step timed alone, forward and backward, in
    ``precision`` and memory format: the rate a step could reach if everything but its
    convolutions (normalisation, activations, pooling, copies, loss, optimizer) were free.

    Returns one row per convolution: channels in and out, input side, GFLOP, seconds and
    GFLOP/s (best of the repeats within ``seconds_per_layer``).
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    rows = []
    for module, shape, input_needs_grad in convolution_shapes(config, device):
        module = module.to(memory_format=memory_format)
        x = torch.randn(shape, device=device).to(memory_format=memory_format).requires_grad_(input_needs_grad)

        def forward_backward() -> None:
            with autocast(device, precision):
                y = module(x)  # noqa: B023 (called only within this iteration)
            y.backward(torch.ones_like(y))

        with FlopCounterMode(display=False) as counter:
            forward_backward()
        best, spent = float("inf"), 0.0
        while spent < seconds_per_layer:
            synchronize(device)
            began = time.perf_counter()
            forward_backward()
            synchronize(device)
            elapsed = time.perf_counter() - began
            best, spent = min(best, elapsed), spent + elapsed
        flops = float(counter.get_total_flops())
        rows.append(
            {
                "layer": type(module).__name__,
                "in_channels": shape[1],
                "out_channels": module.out_channels,
                "side": shape[-1],
                "gflop": flops / 1e9,
                "seconds": best,
                "gflops_achieved": flops / best / 1e9,
            }
        )
    return rows


def time_training(
    config: dict, data: TrainingData, train_slices: list[int], variant: StepVariant, budget: Budget = DEFAULT_BUDGET
) -> dict[str, float]:
    """Throughput of the real training step (sampler, augmentation, model, loss,
    optimizer) on ``train_slices`` of ``data`` as ``variant`` runs it, with batches made as
    ``resources.data_workers`` says (with workers, the data phase is the wait for a batch).

    After ``budget.warmup`` steps, steps run under torch.profiler until
    ``budget.min_seconds`` have passed (at least one step, at most ``budget.max_steps``).
    Returns crops/s, seconds per step,
    the warm-up's seconds (compilation included) and the seconds per step in each phase
    of ``train.training_step`` (its record_function regions; on a GPU these are the
    host's seconds, and the wait for the device falls where the loss is read, in the
    optimizer phase).
    """
    device, precision = variant.device, variant.precision
    warmup, min_seconds, max_steps = budget.warmup, budget.min_seconds, budget.max_steps
    torch.manual_seed(0)
    memory_format = torch.channels_last if variant.channels_last else torch.contiguous_format
    model = build_model(config["model"]).to(device=device, memory_format=memory_format)
    optimizer = make_optimizer(model.parameters(), config["train"])
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    sampler = CropSampler(data.images, data.labels, train_slices, config, config["seed"], 0)
    network = torch.compile(model) if variant.compiled else model
    # No schedule: the step's cost does not depend on the learning rate.
    trainee = Trainee(network, optimizer, None, scaler, device, precision, memory_format)
    batches = batch_stream(sampler, range(warmup + max_steps), config["resources"]["data_workers"])

    def run() -> None:
        training_step(trainee, batches, config["train"]["loss"], (0.5, 0.2))

    began = time.perf_counter()
    for _ in range(warmup):
        run()
    synchronize(device)
    warmup_seconds = time.perf_counter() - began
    # The phases are host-side regions; tracing every CUDA kernel would only slow the steps.
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        began, steps = time.perf_counter(), 0
        while steps < max_steps and (steps == 0 or time.perf_counter() - began < min_seconds):
            run()
            steps += 1
        synchronize(device)
        elapsed = time.perf_counter() - began
    totals = {event.key: event.cpu_time_total for event in profiler.key_averages() if event.key in PHASES}
    return {
        "steps": steps,
        "crops_per_second": steps * sampler.batch_size / elapsed,
        "step_seconds": elapsed / steps,
        "warmup_seconds": warmup_seconds,
        **{f"{phase}_seconds": totals.get(phase, 0.0) / 1e6 / steps for phase in PHASES},
    }


# Linux keeps ru_maxrss across fork and exec, so a child of a large process reports at
# least its parent's peak (seen: 4.2 GB for every inference size); VmHWM belongs to the
# child's own address space. ru_maxrss is the fallback elsewhere (bytes on macOS).
PEAK_RSS_CODE = """
import json as _json, resource as _resource, sys as _sys
def _peak_rss_mb():
    try:
        with open("/proc/self/status") as _status:
            for _line in _status:
                if _line.startswith("VmHWM:"):
                    return int(_line.split()[1]) / 1024
    except OSError:
        pass
    _peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
    return _peak / 2**20 if _sys.platform == "darwin" else _peak / 1024
print(_json.dumps({**result, "peak_rss_mb": _peak_rss_mb()}))
"""


def measure_in_subprocess(code: str, timeout: float = 600) -> dict:
    """Run ``code`` in a fresh Python; it sets a dict ``result``, printed as JSON with
    the process's own peak resident memory added (``peak_rss_mb``)."""
    wrapped = code + "\n" + PEAK_RSS_CODE
    finished = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=timeout)
    if finished.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{finished.stderr[-2000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def inference_code(model_path: str, size: int, tta: int, tile: int, precision: str, repeats: int = 1) -> str:
    """Python that predicts a random ``size`` x ``size`` slice and sets ``result``."""
    return f"""
import time, numpy as np, torch
torch.set_num_threads({torch.get_num_threads()})
from cellseg.inference import FoldEnsemble
ensemble = FoldEnsemble([{model_path!r}], dict(tta={tta}, tile_size={tile}, tile_overlap=0.25, device="auto",
                                              precision={precision!r}, channels_last=True))
image = np.random.default_rng(0).random((1, {size}, {size}), dtype=np.float32)
ensemble.predict(image[:, :64, :64])
began = time.perf_counter()
for _ in range({repeats}):
    ensemble.predict(image)
result = {{"seconds_per_slice": (time.perf_counter() - began) / {repeats}}}
"""
