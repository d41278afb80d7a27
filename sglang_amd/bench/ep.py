"""`sglang-amd bench ep`: the expert-parallel communicator across real ranks.

Every case is one MoE layer's communication for a batch: dispatch (each token to
the ranks owning its experts) then combine (each rank's weighted sum back), with
an identity expert in between so only the communicator is timed. Per world size
and tokens per rank it times, on the same process group in the same run:

  high_throughput   ours: counts exchanged, exact-size buffers
  low_latency       ours: fixed capacity per rank, no host read; the capacity is
                    the case's own tokens per rank, as serving sizes it when the
                    `auto` threshold sits at that many tokens (the smallest
                    buffer the batch fits: low latency at its best)
  replicate+reduce  peer: what SGLang moves for the same layer without an a2a
                    backend (--ep-size N, --moe-a2a-backend none): every rank's
                    tokens gathered to all ranks, the outputs all-reduced

and counts the bytes each rank puts on the wire. The ideal is each token once to
each rank owning one of its experts, plus its result once back: the
high-throughput dispatch must equal it exactly (the bench fails otherwise).
`switch` is the smallest tokens-per-rank at which high_throughput beats
low_latency, the number `--deepep-mode auto`'s threshold
(SGLANG_AMD_EP_LOW_LATENCY_MAX_TOKENS) should sit below (a threshold T sizes
every low-latency buffer at T rows a rank, so the batches below it pay for T).

On CPU the group is gloo (the only transport here); on a GPU, NCCL/RCCL. Never
imports sglang.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sglang_amd.plotting import pyplot, save

MODES = ("high_throughput", "low_latency", "replicate+reduce")


@dataclass(frozen=True)
class Case:
    world: int
    tokens: int  # per rank
    hidden: int = 2048
    experts_per_rank: int = 8
    topk: int = 8


SMOKE_CASES = [Case(2, t, hidden=256, experts_per_rank=4, topk=4) for t in (1, 16)]
CPU_CASES = [Case(w, t) for w in (2, 4) for t in (1, 8, 32, 64, 128, 256)]


def gpu_cases(gpus: int) -> list[Case]:
    """DeepSeek-V3's layer (hidden 7168, 256 experts, top 8) over every GPU here."""
    return [Case(gpus, t, 7168, 256 // gpus, 8) for t in (1, 8, 32, 128, 512, 2048)]


@dataclass
class Result:
    world: int
    tokens: int
    mode: str
    us: float
    bytes_sent: int  # this rank, dispatch + combine
    ideal_bytes: int


def _inputs(case: Case, rank: int, device: torch.device, dtype: torch.dtype):
    g = torch.Generator().manual_seed(1234 + rank)
    n = case.experts_per_rank * case.world
    x = torch.randn(case.tokens, case.hidden, generator=g).to(device, dtype)
    scores = torch.rand(case.tokens, n, generator=g)
    w, ids = scores.topk(case.topk, dim=1)
    return x, w.to(device), ids.to(device)


def _ideal_dispatch(case: Case, ids: torch.Tensor, layout) -> int:
    """Each token once to each rank owning one of its experts."""
    from sglang_amd.ep.plan import plan_sends

    return int(plan_sends(ids, case.experts_per_rank, case.world).counts.sum()) * layout.row_bytes


def _time(fn, iters: int) -> float:
    import torch.distributed as dist

    def sync() -> None:
        if dist.get_backend() == "nccl":
            torch.cuda.synchronize()

    fn()
    dist.barrier()
    times = []
    for _ in range(iters):
        dist.barrier()
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peer_step(x: torch.Tensor, world: int):
    """SGLang's EP without an a2a backend: tokens gathered everywhere, outputs all-reduced."""
    import torch.distributed as dist

    gathered = x.new_empty(world * x.shape[0], x.shape[1])

    def step() -> int:
        dist.all_gather_into_tensor(gathered, x)
        dist.all_reduce(gathered)
        return 2 * gathered.numel() * gathered.element_size()

    return step


def _ours_step(op, x: torch.Tensor, w: torch.Tensor, ids: torch.Tensor):
    def step() -> int:
        d = op.dispatch(x, w, ids)
        local = (d.weights * (d.local_ids >= 0)).sum(1, keepdim=True)
        op.combine(d.x * local.to(d.x.dtype))
        return 0

    return step


def _measure(case: Case, mode: str, rank: int, cap: int, iters: int, device, dtype) -> Result:
    from sglang_amd.ep.config import EpConfig
    from sglang_amd.ep.dispatch_combine import EpDispatchCombine
    from sglang_amd.ep.transport import TorchTransport

    x, w, ids = _inputs(case, rank, device, dtype)
    if mode == "replicate+reduce":
        step = _peer_step(x, case.world)
        seconds = _time(step, iters)
        return Result(case.world, case.tokens, mode, seconds * 1e6, step(), 0)
    cfg = EpConfig(
        rank,
        case.world,
        case.hidden,
        cap,
        case.experts_per_rank,
        case.topk,
        mode=mode,
        # serving's low-latency buffer: capacity = the threshold, here this case's size
        low_latency_max_tokens=case.tokens,
    )
    transport = TorchTransport()
    op = EpDispatchCombine(cfg, transport)
    step = _ours_step(op, x, w, ids)
    seconds = _time(step, iters)
    transport.reset_counters()
    d = op.dispatch(x, w, ids)
    dispatched = transport.bytes_sent
    op.combine(d.x)
    sent = transport.bytes_sent
    # Ideal: each token once per destination rank out, each received token's result once back.
    received = int(d.total_recv)
    ideal = _ideal_dispatch(case, ids, op.layout(dtype)) + received * case.hidden * dtype.itemsize
    if mode == "high_throughput" and sent != ideal:
        raise AssertionError(
            f"{case}: high_throughput sent {sent} B ({dispatched} dispatching), ideal {ideal} B"
        )
    return Result(case.world, case.tokens, mode, seconds * 1e6, sent, ideal)


def rank_main(rank: int, world: int, cases: list[Case], iters: int, dtype_name: str) -> list[dict]:
    """Run every case of this world size on one rank (spawned by ep.launch.run_ranks)."""
    import torch.distributed as dist

    on_gpu = dist.get_backend() == "nccl"
    device = torch.device(f"cuda:{rank}" if on_gpu else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dtype = getattr(torch, dtype_name)
    cap = max(c.tokens for c in cases)
    return [
        asdict(_measure(case, mode, rank, cap, iters, device, dtype))
        for case in cases
        if case.world == world
        for mode in MODES
    ]


def run(cases: list[Case], dtype: torch.dtype, iters: int = 20, backend: str = "gloo") -> dict:
    from sglang_amd.ep.launch import run_ranks

    rows: list[dict] = []
    for world in sorted({c.world for c in cases}):
        per_rank = run_ranks(
            rank_main,
            world,
            cases,
            iters,
            str(dtype).removeprefix("torch."),
            timeout=600,
            backend=backend,
        )
        # A step ends when its slowest rank does: report the slowest rank's time, rank 0's bytes.
        for i, r in enumerate(per_rank[0]):
            rows.append({**r, "us": max(pr[i]["us"] for pr in per_rank)})
    return {"rows": rows, "switch": switch_points(rows)}


def switch_points(rows: list[dict]) -> dict[int, int | None]:
    """world -> smallest tokens per rank from which on high_throughput is faster than
    low_latency at every larger size measured (None: not at the largest). A threshold
    is one number, so a size where low latency wins again above it moves the switch up."""
    out: dict[int, int | None] = {}
    for world in sorted({r["world"] for r in rows}):
        t = {(r["tokens"], r["mode"]): r["us"] for r in rows if r["world"] == world}
        switch = None
        for n in sorted({k[0] for k in t}, reverse=True):
            if t[(n, "high_throughput")] >= t[(n, "low_latency")]:
                break
            switch = n
        out[world] = switch
    return out


def table(result: dict, header: str) -> str:
    lines = [
        header,
        f"{'world':>5} {'tok/rank':>8} {'mode':<17} {'time us':>10} {'bytes/rank':>11} {'ideal':>11} {'vs peer':>8}",
    ]
    rows = result["rows"]
    peer = {(r["world"], r["tokens"]): r["us"] for r in rows if r["mode"] == "replicate+reduce"}
    for r in rows:
        ratio = (
            ""
            if r["mode"] == "replicate+reduce"
            else f"{peer[(r['world'], r['tokens'])] / r['us']:.2f}x"
        )
        ideal = f"{r['ideal_bytes']:>11}" if r["ideal_bytes"] else f"{'-':>11}"
        lines.append(
            f"{r['world']:>5} {r['tokens']:>8} {r['mode']:<17} {r['us']:>10.1f} {r['bytes_sent']:>11} {ideal} {ratio:>8}"
        )
    for world, n in result["switch"].items():
        where = f"from {n} tokens per rank on" if n else "not at the largest size measured"
        lines.append(f"world {world}: high_throughput beats low_latency {where}")
    return "\n".join(lines)


def write(result: dict, out_dir: Path, header: str) -> tuple[Path, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "ep.json"
    json_path.write_text(json.dumps({"header": header, **result}, indent=2))
    plt = pyplot()
    if plt is None:
        return json_path, None
    fig, ax = plt.subplots(figsize=(8, 5))
    for world in sorted({r["world"] for r in result["rows"]}):
        for mode, style in zip(MODES, ("-o", "-s", ":x"), strict=True):
            pts = [
                (r["tokens"], r["us"])
                for r in result["rows"]
                if r["world"] == world and r["mode"] == mode
            ]
            ax.plot(*zip(*pts, strict=True), style, label=f"world {world} {mode}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tokens per rank")
    ax.set_ylabel("dispatch + combine, us (slowest rank)")
    ax.set_title(header.replace(" | commit", "\ncommit"), fontsize=9)
    ax.legend(fontsize=7)
    png_path = save(fig, out_dir / "ep.png")
    return json_path, png_path
