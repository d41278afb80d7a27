"""The per-rank bodies of tests/test_ep_dispatch.py (spawned by `ep.launch.run_ranks`).

Every rank builds every rank's inputs from the same seeds, so each can compute on
its own what it must receive and what combine must return; a rank reports
mismatches as strings (empty: all good) and the test asserts on them.
"""

from __future__ import annotations

import zlib

import torch

from sglang_amd.ep import wire
from sglang_amd.ep.config import EpCapacityError, EpConfig
from sglang_amd.ep.dispatch_combine import EpDispatchCombine

H, E_LOCAL, K, CAP = 256, 3, 4, 12


def tokens_of(scenario: str, rank: int, world: int) -> int:
    if scenario == "zero_rank":
        return 0 if rank == 1 else 7
    return (5, 11, 1, 9)[rank % 4]


def inputs(scenario: str, rank: int, world: int):
    """x [T, H] float32, weights [T, K], ids [T, K] global (-1 some) for one rank."""
    g = torch.Generator().manual_seed(zlib.crc32(f"{scenario}:{rank}".encode()))
    t = tokens_of(scenario, rank, world)
    x = torch.randn(t, H, generator=g) * 4
    w = torch.rand(t, K, generator=g)
    n = E_LOCAL * world
    if scenario == "one_expert":
        ids = torch.full((t, K), -1, dtype=torch.long)
        ids[:, 0] = n - 1
    else:
        # Distinct experts per token (as a router gives), some slots -1.
        ids = (
            torch.stack([torch.randperm(n, generator=g)[:K] for _ in range(t)])
            if t
            else (torch.empty(0, K, dtype=torch.long))
        )
        ids[torch.rand(t, K, generator=g) < 0.2] = -1
    return x, w, ids


def sent_to(scenario: str, src: int, rank: int, world: int) -> torch.Tensor:
    """[T] which of rank `src`'s tokens must reach `rank`."""
    i = inputs(scenario, src, world)[2]
    return ((i >= 0) & (i // E_LOCAL == rank)).any(1)


def expected_rows(scenario: str, rank: int, world: int):
    """(x, w, global ids) of the rows `rank` must receive, in source-rank then token order."""
    xs, ws, ids = [], [], []
    for src in range(world):
        x, w, i = inputs(scenario, src, world)
        hit = sent_to(scenario, src, rank, world)
        xs.append(x[hit]), ws.append(w[hit]), ids.append(i[hit])
    return torch.cat(xs), torch.cat(ws), torch.cat(ids)


def _local(ids: torch.Tensor, rank: int) -> torch.Tensor:
    mine = (ids >= 0) & (ids // E_LOCAL == rank)
    return torch.where(mine, ids - rank * E_LOCAL, torch.full_like(ids, -1))


def _check_dispatch(d, layout, scenario, rank, world, errs, tag) -> None:
    ex, ew, eids = expected_rows(scenario, rank, world)
    n = ex.shape[0]
    if int(d.total_recv) != n:
        errs.append(f"{tag}: total_recv {int(d.total_recv)} != {n}")
        return
    if d.mode == "low_latency":
        counts = torch.tensor([int(sent_to(scenario, s, rank, world).sum()) for s in range(world)])
        valid = (torch.arange(CAP) < counts.unsqueeze(1)).reshape(-1)
        pad_ids = d.local_ids[~valid]
        if pad_ids.numel() and not (pad_ids == -1).all():
            errs.append(f"{tag}: a padding row carries an expert id")
        if d.weights[~valid].abs().sum() != 0:
            errs.append(f"{tag}: a padding row carries a weight")
        x, sc, w, ids = (
            d.x[valid],
            d.scales[valid] if d.scales is not None else None,
            d.weights[valid],
            d.local_ids[valid],
        )
    else:
        x, sc, w, ids = d.x, d.scales, d.weights, d.local_ids
    if layout.wire == "none":
        if not torch.equal(x, ex):
            errs.append(f"{tag}: received rows differ from the sent ones")
    else:
        ref = wire.encode(layout, ex, ew, eids)
        if not torch.equal(wire.field(layout, ref, "x"), x) or not torch.equal(
            wire.field(layout, ref, "scales"), sc
        ):
            errs.append(f"{tag}: received {layout.wire} rows differ from the sender's quantization")
    if not torch.equal(w, ew):
        errs.append(f"{tag}: weights differ")
    if not torch.equal(ids, _local(eids, rank)):
        errs.append(f"{tag}: local expert ids differ")


def wire_error_bound(wire_fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Per-element rounding bound of a wire format: fp8 e4m3 keeps 3 mantissa bits
    (half an ulp <= 2^-4 of the block's amax); MXFP4's coarsest step (4 -> 6 at scale
    2^(floor(log2 amax) - 2)) is at most amax / 2, half of it amax / 4."""
    block, frac = (128, 2**-4) if wire_fmt == "fp8" else (32, 0.25)
    amax = x.float().unflatten(-1, (-1, block)).abs().amax(-1, keepdim=True)
    return (amax * frac).expand(*amax.shape[:-1], block).flatten(-2) + 1e-6


def _wire_tolerance(layout, x, xr) -> str | None:
    err = (xr.float() - x.float()).abs()
    if (err > wire_error_bound(layout.wire, x)).any():
        return f"{layout.wire} wire error {err.max():.3g} past its bound"
    return None


def dispatch_combine_checks(rank: int, world: int) -> list[str]:
    errs: list[str] = []
    for scenario in ("uneven", "zero_rank", "one_expert"):
        x, w, ids = inputs(scenario, rank, world)
        for wire_fmt in ("none", "fp8", "mxfp4"):
            outs = {}
            for mode in ("high_throughput", "low_latency"):
                tag = f"w{world} r{rank} {scenario} {wire_fmt} {mode}"
                cfg = EpConfig(rank, world, H, CAP, E_LOCAL, K, wire=wire_fmt, mode=mode)
                op = EpDispatchCombine(cfg)
                layout = op.layout(x.dtype)
                d = op.dispatch(x, w, ids)
                if d.mode != mode:
                    errs.append(f"{tag}: ran {d.mode}")
                _check_dispatch(d, layout, scenario, rank, world, errs, tag)
                xr = d.dequantized(layout)
                # An identity expert: each row times the sum of its weights on this rank.
                local_w = (d.weights * (d.local_ids >= 0)).sum(1, keepdim=True)
                sent_rows = op.transport.bytes_sent
                out = op.combine(xr * local_w)
                outs[mode] = out
                ref_x = wire.dequantize(layout, *_quantized(layout, x))
                want = ref_x * (w * (ids >= 0)).sum(1, keepdim=True)
                if not torch.allclose(out, want, rtol=1e-5, atol=1e-5):
                    errs.append(f"{tag}: combine {(out - want).abs().max():.3g} off x * sum(w)")
                if wire_fmt != "none" and x.shape[0]:
                    bad = _wire_tolerance(layout, x, ref_x)
                    if bad:
                        errs.append(f"{tag}: {bad}")
                if mode == "high_throughput":
                    owners = ((ids >= 0) & (ids // E_LOCAL >= 0)).unsqueeze(-1) & (
                        ids.unsqueeze(-1) // E_LOCAL == torch.arange(world)
                    )
                    ideal = int(owners.any(1).sum()) * layout.row_bytes
                    if sent_rows != ideal:
                        errs.append(f"{tag}: dispatch sent {sent_rows} B, ideal {ideal} B")
            if not torch.equal(outs["high_throughput"], outs["low_latency"]):
                errs.append(f"w{world} r{rank} {scenario} {wire_fmt}: the modes differ")
    return errs


def _quantized(layout, x):
    rows = wire.encode(layout, x, torch.zeros(x.shape[0], K), torch.zeros(x.shape[0], K))
    sc = wire.field(layout, rows, "scales") if layout.scale_dtype is not None else None
    return wire.field(layout, rows, "x"), sc


def capacity_checks(rank: int, world: int) -> list[str]:
    """Too many tokens: every rank raises, then the group still works."""
    errs: list[str] = []
    cfg = EpConfig(rank, world, H, CAP, E_LOCAL, K, mode="high_throughput")
    op = EpDispatchCombine(cfg)
    t = CAP + 1 if rank == 0 else 2
    g = torch.Generator().manual_seed(rank)
    x, w = torch.randn(t, H, generator=g), torch.rand(t, K, generator=g)
    ids = torch.randint(0, E_LOCAL * world, (t, K), generator=g)
    try:
        op.dispatch(x, w, ids)
        errs.append(f"r{rank}: high_throughput took {CAP + 1} tokens on rank 0")
    except EpCapacityError as e:
        if "max_tokens_per_rank" not in str(e):
            errs.append(f"r{rank}: unclear error {e}")
    ll = EpDispatchCombine(EpConfig(rank, world, H, CAP, E_LOCAL, K, mode="low_latency"))
    try:
        ll.dispatch(x[:2], w[:2], ids[:2], tokens_bound=CAP + 1)
        errs.append(f"r{rank}: low_latency took a bound past its capacity")
    except EpCapacityError:
        pass
    d = op.dispatch(x[:2], w[:2], ids[:2])
    out = op.combine(d.x * (d.weights * (d.local_ids >= 0)).sum(1, keepdim=True))
    want = x[:2] * w[:2].sum(1, keepdim=True)
    if not torch.allclose(out, want, rtol=1e-5, atol=1e-5):
        errs.append(f"r{rank}: the group is out of step after the refusal")
    return errs


def all_checks(rank: int, world: int) -> list[str]:
    return dispatch_combine_checks(rank, world) + capacity_checks(rank, world)
