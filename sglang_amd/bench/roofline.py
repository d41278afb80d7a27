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
