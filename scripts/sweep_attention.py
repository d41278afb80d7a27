"""Time our decode and extend kernels over launch flags on this GPU.

Where it sits: a tuning aid beside `sglang-amd bench attention` (which times the
flags `attention/opt_flags.py` picks against peers). This times the same cases
with the picked flags and with each alternative in a small grid (splits, keys
per tile, warps, stages), cache-cold and replayed in a CUDA graph as the bench
times, and prints per case the picked flags' time and the fastest found, so the
per-arch tables in `opt_flags_{amd,nvidia}.py` are set from measurements.

    python scripts/sweep_attention.py [--out DIR] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from sglang_amd.attention.decode import paged_decode
from sglang_amd.attention.extend import paged_extend
from sglang_amd.attention.opt_flags import decode_flags, extend_flags
from sglang_amd.bench.roofline import CacheFlush, time_replayed
from sglang_amd.target_info import current_target
from sglang_amd.testing import make_paged_batch

# (batch, context, (Hq, Hkv), D, Dv or None)
DECODE = [
    (1, 8192, (32, 8), 128, None),
    (8, 8192, (32, 8), 128, None),
    (8, 32768, (32, 8), 128, None),
    (64, 4096, (32, 8), 128, None),
    (8, 8192, (16, 1), 576, 512),
    (1, 8192, (128, 1), 576, 512),
]
# (batch, prefix, new, (Hq, Hkv), D)
EXTEND = [(1, 0, 4096, (32, 8), 128), (1, 4096, 4096, (32, 8), 128)]
SMOKE_DECODE = [(2, 64, (4, 2), 32, None)]
SMOKE_EXTEND = [(1, 8, 8, (4, 2), 32)]


def _decode_grid(picked):
    splits = sorted(
        {picked.num_splits, max(1, picked.num_splits // 2), picked.num_splits * 2, 8, 16, 32}
    )
    tiles = [(16, 4, 2), (32, 4, 2), (64, 4, 2), (64, 4, 3), (64, 8, 2), (128, 4, 2), (128, 8, 2)]
    if picked.block_h > 16 or picked.num_warps == 8:
        tiles = [(16, 8, 2), (32, 8, 2), (16, 4, 2), (32, 4, 1), (64, 8, 2)]
    for s, (bn, w, st) in itertools.product(splits, tiles):
        yield replace(picked, num_splits=s, block_n=bn, num_warps=w, num_stages=st)


def _extend_grid(picked):
    for bm, bn, w, st in itertools.product((64, 128), (32, 64, 128), (4, 8), (2, 3)):
        yield replace(picked, block_m=bm, block_n=bn, num_warps=w, num_stages=st)


def _time(fn, dev, flush) -> float | None:
    try:
        fn()
        seconds, _ = time_replayed(fn, dev, warmup=3, iters=10, flush=flush)
        return seconds
    except Exception as exc:  # a configuration out of resources on this chip
        print(f"   failed: {type(exc).__name__}: {str(exc)[:100]}")
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return None


def _sweep(picked, grid, run, deadline: float, dev, flush) -> list:
    """(flags, seconds or None) for the picked flags, then each other grid point
    until the deadline."""
    rows = [(picked, _time(run(picked), dev, flush))]
    for flags in grid:
        if time.monotonic() > deadline:
            break
        if flags != picked:
            rows.append((flags, _time(run(flags), dev, flush)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds for each of decode, extend")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (interpreter)")
    ns = ap.parse_args()
    dev = torch.device("cpu" if ns.smoke else "cuda")
    decode_cases, extend_cases = (SMOKE_DECODE, SMOKE_EXTEND) if ns.smoke else (DECODE, EXTEND)
    target = current_target(dev)
    flush = CacheFlush(dev)
    deadline = time.monotonic() + ns.budget
    results = []
    for batch, ctx, heads, d, dv in decode_cases:
        b = make_paged_batch(
            [(ctx - 1, 1)] * batch, *heads, d, dv, page_size=16, dtype=torch.bfloat16, device=dev
        )
        v = b.k_cache[..., :dv] if dv else b.v_cache
        picked = decode_flags(target, batch, heads[1], heads[0] // heads[1], ctx, d, dv or d)

        def run(flags, b=b, v=v, ctx=ctx):
            return lambda: paged_decode(
                b.q,
                b.k_cache,
                v,
                b.req_to_token,
                b.req_pool_indices,
                b.kv_lens,
                scale=0.1,
                max_kv_len=ctx,
                flags=flags,
            )

        rows = _sweep(picked, _decode_grid(picked), run, deadline, dev, flush)
        results.append(_report(f"decode b{batch} ctx{ctx} h{heads[0]}/{heads[1]} d{d}", rows))
        del b
    deadline = time.monotonic() + ns.budget
    for batch, prefix, new, heads, d in extend_cases:
        b = make_paged_batch(
            [(prefix, new)] * batch, *heads, d, page_size=16, dtype=torch.bfloat16, device=dev
        )
        picked = extend_flags(target, d, d)
        qo, kv = [new] * batch, [prefix + new] * batch

        def run(flags, b=b, qo=qo, kv=kv):
            plans: dict = {}
            return lambda: paged_extend(
                b.q,
                b.k_cache,
                b.v_cache,
                b.req_to_token,
                b.req_pool_indices,
                b.kv_lens,
                b.qo_lens,
                scale=0.1,
                qo_lens_cpu=qo,
                kv_lens_cpu=kv,
                plans=plans,
                flags=flags,
            )

        rows = _sweep(picked, _extend_grid(picked), run, deadline, dev, flush)
        results.append(
            _report(f"extend b{batch} prefix{prefix} new{new} h{heads[0]}/{heads[1]}", rows)
        )
        del b
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'sweep.json'}")


def _report(case: str, rows) -> dict:
    picked, t0 = rows[0]
    timed = sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])
    print(
        f"{case}: picked {asdict(picked)} {t0 and t0 * 1e6:.1f} us"
        if t0
        else f"{case}: picked failed"
    )
    for flags, t in timed[:3]:
        print(f"   {t * 1e6:8.1f} us  {asdict(flags)}")
    return {"case": case, "rows": [[asdict(f), t] for f, t in rows]}


if __name__ == "__main__":
    main()
