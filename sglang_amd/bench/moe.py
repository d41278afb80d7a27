"""`sglang-amd bench moe`: MXFP4 (W4A16, and A4W4) fused MoE against bf16 MoE, same routing.

At decode a MoE layer's time is the time to read the weights of the experts its
tokens hit, so every implementation is judged in GB/s of expert weight bytes it
must read (MXFP4: 0.5 B per weight + 1/32 B of scale; bf16: 2 B) against the
measured copy bandwidth, and ours against the best bf16 peer measured in the
same run: our Triton kernel with bf16 weights, SGLang's fused_moe_triton when
sglang is importable, and a torch per-expert loop of bf16 matmuls. On a GPU each
implementation that can be captured is timed from a CUDA graph, as SGLang serves
decode (`roofline.time_replayed`; the note says "graph" or why not); the torch
loop reads routing on the host and always runs eagerly. Every timed call, ours and
the peers', starts cache-cold (`roofline.CacheFlush`): MXFP4 experts at one token
fit an MI300X's 256 MB Infinity Cache where the bf16 peers' do not, and a warm
rerun would credit ours with a cache the served model never gives it.

The weights of a shape are made in the bench dtype and quantized a few experts
at a time (`prepare_weights`): DeepSeek-V3's 256 experts are 22.5 GB in bf16,
and quantizing them whole in float32 would need ~150 GB. A shape that still
does not fit (by the byte count against free memory, or an out-of-memory error)
gets rows saying so, and the other shapes still run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from sglang_amd.bench.report import Role, Row
from sglang_amd.bench.roofline import (
    CacheFlush,
    copy_bandwidth,
    matmul_peak,
    time_fn,
    time_replayed,
)
from sglang_amd.bench.sglang_peers import sglang_moe_peer
from sglang_amd.moe.experts import ExpertsOp
from sglang_amd.moe.reference import (
    QUANT_CHUNK_BYTES,
    experts_per_chunk,
    quantize_experts,
)
from sglang_amd.moe.routing import softmax_topk
from sglang_amd.moe.weights import Mxfp4Experts
from sglang_amd.quant.mxfp4 import BLOCK


@dataclass(frozen=True)
class Shape:
    name: str
    experts: int
    top_k: int
    hidden: int
    inter: int


DEEPSEEK_V3 = Shape("dsv3", 256, 8, 7168, 2048)
QWEN3_235B = Shape("qwen3-235b", 128, 8, 4096, 1536)
GPU_CASES = [(s, t) for s in (DEEPSEEK_V3, QWEN3_235B) for t in (1, 8, 64, 512, 4096)]
SMOKE_CASES = [(Shape("tiny", 8, 2, 64, 32), t) for t in (1, 16)]

# The workspace of quantizing one chunk of experts (`moe.reference.quantize_experts`),
# in multiples of the chunk's float32 bytes, that the free-memory pre-check assumes.
QUANT_WORKSPACE = 6


def _label(shape: Shape, tokens: int) -> str:
    return f"moe {shape.name} T{tokens} E{shape.experts} k{shape.top_k}"


def weight_bytes(shape: Shape, experts_hit: int, mxfp4: bool) -> float:
    per_expert = 3 * shape.hidden * shape.inter  # gate, up, down
    per_weight = 0.5 + 1 / BLOCK if mxfp4 else 2.0
    return experts_hit * per_expert * per_weight


def _torch_loop(x, w13, w2, weights, ids):
    out = torch.zeros_like(x)
    for e in ids.unique().tolist():
        tok, slot = torch.where(ids == e)
        gate, up = F.linear(x[tok], w13[e]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w2[e]) * weights[tok, slot, None].to(x.dtype)
        out.index_add_(0, tok, y)
    return out


def prepare_bytes(shape: Shape, dtype: torch.dtype, chunk_bytes: int = QUANT_CHUNK_BYTES) -> int:
    """Device bytes `prepare_weights` needs: every expert's weights in `dtype` and
    in MXFP4, and the workspace of quantizing one chunk of experts."""
    weights = 3 * shape.hidden * shape.inter * shape.experts
    per_expert = 2 * shape.inter * shape.hidden  # w13's, the larger chunk
    chunk = min(shape.experts, experts_per_chunk(per_expert, chunk_bytes)) * per_expert * 4
    return int(weights * (dtype.itemsize + 0.5 + 1 / BLOCK) + QUANT_WORKSPACE * chunk)


def prepare_weights(
    shape: Shape, device: torch.device, dtype: torch.dtype, chunk_bytes: int = QUANT_CHUNK_BYTES
) -> tuple[torch.Tensor, torch.Tensor, Mxfp4Experts]:
    """Random expert weights (w13, w2) in `dtype` and their MXFP4 quantization."""
    gen = torch.Generator(device=device).manual_seed(0)

    def weights(*size: int) -> torch.Tensor:  # in `dtype` from the start, scaled in place
        return torch.randn(*size, device=device, dtype=dtype, generator=gen).mul_(0.02)

    w13 = weights(shape.experts, 2 * shape.inter, shape.hidden)
    w2 = weights(shape.experts, shape.hidden, shape.inter)
    return w13, w2, quantize_experts(w13, w2, chunk_bytes=chunk_bytes)


def _free_bytes(device: torch.device) -> int | None:
    """Bytes a shape may still allocate (None: unknown, do not pre-check)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _impls(op: ExpertsOp) -> list[tuple[str, Role, bool]]:
    """(impl, role, weights in MXFP4) of every row a case gets, in `_callables`' order.
    Ours is MXFP4 W4A16; A4W4 is our variant; the bf16 implementations are the peers."""
    t = op.tier.value
    return [
        (f"amd {t} mxfp4", "ours", True),
        (f"amd {t} mxfp4 a4w4", "variant", True),
        (f"amd {t} bf16", "peer", False),
        ("torch bf16 loop", "peer", False),
        ("sglang triton bf16", "peer", False),
    ]


def _callables(op, x, w13, w2, q, weights, ids) -> list[tuple[Callable[[], object] | None, str]]:
    peer, peer_note = sglang_moe_peer(x, w13, w2, weights, ids)
    return [
        (partial(op, x, q, None, weights, ids), ""),
        (partial(op, x, q, None, weights, ids, act_mxfp4=True), ""),
        (partial(op, x, w13, w2, weights, ids), ""),
        (partial(_torch_loop, x, w13, w2, weights, ids), ""),
        (peer, peer_note),
    ]


def _not_run(shape: Shape, token_counts: list[int], op: ExpertsOp, note: str) -> list[Row]:
    return [
        Row(_label(shape, t), impl, None, None, note, role)
        for t in token_counts
        for impl, role, _ in _impls(op)
    ]


def _token_rows(shape, tokens, device, dtype, op, w13, w2, q, gen, flush) -> list[Row]:
    x = torch.randn(tokens, shape.hidden, device=device, generator=gen).to(dtype)
    logits = torch.randn(tokens, shape.experts, device=device, generator=gen)
    weights, ids = softmax_topk(logits, shape.top_k, renormalize=True)
    hit = int(ids.unique().numel())
    label = _label(shape, tokens)
    warmup = 2 if device.type == "cpu" else 5
    rows = []
    candidates = zip(_impls(op), _callables(op, x, w13, w2, q, weights, ids), strict=True)
    for (impl, role, mxfp4), (fn, note) in candidates:
        if fn is None:
            rows.append(Row(label, impl, None, None, note, role))
            continue
        try:
            if impl.startswith("torch"):  # host-side routing: cannot be captured
                seconds, mode = time_fn(fn, device, warmup=warmup, flush=flush), "eager"
            else:
                seconds, mode = time_replayed(fn, device, warmup=warmup, flush=flush)
            rate = weight_bytes(shape, hit, mxfp4) / seconds
            rows.append(Row(label, impl, seconds, rate, f"{hit} experts hit, {mode}", role))
        except Exception as exc:
            rows.append(Row(label, impl, None, None, f"failed: {type(exc).__name__}", role))
    return rows


def _shape_rows(shape: Shape, token_counts: list[int], device, dtype, op, flush) -> list[Row]:
    need, free = prepare_bytes(shape, dtype), _free_bytes(device)
    if free is not None and need > free:
        note = f"not run: weights need {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        return _not_run(shape, token_counts, op, note)
    try:
        w13, w2, q = prepare_weights(shape, device, dtype)
    except torch.OutOfMemoryError:
        note = f"not run: out of memory making the weights ({need / 1e9:.1f} GB)"
        return _not_run(shape, token_counts, op, note)
    gen = torch.Generator(device=device).manual_seed(1)
    rows = []
    for tokens in token_counts:
        try:
            rows += _token_rows(shape, tokens, device, dtype, op, w13, w2, q, gen, flush)
        except torch.OutOfMemoryError:  # activations or routing: this token count only
            rows += _not_run(shape, [tokens], op, "not run: out of memory")
    return rows


def run(cases: list[tuple[Shape, int]], device: torch.device, dtype: torch.dtype) -> dict:
    """Measure every case; returns ceilings, how calls were timed, and rows for `report`."""
    flush = CacheFlush(device)
    ceilings = {
        "copy_bytes_per_s": copy_bandwidth(device, flush=flush),
        "bf16_flop_per_s": matmul_peak(device, flush=flush),
    }
    op = ExpertsOp(device)
    rows: list[Row] = []
    for shape in dict.fromkeys(s for s, _ in cases):
        rows += _shape_rows(shape, [t for s, t in cases if s == shape], device, dtype, op, flush)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"ceilings": ceilings, "timing": flush.describe(), "rows": rows}
