"""Triton tier of the fused MoE: aligned grouped GEMMs with bf16 or MXFP4 (W4A16) experts.

  slots aligned by expert                          (moe/align.py, 1 launch)
  -> act = GLU(x[token(slot)] @ W_gate[e]^T + b_gate[e], x[token(slot)] @ W_up[e]^T + b_up[e])
                                                   (gemm/grouped_gemm.py, gated epilogue)
  -> y[slot] = w_route[slot] * (act[slot] @ W2[e]^T + b2[e])
                                                   (grouped GEMM, activation dtype)
  -> out[t] = sum_j y[t * k + j]                   (moe/combine.py, float32 sum)

GLU is the `GatedActivation` (gemm/activation.py): SiLU(gate) * up, or gpt-oss's
clamped SwiGLU over interleaved gate/up rows; the biases are optional (gpt-oss
has both), each added per selected expert before the activation / the router
weight, as SGLang's Triton MoE and transformers' GptOssExperts do.

Four launches a layer, no torch kernel in between, for float, W4A16 and A4W4
experts alike. With `act_mxfp4` (A4W4) both GEMMs take MXFP4 activations and
weights (`gemm/grouped_gemm_details/_grouped_gemm_a4w4.py`, tl.dot_scaled):
the first rounds x's rows to MXFP4 in its prologue and writes its activation
as MXFP4 from its float32 accumulators (act crosses HBM at 4.25 bits), the
second reads that packed act. Above 64 tokens x is quantized by one launch
first (five), since every output-column program of the first GEMM would read
its float rows (`gemm/opt_flags.quantize_a_in_gemm`). Matches
`moe/reference.py` (the torch tier). Reads nothing back to the host: every
launch is sized from the shapes (align.py), so SGLang can capture a MoE layer
in a CUDA graph. The aiter tier is not written yet. Never imports sglang.
"""

from __future__ import annotations

import torch

from sglang_amd.gemm.activation import SILU, GatedActivation
from sglang_amd.gemm.grouped_gemm import grouped_gemm
from sglang_amd.gemm.opt_flags import moe_block_m, quantize_a_in_gemm
from sglang_amd.moe.align import align_by_expert
from sglang_amd.moe.combine import combine_topk
from sglang_amd.moe.weights import Mxfp4Experts
from sglang_amd.quant.mxfp4 import BLOCK
from sglang_amd.quant.mxfp4_triton import a4w4_operand
from sglang_amd.target_info import current_target


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor | Mxfp4Experts,
    w2: torch.Tensor | None,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    block_m: int | None = None,
    act_mxfp4: bool = False,
    activation: GatedActivation = SILU,
    b13: torch.Tensor | None = None,
    b2: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [T, H] bf16/fp16/fp32; w13 [E, 2I, H] + w2 [E, H, I], or Mxfp4Experts (w2 None);
    topk_weights [T, k] float; topk_ids [T, k] int (-1: routed nowhere). Returns [T, H].

    activation: how GEMM1's 2I columns become I (`GatedActivation`: kind, alpha,
    limit, gate/up layout). b13 [E, 2I], b2 [E, H] float: optional expert biases,
    laid out as w13's and w2's rows. act_mxfp4: A4W4 (MXFP4 experts only). Each
    GEMM input is rounded to MXFP4 per 32 ("even" scales): x in the first GEMM's
    prologue (by a quantizer launch above 64 tokens), the activation's output in
    float32 in its epilogue; both GEMMs take both operands through `tl.dot_scaled`."""
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
    a, a_scale = x.contiguous(), None
    if act_mxfp4:
        a, a_scale = a4w4_operand(a, quantize_a_in_gemm("moe", tokens))
        # act is quantized from GEMM1's float32 accumulators: rounding it to
        # x.dtype first would be a second rounding the oracle does not have.
        act = torch.empty(num_slots, inter // 2, dtype=torch.uint8, device=x.device)
        act_scale = torch.empty(num_slots, inter // BLOCK, dtype=torch.uint8, device=x.device)
    else:
        act = torch.empty(num_slots, inter, dtype=x.dtype, device=x.device)
        act_scale = None
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
        out_scale=act_scale,
        a_scale=a_scale,
        quantize_a=act_mxfp4 and a_scale is None,
        gated=True,
        activation=activation,
        bias=b13,
        **common,
    )
    # Rows of slots routed nowhere stay unwritten: the combine never reads them.
    y = torch.empty(num_slots, hidden, dtype=x.dtype, device=x.device)
    grouped_gemm(
        act,
        w2,
        s2,
        slots,
        block_expert,
        n=hidden,
        k=inter,
        row_div=1,
        out=y,
        weights=topk_weights.reshape(-1),
        a_scale=act_scale,
        bias=b2,
        **common,
    )
    out = torch.empty(tokens, hidden, dtype=x.dtype, device=x.device)
    return combine_topk(y, topk_ids, num_experts, out)
