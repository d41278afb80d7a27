"""Run a function on N local ranks: the tests' and `sglang-amd bench ep`'s launcher.

Each rank is a spawned process with torch.distributed initialised (gloo, or NCCL/RCCL
with one GPU per rank) over a TCP
store on a free local port); `run_ranks` returns every rank's return value in rank
order, re-raises the first rank's exception with its traceback, and turns a rank
that does not finish within `timeout` into `TimeoutError` (a hung collective is a
failure, never a stuck test). Never imports sglang.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(fn, rank, world, port, threads, args, results, timeout, backend) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout),
        )
        out = fn(rank, world, *args)
        results.put((rank, True, out))
    except BaseException as e:  # noqa: BLE001 -- reported to the parent
        results.put((rank, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _collect(procs: list, results: Any, world_size: int, timeout: float) -> dict[int, Any]:
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(got) < world_size:
        try:
            rank, ok, out = results.get(timeout=1.0)
        except queue.Empty:
            dead = [r for r, p in enumerate(procs) if r not in got and p.exitcode not in (None, 0)]
            if dead:
                code = procs[dead[0]].exitcode
                raise RuntimeError(
                    f"ranks {dead} of {world_size} exited ({code}) without a result"
                ) from None
            if time.monotonic() > deadline:
                missing = sorted(set(range(world_size)) - set(got))
                raise TimeoutError(
                    f"ranks {missing} of {world_size} did not finish in {timeout:.0f} s"
                ) from None
            continue
        if not ok:
            raise RuntimeError(f"rank {rank} failed: {out}")
        got[rank] = out
    return got


def run_ranks(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    timeout: float = 120.0,
    backend: str = "gloo",
) -> list[Any]:
    """fn(rank, world_size, *args) on each rank; fn must be importable (spawn).
    `backend`: "gloo" (CPU tensors) or "nccl" (rank r on GPU r; NCCL or RCCL)."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    threads = max(1, (os.cpu_count() or 1) // world_size)
    procs = [
        ctx.Process(
            target=_rank_main,
            args=(fn, r, world_size, port, threads, args, results, timeout, backend),
            daemon=True,
        )
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    try:
        got = _collect(procs, results, world_size, timeout)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    return [got[r] for r in range(world_size)]
