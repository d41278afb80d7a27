"""What the machine offers each kernel tier: the device kind, Triton, aiter.

Sits under `tiers.py`: every tier probe asks here, so the answer to "can Triton
run on this device?" is given in one place. Never imports sglang.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Probe:
    """A yes/no answer with the reason a person would want to read."""

    ok: bool
    reason: str


def device_kind(device: torch.device | str | None = None) -> str:
    """'rocm', 'cuda' or 'cpu' for `device` (default: the best one torch sees)."""
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type != "cuda":
        return "cpu" if device.type == "cpu" else device.type
    return "rocm" if torch.version.hip is not None else "cuda"


def triton_interpret() -> bool:
    """True when TRITON_INTERPRET=1: Triton kernels then run on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _triton_version() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return None
    import triton

    return triton.__version__


def probe_triton(device: torch.device | str | None = None) -> Probe:
    """Whether our Triton kernels can run on `device`."""
    version = _triton_version()
    if version is None:
        return Probe(False, "triton is not installed")
    kind = device_kind(device)
    if kind in ("cuda", "rocm"):
        return Probe(True, f"triton {version} on {kind}")
    if triton_interpret():
        return Probe(True, f"triton {version} interpreter (TRITON_INTERPRET=1) on {kind}")
    return Probe(False, f"no GPU ({kind}) and TRITON_INTERPRET is not 1")


@functools.cache
def _aiter_importable() -> Probe:
    if importlib.util.find_spec("aiter") is None:
        return Probe(False, "aiter is not installed (pip install 'sglang-amd[rocm]')")
    try:
        import aiter  # noqa: F401
    except Exception as exc:  # aiter's import fails on machines without a ROCm runtime
        return Probe(False, f"aiter failed to import: {type(exc).__name__}: {exc}")
    return Probe(True, "aiter importable")


def probe_aiter(device: torch.device | str | None = None) -> Probe:
    """Whether aiter kernels can run on `device` (ROCm only)."""
    kind = device_kind(device)
    if kind != "rocm":
        return Probe(False, f"aiter needs ROCm (device is {kind})")
    return _aiter_importable()


def gpu_name(device: torch.device | str | None = None) -> str:
    kind = device_kind(device)
    if kind in ("cuda", "rocm"):
        return torch.cuda.get_device_name(torch.device(device) if device else None)
    import platform

    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
