"""Grouped GEMM over expert-aligned slots: the matmul both fused MoE and dense MXFP4 use.

Where it sits: `moe/fused.py` calls it twice per MoE layer (gate_up with
SiLU-and-mul in the epilogue, `gated`; then down with the router weights);
`quant/mxfp4_linear.py` calls it as the one-group case for dense MXFP4 linears.
Row r of the output is slot `slots[r]`; its input row is slot // row_div.
Kernels: `grouped_gemm_details/_grouped_gemm.py` (float weights, or MXFP4
weights (W4A16): through tl.dot_scaled for bf16/fp16 activations, decoded in
the loop for float32 ones) and `grouped_gemm_details/_grouped_gemm_a4w4.py`
(both operands MXFP4 through tl.dot_scaled; the caller quantizes the
activations, so this folder depends on no family). Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.gemm.grouped_gemm_details._grouped_gemm import _grouped_gemm_kernel
from sglang_amd.gemm.grouped_gemm_details._grouped_gemm_a4w4 import _grouped_gemm_a4w4_kernel
from sglang_amd.gemm.opt_flags import grouped_gemm_flags
from sglang_amd.target_info import current_target
from sglang_amd.triton_utils import dot_flags

# Left-operand formats tl.dot_scaled takes unscaled: MXFP4 weights with these
# activations go to it; float32 activations decode in the loop instead.
_DOT_SCALED_FORMAT = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def grouped_gemm(
    a: torch.Tensor,
    w: torch.Tensor,
    w_scale: torch.Tensor | None,
    slots: torch.Tensor,
    block_group: torch.Tensor,
    *,
    num_slots: int,
    n: int,
    k: int,
    row_div: int,
    block_m: int,
    out: torch.Tensor,
    weights: torch.Tensor | None = None,
    a_scale: torch.Tensor | None = None,
    gated: bool = False,
) -> torch.Tensor:
    """out[slots[r]] = a[slots[r] // row_div] @ W[group(r)]^T (x weights[slots[r]]).

    With `gated`, W has 2n rows (gate [0, n), up [n, 2n)) and
    out[slots[r]] = SiLU(a_row @ W_gate^T) * (a_row @ W_up^T), computed in float32.

    Args:
        a: [rows, k] float16/bfloat16/float32 activations, or with `a_scale`
            [rows, k // 2] uint8 MXFP4 codes (A4W4; MXFP4 weights only).
        w: [G, n, k] float, or [G, n, k // 2] uint8 MXFP4 codes (even k in the low
            nibble); 2n rows with `gated`.
        w_scale: [G, n (2n), k // 32] uint8 E8M0 for MXFP4 weights; None for float.
        slots: [num_blocks * block_m] int32 slot ids, each block one group's;
            entries >= num_slots are padding.
        block_group: [num_blocks] int32 group (expert) of each block; -1 skips the
            block (a worst-case-sized layout's unused tail, moe/align.py).
        num_slots, n, k, row_div, block_m: as above.
        out: [num_slots, n] written at the listed slots only.
        weights: [num_slots] float per-slot factor (router weights), or None.
        a_scale: [rows, k // 32] uint8 E8M0 scales of packed `a` (A4W4), or None.
    """
    if w.shape[1] != (2 * n if gated else n):
        raise ValueError(f"weight has {w.shape[1]} rows; expected {2 * n if gated else n}")
    flags = grouped_gemm_flags(current_target(a.device), a4w4=a_scale is not None, gated=gated)
    grid = (block_group.numel(), triton.cdiv(n, flags.block_n))
    if a_scale is not None:
        if w_scale is None:
            raise ValueError("A4W4 (packed activations) needs MXFP4 weights; got float weights")
        aq = a
        _grouped_gemm_a4w4_kernel[grid](
            aq,
            a_scale,
            w,
            w_scale,
            out,
            slots,
            block_group,
            weights if weights is not None else a_scale,  # unused without MUL_WEIGHT
            num_slots,
            n,
            k,
            aq.stride(0),
            a_scale.stride(0),
            w.stride(0),
            w.stride(1),
            w_scale.stride(0),
            w_scale.stride(1),
            out.stride(0),
            A_ROW_DIV=row_div,
            MUL_WEIGHT=weights is not None,
            GATED=gated,
            BLOCK_M=block_m,
            BLOCK_N=flags.block_n,
            BLOCK_K=flags.block_k,
        )
        return out
    scale = w_scale if w_scale is not None else w  # unused when W_MXFP4 is False
    _grouped_gemm_kernel[grid](
        a,
        w,
        scale,
        out,
        slots,
        block_group,
        weights if weights is not None else scale,
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
        W_MXFP4=w_scale is not None,
        GATED=gated,
        A_FORMAT=_DOT_SCALED_FORMAT.get(a.dtype, "") if w_scale is not None else "",
        BLOCK_M=block_m,
        BLOCK_N=flags.block_n,
        BLOCK_K=flags.block_k,
        **dot_flags(a.dtype),
    )
    return out
