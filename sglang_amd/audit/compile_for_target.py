"""Compile our Triton kernels for a GPU this machine does not have, launch by launch.

Where it sits: `sglang-amd audit` calls our real wrappers (`paged_decode`,
`paged_extend`, `fused_moe`, `mxfp4_linear`, the MXFP4 quantizer) on small CPU
tensors shaped like a real model's, inside `compiling_for(target)`. There a
stand-in Triton driver reports the audit's target, every `kernel[grid](...)`
compiles ahead of time instead of launching (Triton's warmup path: the same
specialization, constexprs and options a GPU launch would use, from the same
launch-flag heuristics keyed by `target_info.Target`), and each compiled kernel
is recorded. Must run without TRITON_INTERPRET (the kernels must be real
JITFunctions): `sglang-amd audit` runs in its own process. Never imports sglang.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sglang_amd.target_info import Target, target_for_arch

# Triton's GPUTarget for each audited arch: (backend, arch as Triton spells it, warp size).
TRITON_TARGETS: dict[str, tuple[str, str | int, int]] = {
    "gfx942": ("hip", "gfx942", 64),
    "gfx950": ("hip", "gfx950", 64),
    "sm_90": ("cuda", 90, 32),
    "sm_100": ("cuda", 100, 32),
}


@dataclass
class Compiled:
    """One kernel launch compiled for one target (or the error that stopped it)."""

    kernel: str
    arch: str
    constexprs: dict[str, Any]
    options: dict[str, Any]
    asm: dict[str, Any] = field(default_factory=dict)
    shared: int = 0
    error: str | None = None


class _AuditDriver:
    """What Triton's JIT asks the active driver for, answered for an absent GPU."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def get_current_target(self) -> Any:
        return self._target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_active_torch_device(self) -> Any:
        import torch

        return torch.device("cpu")


@contextlib.contextmanager
def reporting(arch: str) -> Iterator[None]:
    """Inside: Triton's active driver reports `arch` (nothing runs on it), so code
    that asks the driver for its target (a launcher's config pick, aiter's
    `arch_info` at import) decides as on that GPU."""
    from triton.backends.compiler import GPUTarget
    from triton.runtime import driver

    previous = driver._active  # None on a machine without a GPU driver
    driver.set_active(_AuditDriver(GPUTarget(*TRITON_TARGETS[arch])))
    try:
        yield
    finally:
        driver._active = previous


@contextlib.contextmanager
def compiling_for(arch: str, sink: list[Compiled]) -> Iterator[Target]:
    """Inside: launches compile for `arch` and append to `sink`; nothing runs.

    Yields the `Target` our launch-flag heuristics must see (callers patch
    `current_target` to return it, see `audit.launches`)."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("the compile audit needs real JIT kernels: unset TRITON_INTERPRET")
    from triton.runtime.autotuner import Heuristics
    from triton.runtime.jit import JITFunction

    original_getitem = JITFunction.__getitem__
    seen_caches: list[JITFunction] = []

    def compile_instead_of_launch(self: JITFunction, grid: Any) -> Any:
        def launch(*args: Any, **kwargs: Any) -> None:
            if self not in seen_caches:
                self.device_caches.clear()  # the binder caches the previous target
                seen_caches.append(self)
            options = {k: kwargs[k] for k in ("num_warps", "num_stages") if k in kwargs}
            constexprs = {
                p.name: kwargs[p.name] for p in self.params if p.is_constexpr and p.name in kwargs
            }
            record = Compiled(self.fn.__name__, arch, constexprs, options)
            try:
                kernel = self.run(*args, grid=grid, warmup=True, **kwargs)
                record.asm = dict(kernel.asm)
                record.shared = int(getattr(kernel.metadata, "shared", 0) or 0)
            except Exception as exc:  # a compile error is the finding, not a crash
                # Triton's message ends with the source line and a caret: keep the reason.
                lines = [ln.strip() for ln in str(exc).splitlines()]
                lines = [ln for ln in lines if any(ch.isalpha() for ch in ln)]
                why = next((ln for ln in reversed(lines) if "Error" in ln or "must" in ln), "")
                record.error = f"{type(exc).__name__}: {why or (lines[-1] if lines else '')}"[:300]
            sink.append(record)

        return launch

    original_heuristics = Heuristics.__getitem__

    def heuristics_then_compile(self: Heuristics, grid: Any) -> Any:
        # `@triton.heuristics` launches its inner kernel through `run`, past
        # JITFunction.__getitem__: fill in its values, then go through the hook.
        def launch(*args: Any, **kwargs: Any) -> None:
            for name, heuristic in self.values.items():
                named = dict(zip(self.arg_names, args, strict=False))  # args may be fewer
                kwargs[name] = heuristic({**named, **kwargs})
            self.fn[grid](*args, **kwargs)

        return launch

    JITFunction.__getitem__ = compile_instead_of_launch
    Heuristics.__getitem__ = heuristics_then_compile
    try:
        with reporting(arch):
            yield target_for_arch(arch)
    finally:
        JITFunction.__getitem__ = original_getitem
        Heuristics.__getitem__ = original_heuristics
        for fn in seen_caches:
            fn.device_caches.clear()
