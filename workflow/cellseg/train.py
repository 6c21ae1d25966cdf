"""Training one UNet per fold: random crops, joint augmentation, Dice + BCE, exact resume.

The crops and augmentation of step ``s`` come from a generator seeded with
``(seed, fold, s)``, so a run resumed from a checkpoint sees exactly the batches an
uninterrupted run sees, and on a CPU ends with bitwise identical weights; batches made
ahead by worker processes are the same batches. Nothing here looks at the fold's
held-out slices: the schedule and every other decision use the training loss only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage.measure import label as label_components
from torch.profiler import record_function
from torchvision import tv_tensors

from .augment import build_augmentation
from .config import training_recipe
from .loss import affinity_targets, border_weights, dice_bce_loss
from .metrics import UNLABELLED
from .model import affinity_offsets, build_model, count_parameters, describe_model
from .records import FoldModel, TrainingInput
from .runtime import autocast, device_name, resolve_device, resolve_precision, versions

log = logging.getLogger(__name__)


class CropSampler(torch.utils.data.Dataset):
    """Random crops of the training slices, with augmentation, reproducible per step: a
    dataset whose item ``s`` is the batch of step ``s``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, slices: list[int], config: dict, seed: int, fold: int):
        self.images, self.labels, self.slices = images, labels, list(slices)
        # Sparse labels: the labelled pixels of each sparsely labelled slice, where crops
        # are centred (a crop of unlabelled pixels teaches nothing).
        self.painted = {
            index: np.argwhere(np.asarray(labels[index]) != UNLABELLED)
            for index in self.slices
            if (np.asarray(labels[index]) == UNLABELLED).any()
        }
        # 2.5-D: the neighbours' images (never their labels), the stack's ends repeated.
        self.context = config["model"]["context_sections"]
        self.segments = config["model"]["output"] == "affinities"
        # Square crops, so that rotations by 90 degrees keep every crop of a batch one shape.
        side = min(config["train"]["crop_size"], *images.shape[1:])
        self.crop = (side, side)
        self.batch_size = config["train"]["batch_size"]
        self.augment = build_augmentation(config["augment"])
        self.seed, self.fold = seed, fold
        # The U-Net paper's weight map of each training slice, cropped and augmented with
        # its labels; none when train.loss.border_weight is 0.
        loss = config["train"]["loss"]
        self.weights = (
            {
                index: border_weights(np.asarray(labels[index]) == 1, loss["border_weight"], loss["border_sigma_px"])
                for index in self.slices
            }
            if loss["border_weight"] > 0
            else {}
        )

    def neighbours(self, index: int) -> list[int]:
        """The sections a crop of section ``index`` reads: itself first, then its
        ``context`` neighbours on each side (nearest first; the ends repeated)."""
        last = len(self.images) - 1
        around = [index + d for distance in range(1, self.context + 1) for d in (-distance, distance)]
        return [index, *(min(max(i, 0), last) for i in around)]

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        """Images (B, C_in, h, w) float32 (the section, then its neighbours), targets 1 =
        cell and pixel weights (0 where augmentation filled a pixel in or no one labelled
        it, else 1 or the border weight map), for ``step``; with affinities also the crops' cell segments
        (B, 1, h, w) int32 (``loss.affinity_targets``), made from the augmented labels."""
        rng = np.random.default_rng([self.seed, self.fold, step])
        height, width = self.images.shape[1:]
        crop_h, crop_w = self.crop
        images, targets, valids = [], [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            for _ in range(self.batch_size):
                index = self.slices[rng.integers(len(self.slices))]
                if index in self.painted:
                    y, x = self.painted[index][rng.integers(len(self.painted[index]))]
                    top = min(max(y - crop_h // 2, 0), height - crop_h)
                    left = min(max(x - crop_w // 2, 0), width - crop_w)
                else:
                    top, left = rng.integers(height - crop_h + 1), rng.integers(width - crop_w + 1)
                window = (index, slice(top, top + crop_h), slice(left, left + crop_w))
                # One image per section, so that intensity changes treat each as grey.
                image = [
                    tv_tensors.Image(torch.from_numpy(np.array(self.images[(i, *window[1:])], dtype=np.float32))[None])
                    for i in self.neighbours(index)
                ]
                label = tv_tensors.Mask(torch.from_numpy(np.array(self.labels[window], dtype=np.uint8))[None])
                valid = tv_tensors.Mask((label != UNLABELLED).to(label.dtype))
                if self.weights:
                    weight = tv_tensors.Mask(torch.from_numpy(self.weights[index][window[1:]])[None])
                    *image, label, valid, weight = self.augment(*image, label, valid, weight)
                    valid = tv_tensors.Mask(valid * weight)
                else:
                    *image, label, valid = self.augment(*image, label, valid)
                images.append(torch.cat([part.as_subclass(torch.Tensor) for part in image]))
                targets.append((label.as_subclass(torch.Tensor) == 1).float())
                valids.append(valid.as_subclass(torch.Tensor).float())
        batch = (torch.stack(images), torch.stack(targets), torch.stack(valids))
        if self.segments:
            cell = (batch[1][:, 0] == 1).numpy()
            segments = np.stack([label_components(crop, connectivity=1) for crop in cell]).astype(np.int32)
            batch = (*batch, torch.from_numpy(segments)[:, None])
        return batch

    __getitem__ = batch


def batch_stream(sampler: CropSampler, steps: range, workers: int) -> Iterator:
    """The batches of ``steps`` in order: made in this process when asked for (``workers``
    0), or ahead of the training step by ``workers`` processes, so that a GPU need not
    wait for the CPU's augmentation. A batch depends on its step only: the same either way."""
    if workers == 0:
        return map(sampler.batch, steps)
    return iter(torch.utils.data.DataLoader(sampler, batch_size=None, sampler=steps, num_workers=workers))


def make_optimizer(parameters, train_config: dict) -> torch.optim.Optimizer:
    kind = train_config["optimizer"]
    optimizer = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    return optimizer(parameters, lr=train_config["learning_rate"], weight_decay=train_config["weight_decay"])


def make_scheduler(optimizer: torch.optim.Optimizer, train_config: dict):
    kind = train_config["schedule"]
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=train_config["learning_rate"],
            total_steps=train_config["steps"],
            pct_start=train_config["warmup_fraction"],
        )
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=train_config["plateau_factor"], patience=train_config["plateau_patience"]
        )
    return None


@dataclass
class Trainee:
    """What a training step changes and where it runs: the model, its optimizer, learning
    rate ``schedule`` and gradient scaler, on ``device`` in ``precision`` with activations
    in ``memory_format``; ``offsets`` the affinity offsets the model predicts (none for a
    boundary map)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    memory_format: torch.memory_format
    offsets: list[list[int]] = field(default_factory=list)


@dataclass
class TrainingData:
    """A labelled set as training reads it: ``images`` (N, H, W) float32 normalised per
    stack, ``labels`` (N, H, W) uint8 with 1 = cell, and the stack's record (its
    normalisation and voxel size)."""

    images: np.ndarray
    labels: np.ndarray
    input: TrainingInput


def training_step(
    trainee: Trainee, batches: Iterator, loss_config: dict, normalisation: tuple[float, float]
) -> tuple[float, dict[str, float]]:
    """One optimisation step on the next batch of ``batches``, the images standardised by
    ``normalisation`` (mean, sd); returns the loss and its parts. A network of affinities
    (``trainee.offsets``) adds the same loss of its affinity channels against
    ``loss.affinity_targets``, masked where an offset leaves the crop or the valid
    pixels; each part is then the sum of the cell and the affinity terms.

    The phases are torch.profiler regions (data, forward, backward, optimizer), so a
    profile of training shows where a step's time goes.
    """
    mean, std = normalisation
    with record_function("data"):
        image, target, valid, *segments = next(batches)
        image = ((image - mean) / std).to(trainee.device, memory_format=trainee.memory_format)
        target, valid = target.to(trainee.device), valid.to(trainee.device)
        if trainee.offsets:
            affinity, mask = affinity_targets(segments[0].to(trainee.device), valid, trainee.offsets)
    with record_function("forward"):
        with autocast(trainee.device, trainee.precision):
            logits = trainee.model(image)
        weights = loss_config["dice_weight"], loss_config["dice_on"]
        loss, parts = dice_bce_loss(logits[:, :1], target, valid, *weights)
        if trainee.offsets:
            affinity_loss, affinity_parts = dice_bce_loss(logits[:, 1:], affinity, mask, *weights)
            loss = loss + affinity_loss
            parts = {key: value + affinity_parts[key] for key, value in parts.items()}
    with record_function("backward"):
        trainee.optimizer.zero_grad(set_to_none=True)
        trainee.scaler.scale(loss).backward()
    with record_function("optimizer"):
        trainee.scaler.step(trainee.optimizer)
        trainee.scaler.update()
        loss_value = loss.item()
    return loss_value, parts


def fingerprint(config: dict, fold: int, train_slices: list[int], images: np.ndarray, labels: np.ndarray) -> str:
    """What decides the final weights: a checkpoint resumes only into the same run."""
    digest = hashlib.sha256()
    digest.update(json.dumps([training_recipe(config), fold, list(map(int, train_slices))], sort_keys=True).encode())
    for index in train_slices:
        digest.update(np.ascontiguousarray(images[index]).tobytes())
        digest.update(np.ascontiguousarray(labels[index]).tobytes())
    return digest.hexdigest()


def rng_states() -> dict:
    """The global random states as tensors and plain numbers, so that a checkpoint loads
    with ``torch.load(..., weights_only=True)``: data, not pickled code."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    """Undo ``rng_states``."""
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["gauss"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_atomically(payload: dict, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename: never half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def input_standardisation(images: np.ndarray, train_slices: list[int]) -> dict[str, float]:
    """The mean and sd (float64 sums) of the training slices' pixels, which the network
    standardises its input with; sd 1 for constant slices."""
    pixels = np.stack([images[i] for i in train_slices])
    return {"mean": float(pixels.mean(dtype=np.float64)), "std": float(pixels.std(dtype=np.float64)) or 1.0}


class Schedule:
    """The learning-rate schedule (``train.schedule``): one-cycle steps every training step,
    plateau on each epoch's mean loss (an epoch: as many steps as the training slices fill
    batches), constant never."""

    def __init__(self, optimizer: torch.optim.Optimizer, train_config: dict, slices: int):
        self.scheduler = make_scheduler(optimizer, train_config)
        self.plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.steps_per_epoch = math.ceil(slices / train_config["batch_size"])
        self.epoch_loss, self.epoch_steps = 0.0, 0

    def step(self, loss_value: float) -> None:
        if self.plateau:
            self.epoch_loss, self.epoch_steps = self.epoch_loss + loss_value, self.epoch_steps + 1
            if self.epoch_steps == self.steps_per_epoch:
                self.scheduler.step(self.epoch_loss / self.epoch_steps)
                self.epoch_loss, self.epoch_steps = 0.0, 0
        elif self.scheduler is not None:
            self.scheduler.step()

    def state_dict(self) -> dict | None:
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


class Progress:
    """The training curve and the progress log of one fold.

    A curve row every ``max(1, steps // 200)`` steps (means of the loss and its parts over
    the interval, the learning rate, crops/s, elapsed seconds); a log line with the ETA
    every ``log_every_seconds`` and at the end. ``elapsed_before`` are the seconds of the
    run before a resume, ``curve`` its rows."""

    def __init__(
        self, fold: int, steps: int, start: int, batch_size: int, log_every_seconds: float, curve, elapsed_before
    ):
        self.fold, self.steps, self.start, self.batch_size = fold, steps, start, batch_size
        self.log_every_seconds, self.curve = log_every_seconds, curve
        self.curve_every = max(1, steps // 200)
        self.began = time.perf_counter() - elapsed_before
        self.this_run_began = self.last_log = time.perf_counter()
        self.interval = {"loss": 0.0, "bce": 0.0, "dice": 0.0, "count": 0, "began": time.perf_counter()}

    def add(self, done: int, loss_value: float, parts: dict[str, float], learning_rate: float) -> None:
        """Count step ``done`` (1-based) with its loss, loss parts and learning rate."""
        for key, value in (("loss", loss_value), *parts.items()):
            self.interval[key] += value
        self.interval["count"] += 1
        if done % self.curve_every and done != self.steps:
            return
        now, interval = time.perf_counter(), self.interval
        crops_per_second = interval["count"] * self.batch_size / max(now - interval["began"], 1e-9)
        row = {
            "step": done,
            "loss": interval["loss"] / interval["count"],
            "bce": interval["bce"] / interval["count"],
            "dice_loss": interval["dice"] / interval["count"],
            "learning_rate": learning_rate,
            "crops_per_second": crops_per_second,
            "elapsed_seconds": now - self.began,
        }
        self.curve.append(row)
        self.interval = {"loss": 0.0, "bce": 0.0, "dice": 0.0, "count": 0, "began": now}
        if now - self.last_log >= self.log_every_seconds or done == self.steps:
            self.last_log = now
            elapsed = now - self.began
            eta = elapsed / (done - self.start) * (self.steps - done) if done > self.start else 0.0
            log.info(
                "fold %d step %d/%d loss %.4f (bce %.4f, dice %.4f) lr %.2e %.1f crops/s elapsed %s ETA %s",
                self.fold,
                done,
                self.steps,
                row["loss"],
                row["bce"],
                row["dice_loss"],
                row["learning_rate"],
                crops_per_second,
                format_seconds(elapsed),
                format_seconds(eta),
            )

    def elapsed(self) -> float:
        """Seconds of the whole run, those before a resume included."""
        return time.perf_counter() - self.began

    def crops_per_second(self) -> float:
        """Crops per second of the steps since this process started (or resumed)."""
        return (self.steps - self.start) * self.batch_size / max(time.perf_counter() - self.this_run_began, 1e-9)


def save_checkpoint(path: Path, run_id: str, step: int, trainee: Trainee, progress: Progress) -> None:
    """Everything that resumes the run after ``step`` exactly (weights, optimizer, schedule,
    scaler, random states, curve, elapsed time), as plain data (``rng_states``)."""
    save_atomically(
        {
            "fingerprint": run_id,
            "step": step,
            "model": trainee.model.state_dict(),
            "optimizer": trainee.optimizer.state_dict(),
            "scheduler": trainee.schedule.state_dict(),
            "scaler": trainee.scaler.state_dict(),
            "rng": rng_states(),
            "curve": progress.curve,
            "elapsed": progress.elapsed(),
        },
        path,
    )


def resume(path: Path, run_id: str, trainee: Trainee) -> tuple[int, list, float]:
    """Load the checkpoint at ``path`` into the trainee's model, optimizer, schedule, scaler and
    random states when it belongs to this run (``run_id``, see ``fingerprint``); returns
    (first step to run, curve rows so far, seconds trained so far): (0, [], 0.0) without
    one. A checkpoint of another run, or one of an older cellseg that does not load as
    plain data, is ignored with a log line."""
    if not path.exists():
        return 0, [], 0.0
    try:
        state = torch.load(path, map_location=trainee.device, weights_only=True)
    except pickle.UnpicklingError:  # an older cellseg pickled numpy's random state
        log.warning("ignoring %s: written by an older cellseg, it does not load as plain data", path)
        return 0, [], 0.0
    if state["fingerprint"] != run_id:
        log.info("ignoring %s: it belongs to another configuration or data", path)
        return 0, [], 0.0
    trainee.model.load_state_dict(state["model"])
    trainee.optimizer.load_state_dict(state["optimizer"])
    trainee.schedule.load_state_dict(state["scheduler"])
    trainee.scaler.load_state_dict(state["scaler"])
    restore_rng_states(state["rng"])
    return state["step"], state["curve"], state["elapsed"]


def write_model(model: torch.nn.Module, record: FoldModel, path: Path) -> None:
    """The weights (on the CPU) and ``record`` in ``path``; the record again, as JSON,
    beside it (``path`` with ``.json``) for readers that need no torch (report, studies)."""
    state_dict = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = record.to_json()
    save_atomically({"state_dict": state_dict, **metadata}, path)
    path.with_suffix(".json").write_text(json.dumps(metadata, indent=1) + "\n")


def train_fold(
    data: TrainingData, train_slices: list[int], config: dict, fold: int, paths: dict[str, str | Path]
) -> FoldModel:
    """Train the UNet of ``fold`` on ``train_slices`` of ``data`` and write the model and its curve.

    Only the listed slices of ``data`` are read. ``paths`` names the files: ``model``
    (the weights and the ``records.FoldModel`` record: the training stack's
    normalisation and voxel size, the mean and sd the network standardises with, and the
    config, seed, versions and device that made it; the record again as JSON beside it,
    its name with ``.json``), ``curve`` (a TSV row per interval of steps) and
    ``checkpoint`` (a checkpoint of the same run there is resumed, and removed at the
    end). Returns the record.
    """
    images, labels = data.images, data.labels
    train_config, resources = config["train"], config["resources"]
    steps, seed = train_config["steps"], config["seed"]
    device = resolve_device(train_config["device"])
    precision = resolve_precision(train_config["precision"], device)
    memory_format = torch.channels_last if train_config["channels_last"] else torch.contiguous_format
    checkpoint_path = Path(paths["checkpoint"])

    torch.manual_seed(seed * 1000 + fold)
    model = build_model(config["model"]).to(device=device, memory_format=memory_format)
    optimizer = make_optimizer(model.parameters(), train_config)
    schedule = Schedule(optimizer, train_config, len(train_slices))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    offsets = affinity_offsets(config["model"])
    trainee = Trainee(model, optimizer, schedule, scaler, device, precision, memory_format, offsets)
    sampler = CropSampler(images, labels, train_slices, config, seed, fold)
    if sampler.crop[0] < train_config["crop_size"]:
        log.warning(
            "slices of %d x %d are narrower than train.crop_size = %d: training on crops of %d x %d "
            "(if the stack's sections lie on its last axis, its axes are in the wrong order)",
            *images.shape[1:],
            train_config["crop_size"],
            *sampler.crop,
        )
    normalisation = input_standardisation(images, train_slices)
    run_id = fingerprint(config, fold, train_slices, images, labels)
    start, curve, elapsed_before = resume(checkpoint_path, run_id, trainee)
    if start:
        log.info("resuming fold %d from its checkpoint at step %d of %d", fold, start, steps)

    log.info(
        "fold %d: %d training slices, %s, %s parameters; %d steps of %d crops of %d x %d on %s in %s",
        fold,
        len(train_slices),
        describe_model(config["model"]),
        f"{count_parameters(model):,}",
        steps,
        train_config["batch_size"],
        *sampler.crop,
        device_name(device),
        precision,
    )
    progress = Progress(
        fold, steps, start, train_config["batch_size"], resources["log_every_seconds"], curve, elapsed_before
    )
    model.train()
    batches = batch_stream(sampler, range(start, steps), resources["data_workers"])
    standardise = (normalisation["mean"], normalisation["std"])
    for step in range(start, steps):
        loss_value, parts = training_step(trainee, batches, train_config["loss"], standardise)
        learning_rate = optimizer.param_groups[0]["lr"]  # the rate this step used
        schedule.step(loss_value)
        progress.add(step + 1, loss_value, parts, learning_rate)
        if (step + 1) % resources["checkpoint_every"] == 0 and step + 1 < steps:
            save_checkpoint(checkpoint_path, run_id, step + 1, trainee, progress)

    record = FoldModel(
        model=copy.deepcopy(config["model"]),
        standardisation=normalisation,
        input=data.input,
        config=copy.deepcopy(config),
        seed=seed,
        fold=fold,
        train_slices=list(map(int, train_slices)),
        versions=versions(),
        device=device_name(device),
        precision=precision,
        steps=steps,
        wall_seconds=progress.elapsed(),
        crops_per_second=progress.crops_per_second(),
    )
    write_model(model, record, Path(paths["model"]))
    pd.DataFrame(progress.curve).to_csv(paths["curve"], sep="\t", index=False, float_format="%.6g")
    checkpoint_path.unlink(missing_ok=True)
    log.info("fold %d trained in %s; model written to %s", fold, format_seconds(record.wall_seconds), paths["model"])
    return record
