"""`sglang-amd bench moe`: MXFP4 (W4A16, and A4W4) fused MoE against bf16 MoE, same routing.

At decode a MoE layer's time is the time to read the weights of the experts its
tokens hit, so every implementation is judged in GB/s of expert weight bytes it
must read (MXFP4: 0.5 B per weight + 1/32 B of scale; bf16: 2 B) against the
measured copy bandwidth, and ours against the best bf16 peer measured in the
same run: our Triton kernel with bf16 weights, SGLang's fused_moe_triton when
sglang is importable, and a torch per-expert loop of bf16 matmuls. On a GPU each
implementation that can be captured is timed from a CUDA graph, as SGLang serves
decode (`roofline.time_replayed`; the note says "graph" or why not); the torch
loop reads routing on the host and always runs eagerly.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F

from sglang_amd.bench.report import Row
from sglang_amd.bench.roofline import copy_bandwidth, matmul_peak, time_fn, time_replayed
from sglang_amd.moe.experts import ExpertsOp
from sglang_amd.moe.reference import quantize_experts
from sglang_amd.moe.routing import softmax_topk
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


def _sglang_peer(x, w13, w2, weights, ids) -> tuple[Callable[[], object] | None, str]:
    if importlib.util.find_spec("sglang") is None:
        return None, "not installed here"
    try:
        from sglang.srt.layers.moe.moe_runner.base import MoeRunnerConfig
        from sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe import fused_experts
        from sglang.srt.layers.moe.topk import StandardTopKOutput

        if x.device.type != "cuda":
            return None, "not run: SGLang's Triton MoE kernel needs a GPU"
        topk = StandardTopKOutput(weights, ids.to(torch.int32), None)
        config = MoeRunnerConfig(num_experts=w13.shape[0], inplace=False, top_k=ids.shape[1])
        return partial(fused_experts, x, w13, w2, topk, config), ""
    except Exception as exc:  # an API it does not offer here is reported, not fatal
        return None, f"unavailable: {type(exc).__name__}: {exc}"[:120]


def _shape_rows(shape: Shape, token_counts: list[int], device, dtype, op) -> list[Row]:
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*size):
        return torch.randn(*size, device=device, generator=gen)

    w13 = (randn(shape.experts, 2 * shape.inter, shape.hidden) * 0.02).to(dtype)
    w2 = (randn(shape.experts, shape.hidden, shape.inter) * 0.02).to(dtype)
    q = quantize_experts(w13, w2)
    rows = []
    for tokens in token_counts:
        x = randn(tokens, shape.hidden).to(dtype)
        weights, ids = softmax_topk(randn(tokens, shape.experts), shape.top_k, renormalize=True)
        hit = int(ids.unique().numel())
        label = _label(shape, tokens)
        peer, peer_note = _sglang_peer(x, w13, w2, weights, ids)
        candidates = [
            (f"amd {op.tier.value} mxfp4", partial(op, x, q, None, weights, ids), True, ""),
            (
                f"amd {op.tier.value} mxfp4 a4w4",
                partial(op, x, q, None, weights, ids, act_mxfp4=True),
                True,
                "",
            ),
            (f"amd {op.tier.value} bf16", partial(op, x, w13, w2, weights, ids), False, ""),
            ("torch bf16 loop", partial(_torch_loop, x, w13, w2, weights, ids), False, ""),
            ("sglang triton bf16", peer, False, peer_note),
        ]
        warmup = 2 if device.type == "cpu" else 5
        for impl, fn, mxfp4, note in candidates:
            if fn is None:
                rows.append(Row(label, impl, None, None, note))
                continue
            try:
                if impl.startswith("torch"):  # host-side routing: cannot be captured
                    seconds, mode = time_fn(fn, device, warmup=warmup), "eager"
                else:
                    seconds, mode = time_replayed(fn, device, warmup=warmup)
                rate = weight_bytes(shape, hit, mxfp4) / seconds
                rows.append(Row(label, impl, seconds, rate, f"{hit} experts hit, {mode}"))
            except Exception as exc:
                rows.append(Row(label, impl, None, None, f"failed: {type(exc).__name__}"))
    return rows


def run(cases: list[tuple[Shape, int]], device: torch.device, dtype: torch.dtype) -> dict:
    """Measure every case; returns ceilings and rows for `report`."""
    ceilings = {"copy_bytes_per_s": copy_bandwidth(device), "bf16_flop_per_s": matmul_peak(device)}
    op = ExpertsOp(device)
    rows: list[Row] = []
    for shape in dict.fromkeys(s for s, _ in cases):
        rows += _shape_rows(shape, [t for s, t in cases if s == shape], device, dtype, op)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"ceilings": ceilings, "rows": rows}
