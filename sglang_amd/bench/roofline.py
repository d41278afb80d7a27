"""Timing and the device's measured ceilings (copy bandwidth, bf16 matmul peak).

Ceilings are measured in the same run as the kernels they judge, on the same
device, so "80 % of copy bandwidth" means 80 % of what this device actually did.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_fn(
    fn: Callable[[], object], device: torch.device, warmup: int = 3, iters: int = 10
) -> float:
    """Median seconds per call of `fn` (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    samples = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def time_replayed(
    fn: Callable[[], object], device: torch.device, warmup: int = 3, iters: int = 10
) -> tuple[float, str]:
    """Median seconds per call of `fn` as SGLang's CUDA-graph runners run it:
    captured once, timed over replays (no host launch overhead, which at a few
    tokens can cost as much as the kernels). Falls back to `time_fn` where `fn`
    cannot be captured, or off the GPU; the second value says which ran."""
    if device.type != "cuda":
        return time_fn(fn, device, warmup, iters), "eager"
    from sglang_amd.testing import capture_cuda_graph

    try:
        graph = capture_cuda_graph(fn)
    except Exception as exc:  # e.g. a peer that syncs: time it as it can run
        torch.cuda.synchronize(device)
        return time_fn(fn, device, warmup, iters), f"eager ({type(exc).__name__} under capture)"
    return time_fn(graph.replay, device, warmup, iters), "graph"


def copy_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Bytes/s of a device-to-device copy (read + write counted)."""
    n = nbytes if device.type == "cuda" else 1 << 24
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = time_fn(lambda: dst.copy_(src), device)
    return 2 * n / seconds


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> float:
    """FLOP/s of a large square matmul in `dtype`."""
    n = 8192 if device.type == "cuda" else 256
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_fn(lambda: a @ b, device)
    return 2 * n**3 / seconds
