"""Torch reference of the fused MoE: gate_up (+ bias) -> gated activation -> down
(+ bias), weighted sum.

Weight layout as in SGLang: w13 [E, 2I, H] (gate rows then up rows, or
interleaved as the `GatedActivation` says: gpt-oss), w2 [E, H, I], optional
biases b13 [E, 2I] and b2 [E, H] added per selected expert before the
activation and before the router weight. MXFP4 weights (`Mxfp4Experts`) are
dequantized with the torch reference, so this is the oracle every fused tier is
judged by. Computes in float32 and returns the activations' dtype. Never imports
sglang.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sglang_amd.gemm.activation import SILU, GatedActivation
from sglang_amd.moe.weights import Mxfp4Experts
from sglang_amd.quant.mxfp4 import (
    BLOCK,
    ScaleRounding,
    dequantize_mxfp4,
    fake_quantize_mxfp4,
    quantize_mxfp4,
)

# Float32 bytes of expert weights handed to quantize_mxfp4 at once. It keeps
# about four float32 temporaries of its input alive (4.3x its float32 size,
# measured on CPU), so quantizing a few experts at a time bounds the workspace to
# ~1.5 GiB whatever the expert count (DeepSeek-V3's 256 experts whole: ~150 GB).
QUANT_CHUNK_BYTES = 256 << 20


def experts_per_chunk(expert_numel: int, chunk_bytes: int = QUANT_CHUNK_BYTES) -> int:
    """Experts of `expert_numel` weights each quantized together (at least one)."""
    return max(1, chunk_bytes // (4 * expert_numel))


def _quantize_in_chunks(
    w: torch.Tensor, rounding: ScaleRounding, chunk_bytes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """quantize_mxfp4 of [E, N, K] experts, a few at a time, into preallocated
    packed [E, N, K // 2] and scales [E, N, K // 32] (the same bytes as whole)."""
    e, n, k = w.shape
    packed = torch.empty(e, n, k // 2, dtype=torch.uint8, device=w.device)
    scales = torch.empty(e, n, k // BLOCK, dtype=torch.uint8, device=w.device)
    step = experts_per_chunk(n * k, chunk_bytes)
    for first in range(0, e, step):
        chunk = slice(first, first + step)
        packed[chunk], scales[chunk] = quantize_mxfp4(w[chunk], rounding)
    return packed, scales


def quantize_experts(
    w13: torch.Tensor,
    w2: torch.Tensor,
    rounding: ScaleRounding = "even",
    chunk_bytes: int = QUANT_CHUNK_BYTES,
) -> Mxfp4Experts:
    """Quantize bf16/fp32 expert weights to MXFP4, naming the size that does not fit.

    Experts are quantized `experts_per_chunk` at a time, so the workspace stays
    bounded by `chunk_bytes` (float32) whatever the expert count.
    """
    hidden, inter = w13.shape[2], w2.shape[2]
    for name, size in (("hidden_size", hidden), ("moe_intermediate_size", inter)):
        if size % BLOCK:
            raise ValueError(
                f"MXFP4 quantizes in blocks of {BLOCK} along the reduction dimension, but "
                f"{name}={size} is not a multiple of {BLOCK}; serve this model unquantized"
            )
    return Mxfp4Experts(
        *_quantize_in_chunks(w13, rounding, chunk_bytes),
        *_quantize_in_chunks(w2, rounding, chunk_bytes),
    )


def _expert_weights(
    w13: torch.Tensor | Mxfp4Experts, w2: torch.Tensor | None, e: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expert e's (gate_up [2I, H], down [H, I]) in float32; MXFP4 decoded for e only."""
    if isinstance(w13, Mxfp4Experts):
        q = w13
        return (
            dequantize_mxfp4(q.w13[e], q.w13_scale[e], torch.float32),
            dequantize_mxfp4(q.w2[e], q.w2_scale[e], torch.float32),
        )
    return w13[e].float(), w2[e].float()


def fused_moe_reference(
    x: torch.Tensor,
    w13: torch.Tensor | Mxfp4Experts,
    w2: torch.Tensor | None,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    act_mxfp4: bool = False,
    stored_as: torch.dtype | None = None,
    activation: GatedActivation = SILU,
    b13: torch.Tensor | None = None,
    b2: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [T, H] routed through experts; returns [T, H] in x's dtype.

    Args:
        x: [T, H] activations.
        w13: [E, 2I, H] gate/up weights, or an `Mxfp4Experts` (then w2 is None).
        w2: [E, H, I] down weights.
        topk_weights: [T, k] router weights (applied after the down projection).
        topk_ids: [T, k] expert ids; -1 marks a slot routed nowhere (EP).
        act_mxfp4: A4W4 numerics: both GEMM inputs (x, and the activation's
            output) are rounded to MXFP4 per 32 along their reduction dim.
        stored_as: round where the fused kernels store between launches (`moe/fused.py`):
            the activation's output (unless MXFP4) and each slot's weighted output, in this
            dtype. None keeps float32 throughout (the definition). In bfloat16 those
            roundings move the output by about an ulp of each slot's value, which
            top-k cancellation can leave larger than the output itself.
        activation: how gate_up's 2I columns become I (`GatedActivation`).
        b13: [E, 2I] bias of the gate_up projection (rows as w13's), or None.
        b2: [E, H] bias of the down projection, or None.
    """
    xf = fake_quantize_mxfp4(x.float()) if act_mxfp4 else x.float()
    out = torch.zeros_like(xf)
    ids = topk_ids.long()
    for expert in ids.unique().tolist():
        if expert < 0:
            continue
        token, slot = torch.where(ids == expert)
        w_gate_up, w_down = _expert_weights(w13, w2, expert)
        bias13 = None if b13 is None else b13[expert].float()
        bias2 = None if b2 is None else b2[expert].float()
        act = activation(F.linear(xf[token], w_gate_up, bias13))
        if act_mxfp4:
            act = fake_quantize_mxfp4(act)
        elif stored_as is not None:
            act = act.to(stored_as).float()
        y = F.linear(act, w_down, bias2) * topk_weights[token, slot, None].float()
        if stored_as is not None:
            y = y.to(stored_as).float()
        out.index_add_(0, token, y)
    return out.to(x.dtype)
