"""Grouped GEMM over expert-aligned slots: the matmul both fused MoE and dense MXFP4 use.

Where it sits: `moe/fused.py` calls it twice per MoE layer (gate_up with its
gated activation in the epilogue, `gated`: SiLU-and-mul or gpt-oss's clamped
SwiGLU, `gemm/activation.py`; then down with the router weights), each with an
optional per-expert bias;
`quant/mxfp4_linear.py` calls it as the one-group case for dense MXFP4 linears.
Row r of the output is slot `slots[r]`; its input row is slot // row_div.
Kernels: `grouped_gemm_details/_grouped_gemm.py` (float weights, or MXFP4
weights (W4A16): through tl.dot_scaled for bf16/fp16 activations, decoded in
the loop for float32 ones) and `grouped_gemm_details/_grouped_gemm_a4w4.py`
(both operands MXFP4 through tl.dot_scaled: A packed, or float rows it
quantizes in its prologue; the gated GEMM can write its output as MXFP4 for
the next one. The encoder is `numerics_details/mxfp4.py`, so this folder
depends on no family). Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from sglang_amd.gemm.activation import SILU, GatedActivation
from sglang_amd.gemm.grouped_gemm_details._activation import gpt_oss_glu, silu_glu
from sglang_amd.gemm.grouped_gemm_details._grouped_gemm import _grouped_gemm_kernel
from sglang_amd.gemm.grouped_gemm_details._grouped_gemm_a4w4 import _grouped_gemm_a4w4_kernel
from sglang_amd.gemm.opt_flags import grouped_gemm_flags
from sglang_amd.target_info import current_target
from sglang_amd.triton_utils import dot_flags

# Left-operand formats tl.dot_scaled takes unscaled: MXFP4 weights with these
# activations go to it; float32 activations decode in the loop instead.
_DOT_SCALED_FORMAT = {torch.bfloat16: "bf16", torch.float16: "fp16"}
# GatedActivation.kind -> the jit function the gated GEMM's epilogue calls.
_GLU = {"silu": silu_glu, "gpt_oss": gpt_oss_glu}


@dataclass(frozen=True)
class _Epilogue:
    """The kernels' bias and activation arguments: `bias` (W itself when there is
    none: unused), its per-group stride, the activation's runtime scalars, and
    the constexprs that select the code."""

    bias: torch.Tensor
    stride_be: int
    alpha: float
    limit: float
    constexprs: dict


def _epilogue(
    w: torch.Tensor, gated: bool, activation: GatedActivation, bias: torch.Tensor | None
) -> _Epilogue:
    rows = w.shape[1]
    if bias is not None and tuple(bias.shape) != (w.shape[0], rows):
        raise ValueError(
            f"bias must be [{w.shape[0]}, {rows}] (a value per W row), got {tuple(bias.shape)}"
        )
    if bias is not None and bias.stride(-1) != 1:
        bias = bias.contiguous()
    if not gated and activation != SILU:
        raise ValueError("only the gated GEMM applies an activation")
    return _Epilogue(
        bias=bias if bias is not None else w,
        stride_be=bias.stride(0) if bias is not None else 0,
        alpha=float(activation.alpha if activation.alpha is not None else 1.0),
        limit=float(activation.limit if activation.limit is not None else 0.0),
        constexprs=dict(
            GLU=_GLU[activation.kind],
            INTERLEAVED=gated and activation.interleaved,
            HAS_BIAS=bias is not None,
        ),
    )


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
    quantize_a: bool = False,
    out_scale: torch.Tensor | None = None,
    gated: bool = False,
    activation: GatedActivation = SILU,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[slots[r]] = (a[slots[r] // row_div] @ W[group(r)]^T + bias[group(r)])
    (x weights[slots[r]]).

    With `gated`, W has 2n rows (gate [0, n), up [n, 2n); or interleaved, gate
    2i and up 2i + 1, as `activation` says) and out[slots[r]] =
    activation(gate, up) of the row's two products (+ their bias), in float32.

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
        out: [num_slots, n] written at the listed slots only; with `out_scale`
            [num_slots, n // 2] uint8 MXFP4 codes (A4W4 only, n % 32 == 0).
        weights: [num_slots] float per-slot factor (router weights), or None.
        a_scale: [rows, k // 32] uint8 E8M0 scales of packed `a` (A4W4), or None.
        quantize_a: A4W4 from float `a`: each program rounds its rows to MXFP4
            ("even" scales) as it loads them.
        out_scale: [num_slots, n // 32] uint8: write the output as MXFP4 (A4W4).
        activation: the gated GEMM's `GatedActivation` (SiLU over halves by default).
        bias: [G, n (2n)] float, a value per W row added before the activation /
            the router weight; None for none.
    """
    if w.shape[1] != (2 * n if gated else n):
        raise ValueError(f"weight has {w.shape[1]} rows; expected {2 * n if gated else n}")
    a4w4 = a_scale is not None or quantize_a
    if a_scale is not None and quantize_a:
        raise ValueError("quantize_a takes float `a`; a packed `a` comes with a_scale")
    if out_scale is not None and not a4w4:
        raise ValueError("an MXFP4 output (out_scale) is written by the A4W4 kernel only")
    if out_scale is not None and (n % 32 or out.shape[-1] * 2 != n):
        raise ValueError(f"MXFP4 output needs n % 32 == 0 and out [.., n // 2]; n {n}")
    epi = _epilogue(w, gated, activation, bias)
    flags = grouped_gemm_flags(
        current_target(a.device),
        a4w4=a4w4,
        gated=gated,
        quantize_a_rows=block_m if quantize_a else 0,
    )
    grid = (block_group.numel(), triton.cdiv(n, flags.block_n))
    if a4w4:
        if w_scale is None:
            raise ValueError("A4W4 (MXFP4 activations) needs MXFP4 weights; got float weights")
        if quantize_a and a.stride(-1) != 1:
            a = a.contiguous()
        _grouped_gemm_a4w4_kernel[grid](
            a,
            a if a_scale is None else a_scale,  # unused with QUANTIZE_A
            w,
            w_scale,
            out,
            out if out_scale is None else out_scale,  # unused without C_MXFP4
            slots,
            block_group,
            weights if weights is not None else w_scale,  # unused without MUL_WEIGHT
            epi.bias,
            num_slots,
            n,
            k,
            a.stride(0),
            0 if a_scale is None else a_scale.stride(0),
            w.stride(0),
            w.stride(1),
            w_scale.stride(0),
            w_scale.stride(1),
            out.stride(0),
            0 if out_scale is None else out_scale.stride(0),
            epi.stride_be,
            epi.alpha,
            epi.limit,
            A_ROW_DIV=row_div,
            MUL_WEIGHT=weights is not None,
            GATED=gated,
            QUANTIZE_A=quantize_a,
            C_MXFP4=out_scale is not None,
            BLOCK_M=block_m,
            BLOCK_N=flags.block_n,
            BLOCK_K=flags.block_k,
            num_warps=flags.num_warps,
            **epi.constexprs,
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
        epi.bias,
        num_slots,
        n,
        k,
        a.stride(0),
        w.stride(0),
        w.stride(1),
        scale.stride(0),
        scale.stride(1),
        out.stride(0),
        epi.stride_be,
        epi.alpha,
        epi.limit,
        A_ROW_DIV=row_div,
        MUL_WEIGHT=weights is not None,
        W_MXFP4=w_scale is not None,
        GATED=gated,
        A_FORMAT=_DOT_SCALED_FORMAT.get(a.dtype, "") if w_scale is not None else "",
        BLOCK_M=block_m,
        BLOCK_N=flags.block_n,
        BLOCK_K=flags.block_k,
        num_warps=flags.num_warps,
        **epi.constexprs,
        **dot_flags(a.dtype),
    )
    return out
