"""Where and how tensors run: device, mixed precision, threads, versions."""

from __future__ import annotations

import contextlib
import os
import platform

import torch

from .errors import InputError
from .provenance import installed_versions


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device is 'cuda' but PyTorch sees no CUDA device; use 'auto' or 'cpu'.")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX) for oneDNN.

    oneDNN also reports bf16 support on AVX-512 CPUs without these instructions, where it
    emulates them: training there took twice as long as fp32 (8.0 against 16 to 18 crops/s,
    Intel Xeon with AVX-512 but no AVX512_BF16, torch 2.14.1), and on AVX2-only CPUs tens
    of times as long. So both oneDNN's support and the instructions themselves are required.
    """
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return bool(native and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``, ``fp32``, ``bf16`` or ``fp16`` resolved for ``device``.

    ``auto`` picks bf16 on a GPU that supports it (fp16 on older ones) and on a CPU with
    native bf16 kernels, fp32 elsewhere.
    """
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise InputError("precision 'fp16' needs a CUDA device; on a CPU use 'bf16' or 'fp32'.")
    return name


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for ``precision`` on ``device`` (a no-op context for fp32)."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads, never more than the CPUs this process may use."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = max(1, min(threads, available))
    torch.set_num_threads(count)
    return count


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    """``provenance.installed_versions`` with torch's own version string (its build, such as
    ``+cpu``, included) and the CUDA version torch was built with ("none" for a CPU build;
    a CUDA build says nothing of whether a GPU ran: the model's ``device`` says that): what
    made a model."""
    return installed_versions() | {
        "torch": str(torch.__version__),
        "torch built with CUDA": str(torch.version.cuda or "none"),
    }
