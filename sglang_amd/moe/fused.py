"""Triton tier of the fused MoE: aligned grouped GEMMs with bf16 or MXFP4 (W4A16) experts.

  slots aligned by expert                          (moe/align.py, 1 launch)
  -> act = SiLU(x[token(slot)] @ W_gate[e]^T) * (x[token(slot)] @ W_up[e]^T)
                                                   (gemm/grouped_gemm.py, gated epilogue)
  -> y[slot] = w_route[slot] * act[slot] @ W2[e]^T (grouped GEMM, activation dtype)
  -> out[t] = sum_j y[t * k + j]                   (moe/combine.py, float32 sum)

Four launches a layer (W4A16 or float experts), no torch kernel in between.
With `act_mxfp4` (A4W4) both GEMMs read MXFP4 activations and weights
(`gemm/grouped_gemm_details/_grouped_gemm_a4w4.py`, tl.dot_scaled), so x and
act (float32 there) each take one quantizer launch more: six. Matches
`moe/reference.py` (the torch tier). Reads nothing back to the host: every
launch is sized from the shapes (align.py), so SGLang can capture a MoE layer
in a CUDA graph. The aiter tier is not written yet. Never imports sglang.
"""

from __future__ import annotations

import torch

from sglang_amd.gemm.grouped_gemm import grouped_gemm
from sglang_amd.gemm.opt_flags import moe_block_m
from sglang_amd.moe.align import align_by_expert
from sglang_amd.moe.combine import combine_topk
from sglang_amd.moe.weights import Mxfp4Experts
from sglang_amd.quant.mxfp4 import BLOCK
from sglang_amd.quant.mxfp4_triton import gemm_operand
from sglang_amd.target_info import current_target


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

    act_mxfp4: A4W4 (MXFP4 experts only). Each GEMM input (x, then SiLU(gate) * up
    in float32) is quantized to MXFP4 per 32 by our Triton quantizer and the grouped
    GEMMs take both packed operands through `tl.dot_scaled`."""
    if isinstance(w13, Mxfp4Experts):
        q = w13
        w13, s13, w2, s2 = q.w13, q.w13_scale, q.w2, q.w2_scale
        hidden, inter = w13.shape[2] * 2, w2.shape[2] * 2
    else:
        s13 = s2 = None
        hidden, inter = w13.shape[2], w2.shape[2]
    if x.shape[1] != hidden:
        raise ValueError(f"x has hidden size {x.shape[1]}, experts expect {hidden}")
    if act_mxfp4 and s13 is None:
        raise ValueError("act_mxfp4 (A4W4) needs MXFP4 experts; got float weights")
    if s13 is not None and (hidden % BLOCK or inter % BLOCK):
        raise ValueError(
            f"MXFP4 experts need hidden ({hidden}) and intermediate ({inter}) % 32 == 0"
        )
    tokens, k = topk_ids.shape
    num_experts = w13.shape[0]
    block_m = block_m or moe_block_m(current_target(x.device))
    slots, block_expert, _ = align_by_expert(topk_ids, num_experts, block_m)
    num_slots = tokens * k
    common = dict(num_slots=num_slots, block_m=block_m)
    # A4W4 quantizes act from float32: rounding it to x.dtype first would be a
    # second rounding the oracle does not have.
    act_dtype = torch.float32 if act_mxfp4 else x.dtype
    act = torch.empty(num_slots, inter, dtype=act_dtype, device=x.device)
    a, a_scale = gemm_operand(x.contiguous(), act_mxfp4)
    grouped_gemm(
        a,
        w13,
        s13,
        slots,
        block_expert,
        n=inter,
        k=hidden,
        row_div=k,
        out=act,
        a_scale=a_scale,
        gated=True,
        **common,
    )
    # Rows of slots routed nowhere stay unwritten: the combine never reads them.
    y = torch.empty(num_slots, hidden, dtype=x.dtype, device=x.device)
    a, a_scale = gemm_operand(act, act_mxfp4)
    grouped_gemm(
        a,
        w2,
        s2,
        slots,
        block_expert,
        n=hidden,
        k=inter,
        row_div=1,
        out=y,
        weights=topk_weights.reshape(-1),
        a_scale=a_scale,
        **common,
    )
    out = torch.empty(tokens, hidden, dtype=x.dtype, device=x.device)
    return combine_topk(y, topk_ids, num_experts, out)
