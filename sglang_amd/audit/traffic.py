"""Count the memory traffic and the launches of one op, under the Triton interpreter.

Where it sits: `sglang-amd audit --traffic` (`audit/traffic_audit.py`) runs each
case of `audit/traffic_cases.py` inside `counting()` and compares the bytes with
`audit/traffic_ideal.py`. This module only counts; it knows no kernel, no model.

What is counted, in a process with TRITON_INTERPRET=1:

- Triton bytes: every load, store and atomic our kernels issue, hooked where the
  interpreter's builder executes them (`create_masked_load` / `create_masked_store`,
  which plain, descriptor and gather loads all reach, and `create_atomic_rmw` /
  `create_atomic_cas`), adds masked-in elements x element bytes. That is the
  traffic HBM would see with no cache and no coalescing of repeated addresses:
  a tile loaded twice costs twice, a masked-off lane costs nothing. Atomics
  count twice (read and write).
- Unique bytes: the union of the bytes touched, per storage (a bitmap each), so
  an over-read shows as total >> unique.
- Per-tensor bytes: callers may name tensors; bytes are attributed to the
  storage they hit (K and V of MLA share one storage, hence one name).
- Launches: each Triton grid launch, plus each torch op that would launch a GPU
  kernel: every aten op a TorchDispatchMode sees outside a Triton launch, except
  views and aliases (a return that aliases an input without writing it),
  allocations (`empty*`, `new_empty*`), metadata (`detach`, `set_`, ...), Python
  numbers wrapped as tensors (`scalar_tensor`), host reads (`_local_scalar_dense`, i.e. `.item()`, counted as host syncs instead) and
  ops whose outputs are all empty. Torch ops' bytes are estimated as their tensor
  inputs read once plus their outputs written once. Host-built tensors copied to
  the device (`torch.tensor(...).to(device)`) are not seen on a CPU run.
- Kernels this CPU cannot run (a vendor library's CUDA/HIP op, e.g. a peer's
  sgl_kernel): `one_launch(name, reads, writes)` counts what runs inside it as
  one launch of `name` that reads and writes the given tensors once each.
Never imports sglang.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "KernelTraffic",
    "Traffic",
    "counting",
    "launches_kernel",
    "interpreted_kernels",
    "one_launch",
    "programs_in_reverse",
]

# aten ops that launch nothing on a GPU (allocation, metadata, host reads).
_NO_KERNEL = frozenset(
    {
        "empty",
        "empty_like",
        "empty_strided",
        "new_empty",
        "new_empty_strided",
        "detach",
        "lift_fresh",
        # A Python number joining a tensor op (`torch.where(m, x, -1)`) is wrapped
        # on the host; no kernel fills it.
        "scalar_tensor",
        "set_",
        "resize_",
        "_local_scalar_dense",
        "_unsafe_view",
        "alias",
        "sym_size",
        "sym_stride",
        "sym_numel",
        "sym_storage_offset",
        "is_same_size",
    }
)
_HOST_READ = "_local_scalar_dense"


@dataclass
class KernelTraffic:
    """One kernel's launches and bytes within a counted region."""

    name: str
    launches: int = 0
    load_bytes: int = 0
    store_bytes: int = 0
    atomic_bytes: int = 0

    @property
    def bytes(self) -> int:
        return self.load_bytes + self.store_bytes + self.atomic_bytes


@dataclass
class Traffic:
    """What `counting()` saw; filled in while the block runs."""

    kernels: dict[str, KernelTraffic] = field(default_factory=dict)
    torch_ops: dict[str, int] = field(default_factory=dict)
    torch_bytes: int = 0
    host_syncs: int = 0
    unique_bytes: int = 0
    by_tensor: dict[str, int] = field(default_factory=dict)

    @property
    def triton_bytes(self) -> int:
        return sum(k.bytes for k in self.kernels.values())

    @property
    def triton_launches(self) -> int:
        return sum(k.launches for k in self.kernels.values())

    @property
    def torch_launches(self) -> int:
        return sum(self.torch_ops.values())

    @property
    def launches(self) -> int:
        return self.triton_launches + self.torch_launches

    def as_dict(self) -> dict[str, Any]:
        return {
            "triton_bytes": self.triton_bytes,
            "torch_bytes": self.torch_bytes,
            "unique_bytes": self.unique_bytes,
            "launches": self.launches,
            "triton_launches": self.triton_launches,
            "torch_launches": self.torch_launches,
            "host_syncs": self.host_syncs,
            "kernels": {k: vars(v).copy() for k, v in self.kernels.items()},
            "torch_ops": dict(self.torch_ops),
            "by_tensor": dict(self.by_tensor),
        }


def launches_kernel(func: Any, outputs: Any = None) -> bool:
    """Whether aten op `func` would launch a GPU kernel (the rule in the docstring)."""
    name = func.overloadpacket.__name__
    if name in _NO_KERNEL or name.startswith(("empty", "new_empty")):
        return False
    for ret in func._schema.returns:
        if ret.alias_info is not None and not ret.alias_info.is_write:
            return False  # a view of an input
    tensors = [t for t in _tensors(outputs)]
    return not tensors or any(t.numel() for t in tensors)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _Regions:
    """Storages the kernels address, for unique bytes and per-tensor attribution."""

    def __init__(self, names: Mapping[int, str], unique: bool) -> None:
        self._names = dict(names)  # storage data_ptr -> name
        self._spans: dict[int, int] = {}  # start -> end
        self._bitmaps: dict[int, np.ndarray] = {}
        self._unique = unique
        self.retired_unique = 0
        self._starts = np.zeros(0, dtype=np.uint64)
        self._ends = np.zeros(0, dtype=np.uint64)
        self._keys: list[int] = []

    def add(self, start: int, nbytes: int) -> None:
        end = start + nbytes
        if self._spans.get(start) == end or nbytes == 0:
            return
        # The allocator may have reused an old storage's addresses: retire overlaps.
        for s in [s for s, e in self._spans.items() if s < end and start < e]:
            del self._spans[s]
            bitmap = self._bitmaps.pop(s, None)
            if bitmap is not None:
                self.retired_unique += int(np.count_nonzero(bitmap))
        self._spans[start] = end
        self._keys = sorted(self._spans)
        self._starts = np.array(self._keys, dtype=np.uint64)
        self._ends = np.array([self._spans[s] for s in self._keys], dtype=np.uint64)

    def touch(self, addrs: np.ndarray, elem: int, by_tensor: dict[str, int]) -> None:
        if addrs.size == 0 or not self._keys:
            return
        idx = np.searchsorted(self._starts, addrs, side="right").astype(np.int64) - 1
        inside = idx >= 0
        inside &= addrs < self._ends[np.maximum(idx, 0)]
        counts = np.bincount(idx[inside], minlength=len(self._keys))
        for i in np.flatnonzero(counts):
            key = self._keys[i]
            name = self._names.get(key)
            if name is not None:
                by_tensor[name] = by_tensor.get(name, 0) + int(counts[i]) * elem
            if self._unique:
                bitmap = self._bitmaps.get(key)
                if bitmap is None:
                    bitmap = self._bitmaps[key] = np.zeros(self._spans[key] - key, dtype=bool)
                offs = (addrs[inside & (idx == i)] - np.uint64(key)).astype(np.int64)
                for j in range(elem):
                    bitmap[offs + j] = True

    def unique_bytes(self) -> int:
        return self.retired_unique + sum(int(np.count_nonzero(b)) for b in self._bitmaps.values())


class _State:
    def __init__(self, traffic: Traffic, regions: _Regions) -> None:
        self.traffic = traffic
        self.regions = regions
        self.kernel: KernelTraffic | None = None

    def record(self, kind: str, ptrs: Any, mask: Any) -> None:
        kernel = self.kernel
        if kernel is None:  # a load outside a launch (should not happen): keep it visible
            kernel = self.traffic.kernels.setdefault("?", KernelTraffic("?"))
        addrs = np.asarray(ptrs.data)
        if mask is not None:
            m = np.broadcast_to(np.asarray(mask.data, dtype=bool), addrs.shape)
            addrs = addrs[m]
        else:
            addrs = addrs.reshape(-1)
        elem = max(8, ptrs.get_element_ty().primitive_bitwidth) // 8
        nbytes = int(addrs.size) * elem
        if kind == "load":
            kernel.load_bytes += nbytes
        elif kind == "store":
            kernel.store_bytes += nbytes
        else:
            kernel.atomic_bytes += 2 * nbytes
        self.regions.touch(addrs.astype(np.uint64, copy=False), elem, self.traffic.by_tensor)


_ACTIVE: list[_State] = []  # the innermost `counting()` block's state


@contextlib.contextmanager
def one_launch(
    name: str, reads: Sequence[torch.Tensor], writes: Sequence[torch.Tensor]
) -> Iterator[None]:
    """Inside `counting()`: the block stands for one GPU kernel that is not Triton
    (the torch ops in it are not counted); it reads `reads` and writes `writes`
    once each, attributed to their storages like Triton bytes. Outside
    `counting()` the block just runs."""
    if not _ACTIVE:
        yield
        return
    state = _ACTIVE[-1]
    kernel = state.traffic.kernels.setdefault(name, KernelTraffic(name))
    kernel.launches += 1
    state.kernel = kernel  # torch ops inside are this kernel's, not launches of their own
    try:
        yield
    finally:
        state.kernel = None
    for kind, tensors in (("load", reads), ("store", writes)):
        for t in tensors:
            nbytes = _nbytes(t)
            if kind == "load":
                kernel.load_bytes += nbytes
            else:
                kernel.store_bytes += nbytes
            start = t.data_ptr()
            state.regions.add(*_storage_span(t))
            addrs = np.arange(start, start + nbytes, t.element_size(), dtype=np.uint64)
            state.regions.touch(addrs, t.element_size(), state.traffic.by_tensor)


@contextlib.contextmanager
def interpreted_kernels(*modules: Any) -> Iterator[None]:
    """Inside: every @triton.jit function among the globals of `modules` runs under
    the interpreter (and so under `counting()`), even where the module was imported
    while TRITON_INTERPRET was unset: Triton decides at decoration, once, so a
    process that imported another package's kernels before the variable was set
    holds compiled-kernel objects that need a GPU driver. Helpers a kernel calls
    are looked up in its module's globals, which are patched too."""
    from unittest import mock

    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    with contextlib.ExitStack() as stack:
        for module in modules:
            for name, value in list(vars(module).items()):
                if isinstance(value, JITFunction):
                    stack.enter_context(
                        mock.patch.object(module, name, InterpretedFunction(value.fn))
                    )
        yield


@contextlib.contextmanager
def programs_in_reverse() -> Iterator[None]:
    """Inside: the interpreter runs each grid's programs last first.

    For persistent kernels whose programs spin on a lock a *later* program sets
    (SGLang's lean decode: a tile's first CTA waits for the CTAs that share its
    tile): the interpreter runs programs one at a time in order, so in order the
    first waits forever. What a program loads and stores does not depend on the
    order, so the bytes counted are the same."""
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    cls = type(builder)

    def set_grid_idx(x, y, z):  # noqa: ANN001, ANN202
        gx, gy, gz = builder.grid_dim
        return cls.set_grid_idx(builder, gx - 1 - x, gy - 1 - y, gz - 1 - z)

    builder.set_grid_idx = set_grid_idx
    try:
        yield
    finally:
        builder.__dict__.pop("set_grid_idx", None)


class _TorchOps(TorchDispatchMode):
    """Counts aten ops that would launch a GPU kernel, outside Triton launches."""

    def __init__(self, state: _State) -> None:
        super().__init__()
        self._state = state

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if self._state.kernel is not None:  # the interpreter's own host copies
            return out
        traffic = self._state.traffic
        if func.overloadpacket.__name__ == _HOST_READ:
            traffic.host_syncs += 1
        elif launches_kernel(func, out):
            name = func.overloadpacket.__name__
            traffic.torch_ops[name] = traffic.torch_ops.get(name, 0) + 1
            written = {
                i
                for i, a in enumerate(func._schema.arguments)
                if a.alias_info is not None and a.alias_info.is_write
            }
            reads = [t for i, a in enumerate(args) if i not in written for t in _tensors(a)]
            reads += [t for t in _tensors(kwargs or {})]
            traffic.torch_bytes += sum(_nbytes(t) for t in reads)
            traffic.torch_bytes += sum(_nbytes(t) for t in _tensors(out))
        return out


def _storage_span(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


@contextlib.contextmanager
def counting(
    named: Mapping[str, torch.Tensor] | None = None, *, unique: bool = True
) -> Iterator[Traffic]:
    """Inside: every Triton launch and kernel-launching torch op is counted into
    the yielded `Traffic`. `named` tensors get their bytes in `Traffic.by_tensor`
    (by storage). `unique=False` skips the unique-bytes bitmaps (faster)."""
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise RuntimeError(
            "traffic counting runs under the Triton interpreter: set TRITON_INTERPRET=1"
        )
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    names = {_storage_span(t)[0]: name for name, t in (named or {}).items()}
    traffic = Traffic()
    regions = _Regions(names, unique)
    for t in (named or {}).values():
        regions.add(*_storage_span(t))
    state = _State(traffic, regions)
    cls = type(builder)

    def load(ptrs, mask, other, *args, **kwargs):  # noqa: ANN001, ANN202
        state.record("load", ptrs, mask)
        return cls.create_masked_load(builder, ptrs, mask, other, *args, **kwargs)

    def store(ptrs, value, mask, *args, **kwargs):  # noqa: ANN001, ANN202
        state.record("store", ptrs, mask)
        return cls.create_masked_store(builder, ptrs, value, mask, *args, **kwargs)

    def rmw(op, ptr, val, mask, *args, **kwargs):  # noqa: ANN001, ANN202
        state.record("atomic", ptr, mask)
        return cls.create_atomic_rmw(builder, op, ptr, val, mask, *args, **kwargs)

    def cas(ptr, cmp, val, *args, **kwargs):  # noqa: ANN001, ANN202
        state.record("atomic", ptr, None)
        return cls.create_atomic_cas(builder, ptr, cmp, val, *args, **kwargs)

    original_run = interpreter.InterpretedFunction.run
    original_patch = interpreter._patch_lang
    import triton.language as tl

    langs = (tl, tl.core)

    def run(self, *args, grid, warmup, **kwargs):  # noqa: ANN001, ANN202
        if warmup:
            return original_run(self, *args, grid=grid, warmup=warmup, **kwargs)
        for t in _tensors(list(args) + list(kwargs.values())):
            regions.add(*_storage_span(t))
        name = self.fn.__name__
        kernel = traffic.kernels.setdefault(name, KernelTraffic(name))
        kernel.launches += 1
        state.kernel = kernel
        patched: set[tuple[int, ...]] = set()

        def patch_once(fn):  # noqa: ANN001, ANN202
            # Each device-function call (mma, tl.zeros, ...) patches triton.language
            # again, a third of the interpreter's time; once per launch and per set
            # of language modules a function sees is what the patch needs.
            key = tuple(
                sorted(id(v) for v in fn.__globals__.values() if any(v is m for m in langs))
            )
            if key in patched:
                return interpreter._LangPatchScope()
            patched.add(key)
            return original_patch(fn)

        interpreter._patch_lang = patch_once
        try:
            return original_run(self, *args, grid=grid, warmup=warmup, **kwargs)
        finally:
            interpreter._patch_lang = original_patch
            state.kernel = None

    hooks = {
        "create_masked_load": load,
        "create_masked_store": store,
        "create_atomic_rmw": rmw,
        "create_atomic_cas": cas,
    }
    for attr, hook in hooks.items():
        setattr(builder, attr, hook)  # the instance shadows the class's method
    interpreter.InterpretedFunction.run = run
    _ACTIVE.append(state)
    try:
        with _TorchOps(state):
            yield traffic
    finally:
        _ACTIVE.pop()
        interpreter.InterpretedFunction.run = original_run
        for attr in hooks:
            builder.__dict__.pop(attr, None)
        traffic.unique_bytes = regions.unique_bytes()
