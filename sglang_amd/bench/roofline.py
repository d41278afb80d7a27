"""Timing and the device's measured ceilings (copy bandwidth, bf16 matmul peak).

Ceilings are measured in the same run as the kernels they judge, on the same
device, so "80 % of copy bandwidth" means 80 % of what this device actually did.

Every timed call starts cache-cold. The copy ceiling moves 2 GiB, far more than
any cache holds, so a kernel timed on buffers still cached from its previous
call would be judged against a ceiling it never had to meet: a 33 MB decode KV
fits an H100's 50 MB L2, and MXFP4 experts at one token (80-190 MB) fit an
MI300X's 256 MB Infinity Cache while the bf16 peer's weights do not. So
`time_fn` (and `time_replayed`, which times graph replays through it) runs a
`CacheFlush` before each timed call, outside the timed span, with the device
idle when the span starts; the span holds the call and nothing else, so nothing
is subtracted. Ours and the peers are all timed this way.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from sglang_amd.bench.report import Row

# Assumed last-level cache when the device reports less. torch reports the L2
# only: 50 MB on an H100, 4 MB on an MI300X, whose 256 MB Infinity Cache sits
# behind it unreported. So assume at least the largest such cache we target.
LLC_FLOOR_BYTES = 256 << 20
# CPU timings are smoke runs, not measurements: keep their flush cheap.
CPU_CACHE_BYTES = 4 << 20
# The flush reads this many times the cache: enough that a non-LRU cache keeps
# almost nothing of what came before (random replacement keeps ~e^-4 of it).
FLUSH_FACTOR = 4


def last_level_cache_bytes(device: torch.device) -> int:
    """The cache a timed call must not find its bytes in: the device's reported
    L2 or LLC_FLOOR_BYTES, whichever is larger (CPU_CACHE_BYTES off the GPU)."""
    if device.type != "cuda":
        return CPU_CACHE_BYTES
    reported = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)
    return max(LLC_FLOOR_BYTES, int(reported))


def flush_bytes(device: torch.device) -> int:
    return FLUSH_FACTOR * last_level_cache_bytes(device)


class CacheFlush:
    """Reads a buffer of `flush_bytes(device)` to evict what the last call cached.

    A read (a sum into one float), not a fill as triton.testing.do_bench does: a
    fill leaves the cache full of dirty lines that the next timed call would have
    to write back, on its clock. One per run, shared by every timed call.
    """

    def __init__(self, device: torch.device, nbytes: int | None = None):
        self.nbytes = nbytes or flush_bytes(device)
        self.cache_bytes = last_level_cache_bytes(device)
        self.buffer = torch.zeros(self.nbytes // 4, dtype=torch.float32, device=device)
        self.sink = torch.zeros((), dtype=torch.float32, device=device)

    def __call__(self) -> None:
        torch.sum(self.buffer, dim=0, out=self.sink)

    def describe(self) -> str:
        return (
            f"cache-cold: {self.nbytes >> 20} MiB read before every timed call, outside "
            f"the timed span ({self.nbytes // self.cache_bytes}x an assumed "
            f"{self.cache_bytes >> 20} MiB last-level cache)"
        )


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int = 3,
    iters: int = 10,
    flush: Callable[[], object] | None = None,
) -> float:
    """Median seconds per call of `fn` (CUDA events on GPU, perf_counter on CPU).

    `flush` (default: a `CacheFlush` for `device`) runs before every timed call
    and the device is synchronized before the span starts, so the span holds
    `fn` alone, cache-cold, with its host launch cost counted as before.
    """
    if flush is None:
        flush = CacheFlush(device)
    for _ in range(warmup):
        fn()
    samples = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            flush()
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(iters):
            flush()
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def time_replayed(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int = 3,
    iters: int = 10,
    flush: Callable[[], object] | None = None,
) -> tuple[float, str]:
    """Median seconds per call of `fn` as SGLang's CUDA-graph runners run it:
    captured once, timed over replays (no host launch overhead, which at a few
    tokens can cost as much as the kernels). Falls back to `time_fn` where `fn`
    cannot be captured, or off the GPU; the second value says which ran. The
    flush runs between replays, outside the graph, as in `time_fn`."""
    if device.type != "cuda":
        return time_fn(fn, device, warmup, iters, flush), "eager"
    from sglang_amd.testing import capture_cuda_graph

    try:
        graph = capture_cuda_graph(fn)
    except Exception as exc:  # e.g. a peer that syncs: time it as it can run
        torch.cuda.synchronize(device)
        return time_fn(fn, device, warmup, iters, flush), (
            f"eager ({type(exc).__name__} under capture)"
        )
    return time_fn(graph.replay, device, warmup, iters, flush), "graph"


def copy_bandwidth(
    device: torch.device, nbytes: int = 1 << 30, flush: Callable[[], object] | None = None
) -> float:
    """Bytes/s of a device-to-device copy (read + write counted)."""
    n = nbytes if device.type == "cuda" else 1 << 24
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = time_fn(lambda: dst.copy_(src), device, flush=flush)
    return 2 * n / seconds


def matmul_peak(
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    flush: Callable[[], object] | None = None,
) -> float:
    """FLOP/s of a large square matmul in `dtype`."""
    n = 8192 if device.type == "cuda" else 256
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = time_fn(lambda: a @ b, device, flush=flush)
    return 2 * n**3 / seconds


def ceilings(device: torch.device, flush: CacheFlush) -> dict[str, float]:
    """The device's measured copy bandwidth and bf16 matmul peak, in this run."""
    return {
        "copy_bytes_per_s": copy_bandwidth(device, flush=flush),
        "bf16_flop_per_s": matmul_peak(device, flush=flush),
    }


# One implementation to time: (name, call or None, note, role: ours | variant | peer).
Candidate = tuple[str, Callable[[], object] | None, str, str]


def time_candidates(label: str, candidates: list[Candidate], work: float,
                    device: torch.device, flush: CacheFlush) -> list[Row]:  # fmt: skip
    """One `report.Row` per candidate of a case: timed by `time_replayed` with its
    rate (work / s) and how it ran in the note; one without a call keeps its note
    (why not), one that raises says so, and the others still run."""
    rows = []
    for impl, fn, note, role in candidates:
        if fn is None:
            rows.append(Row(label, impl, None, None, note, role))
            continue
        try:
            warmup = 2 if device.type == "cpu" else 5
            seconds, mode = time_replayed(fn, device, warmup=warmup, flush=flush)
            note = f"{note}, {mode}" if note else mode
            rows.append(Row(label, impl, seconds, work / seconds, note, role))
        except Exception as exc:  # one failing implementation keeps the others' rows
            rows.append(Row(label, impl, None, None, f"failed: {type(exc).__name__}", role))
    return rows
