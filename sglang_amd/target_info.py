"""What the machine offers each kernel tier: the device kind, Triton, aiter, and
the compile target (vendor, architecture, warp size, compute units).

Sits under `tiers.py`: every tier probe asks here, so the answer to "can Triton
run on this device?" is given in one place. Sits under the launch-flag modules
too (`attention/opt_flags.py`, `gemm/opt_flags.py`): they are keyed by a
`Target`, which `current_target` reads from a device and `target_for_arch` builds
from a name alone, so "what flags would gfx950 get for this shape?" can be
answered on a machine without that GPU. Never imports sglang.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from typing import Literal

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


Backend = Literal["hip", "cuda", "interpreter"]
Vendor = Literal["amd", "nvidia", "interpreter"]


@dataclass(frozen=True)
class Target:
    """What a Triton kernel is compiled for: the key of every launch-flag table.

    `arch` is what the device reports ("gfx942", "sm_90", ...; an unknown GPU keeps
    its own name, e.g. "gfx1100" or "sm_80", and gets its vendor's default flags).
    `compute_units` counts CUs (AMD) or SMs (NVIDIA): split heuristics size grids
    in waves of them.
    """

    backend: Backend
    arch: str
    warp_size: int
    compute_units: int

    @property
    def vendor(self) -> Vendor:
        if self.backend == "hip":
            return "amd"
        if self.backend == "cuda":
            return "nvidia"
        return "interpreter"

    @property
    def fp8_fnuz(self) -> bool:
        """CDNA3 (MI300X) matrix cores take float8 e4m3fnuz/e5m2fnuz, not OCP e4m3fn."""
        return self.arch in ("gfx940", "gfx941", "gfx942")


# The interpreter runs programs one after another on the CPU: 4 units keeps the
# grids small while still exercising split-KV decode with several splits.
# Shared memory (LDS) one workgroup may take, per arch: a launch asking for more
# fails to load (OutOfResources), so the compile audit gates on it.
SHARED_MEMORY_BYTES = {"gfx942": 65536, "gfx950": 163840, "sm_90": 232448, "sm_100": 232448}

INTERPRETER = Target("interpreter", "interpreter", warp_size=32, compute_units=4)

# Nominal full-chip parts. A real device may report fewer units (a partitioned
# MI300X, a cut-down SKU): `current_target` reads them from the device instead.
KNOWN_TARGETS: dict[str, Target] = {
    "gfx942": Target("hip", "gfx942", warp_size=64, compute_units=304),  # MI300X
    "gfx950": Target("hip", "gfx950", warp_size=64, compute_units=256),  # MI355X
    "sm_90": Target("cuda", "sm_90", warp_size=32, compute_units=132),  # H100 SXM
    "sm_100": Target("cuda", "sm_100", warp_size=32, compute_units=148),  # B200
    "interpreter": INTERPRETER,
}


def target_for_arch(arch: str) -> Target:
    """The known target named `arch` (a feature suffix like ":sramecc+" is ignored),
    for asking what a GPU this machine does not have would be given."""
    name = arch.split(":", 1)[0]
    try:
        return KNOWN_TARGETS[name]
    except KeyError:
        known = ", ".join(KNOWN_TARGETS)
        raise KeyError(f"unknown target arch {arch!r}; known: {known}") from None


def current_target(device: torch.device | str | None = None) -> Target:
    """The target of `device` (default: the best one torch sees).

    Anything that is not a GPU (CPU tensors under TRITON_INTERPRET=1) is the
    interpreter; a GPU is read from its properties, once per device index.
    """
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type != "cuda":
        return INTERPRETER
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _gpu_target(index, device_kind(device) == "rocm")


@functools.cache
def _gpu_target(index: int, hip: bool) -> Target:
    # Keyed by hip too so a cached answer never outlives a change of torch build
    # (only tests do that, by monkeypatching torch.version.hip).
    props = torch.cuda.get_device_properties(index)
    if hip:
        # gcnArchName carries target features ("gfx942:sramecc+:xnack-"); flags
        # depend on the architecture only.
        arch = props.gcnArchName.split(":", 1)[0]
        # CDNA (gfx9*) runs 64-wide wavefronts; RDNA defaults to wave32.
        default_warp = 64 if arch.startswith("gfx9") else 32
    else:
        arch = f"sm_{props.major}{props.minor}"
        default_warp = 32
    warp_size = getattr(props, "warp_size", None) or default_warp
    return Target(
        "hip" if hip else "cuda",
        arch,
        warp_size=warp_size,
        compute_units=props.multi_processor_count,
    )
