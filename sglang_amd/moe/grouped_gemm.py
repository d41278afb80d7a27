"""Grouped GEMM over expert-aligned slots: the matmul both fused MoE and dense MXFP4 use.

Where it sits: `moe/fused.py` calls it twice per MoE layer (gate_up, then down
with the router weights); `quant/mxfp4_linear.py` calls it as the one-group case
for dense MXFP4 linears. Row r of the output is slot `slots[r]`; its input row is
slot // row_div. Kernels: `fused_details/_grouped_gemm.py` (float or MXFP4
weights decoded in the loop: W4A16) and `fused_details/_grouped_gemm_a4w4.py`
(both operands MXFP4 through tl.dot_scaled). Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.attention.triton_utils import dot_flags
from sglang_amd.moe.fused_details._grouped_gemm import _grouped_gemm_kernel
from sglang_amd.moe.fused_details._grouped_gemm_a4w4 import _grouped_gemm_a4w4_kernel


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
    act_mxfp4: bool = False,
) -> torch.Tensor:
    """out[slots[r]] = a[slots[r] // row_div] @ W[group(r)]^T (x weights[slots[r]]).

    Args:
        a: [rows, k] float16/bfloat16/float32 activations.
        w: [G, n, k] float, or [G, n, k // 2] uint8 MXFP4 codes (even k in the low nibble).
        w_scale: [G, n, k // 32] uint8 E8M0 for MXFP4 weights; None for float.
        slots: [num_blocks * block_m] int32 slot ids, each block one group's;
            entries >= num_slots are padding.
        block_group: [num_blocks] int32 group (expert) of each block; -1 skips the
            block (a worst-case-sized layout's unused tail, moe/align.py).
        num_slots, n, k, row_div, block_m: as above.
        out: [num_slots, n] written at the listed slots only.
        weights: [num_slots] float32 per-slot factor (router weights), or None.
        act_mxfp4: quantize `a` to MXFP4 per 32 (one Triton pass) and multiply in
            A4W4 (MXFP4 weights only).
    """
    block_n = 32 if a.device.type == "cpu" else 64
    grid = (block_group.numel(), triton.cdiv(n, block_n))
    if act_mxfp4:
        if w_scale is None:
            raise ValueError("A4W4 (act_mxfp4) needs MXFP4 weights; got float weights")
        from sglang_amd.quant.mxfp4_triton import quantize_mxfp4_triton

        aq, a_scale = quantize_mxfp4_triton(a)
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
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            BLOCK_K=64 if a.device.type == "cpu" else 128,
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
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=32 if a.device.type == "cpu" else 64,
        **dot_flags(a.dtype),
    )
    return out
