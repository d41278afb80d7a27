"""Triton tier of the fused MoE: aligned grouped GEMMs with bf16 or MXFP4 (W4A16) experts.

  slots aligned by expert (moe/align.py)
  -> gate_up = x[token(slot)] @ W13[e]^T          (grouped GEMM, MXFP4 decoded in-loop)
  -> act = SiLU(gate) * up                         (torch)
  -> y[slot] = w_route[slot] * act[slot] @ W2[e]^T (grouped GEMM)
  -> out[t] = sum_j y[t * k + j]

Matches `moe/reference.py` (the torch tier). A4W4 (activations quantized per
32: emulated, see `act_mxfp4`) and aiter are not written yet. Never imports sglang.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton

from sglang_amd.attention.triton_utils import dot_flags
from sglang_amd.moe.align import align_by_expert
from sglang_amd.moe.fused_details._grouped_gemm import _grouped_gemm_kernel
from sglang_amd.moe.reference import Mxfp4Experts
from sglang_amd.quant.mxfp4 import BLOCK


def _gemm(a, w, w_scale, slots, block_expert, num_slots, n, k, row_div, weights, block_m, out):
    mxfp4 = w_scale is not None
    block_n = 32 if a.device.type == "cpu" else 64
    block_k = 32 if a.device.type == "cpu" else 64
    grid = (block_expert.numel(), triton.cdiv(n, block_n))
    scale = w_scale if mxfp4 else w  # unused when W_MXFP4 is False
    _grouped_gemm_kernel[grid](
        a,
        w,
        scale,
        out,
        slots,
        block_expert,
        weights,
        num_slots,
        n,
        k,
        a.stride(0),
        w.stride(0),
        w.stride(1),
        scale.stride(0),
        scale.stride(1),
        out.stride(0),
        A_ROW_DIV=row_div,
        MUL_WEIGHT=weights is not None,
        W_MXFP4=mxfp4,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        **dot_flags(a.dtype),
    )
    return out


def _round_to_mxfp4(t: torch.Tensor) -> torch.Tensor:
    from sglang_amd.quant.mxfp4_triton import dequantize_mxfp4_triton, quantize_mxfp4_triton

    return dequantize_mxfp4_triton(*quantize_mxfp4_triton(t.contiguous()), dtype=t.dtype)


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor | Mxfp4Experts,
    w2: torch.Tensor | None,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    block_m: int | None = None,
    act_mxfp4: bool = False,
) -> torch.Tensor:
    """x [T, H] bf16/fp16/fp32; w13 [E, 2I, H] + w2 [E, H, I], or Mxfp4Experts (w2 None);
    topk_weights [T, k] float; topk_ids [T, k] int (-1: routed nowhere). Returns [T, H].

    act_mxfp4: A4W4 numerics. Both GEMM inputs are rounded to MXFP4 per 32 (our
    Triton quantize + dequantize) and fed to the W4A16 kernel: exact A4W4 products
    on hardware without FP4 matrix cores (H100, MI300); not a speed path."""
    if isinstance(w13, Mxfp4Experts):
        q = w13
        w13, s13, w2, s2 = q.w13, q.w13_scale, q.w2, q.w2_scale
        hidden, inter = w13.shape[2] * 2, w2.shape[2] * 2
    else:
        s13 = s2 = None
        hidden, inter = w13.shape[2], w2.shape[2]
    if x.shape[1] != hidden:
        raise ValueError(f"x has hidden size {x.shape[1]}, experts expect {hidden}")
    if s13 is not None and (hidden % BLOCK or inter % BLOCK):
        raise ValueError(
            f"MXFP4 experts need hidden ({hidden}) and intermediate ({inter}) % 32 == 0"
        )
    tokens, k = topk_ids.shape
    num_experts = w13.shape[0]
    block_m = block_m or (16 if x.device.type == "cpu" else 64)
    slots, block_expert, _ = align_by_expert(topk_ids, num_experts, block_m)
    num_slots = tokens * k
    gate_up = torch.empty(num_slots, 2 * inter, dtype=x.dtype, device=x.device)
    if act_mxfp4:
        x = _round_to_mxfp4(x)
    _gemm(
        x.contiguous(),
        w13,
        s13,
        slots,
        block_expert,
        num_slots,
        2 * inter,
        hidden,
        k,
        None,
        block_m,
        gate_up,
    )
    gate, up = gate_up.chunk(2, dim=-1)
    act = F.silu(gate.float()) * up.float()
    act = _round_to_mxfp4(act).to(x.dtype) if act_mxfp4 else act.to(x.dtype)
    y = torch.zeros(num_slots, hidden, dtype=torch.float32, device=x.device)
    weights = topk_weights.reshape(-1).float().contiguous()
    _gemm(act, w2, s2, slots, block_expert, num_slots, hidden, inter, 1, weights, block_m, y)
    return y.view(tokens, k, hidden).sum(dim=1).to(x.dtype)
