"""Triton tier of MXFP4 conversion, bit-exact with the torch reference in mxfp4.py.

Used to quantize bf16 MoE weights at load on the GPU and to dequantize them for
checks; the fused-MoE kernels decode MXFP4 in their own inner loops. Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.quant.mxfp4 import BLOCK, ScaleRounding, check_block_dim
from sglang_amd.quant.mxfp4_details._convert import _dequantize_kernel, _quantize_kernel

_ROUNDING = {"even": 0, "up": 1, "down": 2}
_BLOCKS_PER_PROG = 16


def quantize_mxfp4_triton(
    x: torch.Tensor, rounding: ScaleRounding = "even"
) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] float (K % 32 == 0) -> packed [M, K // 2] uint8, scales [M, K // 32] uint8."""
    if rounding not in _ROUNDING:
        raise ValueError(f"scale rounding {rounding!r}: use 'even', 'up' or 'down'")
    check_block_dim(x.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    m, k = x2.shape
    packed = torch.empty(m, k // 2, dtype=torch.uint8, device=x.device)
    scales = torch.empty(m, k // BLOCK, dtype=torch.uint8, device=x.device)
    nb = k // BLOCK
    if m:
        grid = (m, triton.cdiv(nb, _BLOCKS_PER_PROG))
        _quantize_kernel[grid](
            x2,
            packed,
            scales,
            x2.stride(0),
            packed.stride(0),
            scales.stride(0),
            nb,
            BLOCKS_PER_PROG=_BLOCKS_PER_PROG,
            ROUNDING=_ROUNDING[rounding],
        )
    return packed.view(*x.shape[:-1], k // 2), scales.view(*x.shape[:-1], nb)


def dequantize_mxfp4_triton(
    packed: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> torch.Tensor:
    """packed [M, K // 2] uint8 + scales [M, K // 32] uint8 -> [M, K] in `dtype`."""
    k = packed.shape[-1] * 2
    if scales.shape[-1] * BLOCK != k:
        raise ValueError(f"{scales.shape[-1]} scales for {k} elements; need one per {BLOCK}")
    p2 = packed.reshape(-1, packed.shape[-1]).contiguous()
    s2 = scales.reshape(-1, scales.shape[-1]).contiguous()
    out = torch.empty(p2.shape[0], k, dtype=dtype, device=packed.device)
    nb = k // BLOCK
    if p2.shape[0]:
        grid = (p2.shape[0], triton.cdiv(nb, _BLOCKS_PER_PROG))
        _dequantize_kernel[grid](
            p2,
            s2,
            out,
            p2.stride(0),
            s2.stride(0),
            out.stride(0),
            nb,
            BLOCKS_PER_PROG=_BLOCKS_PER_PROG,
        )
    return out.view(*packed.shape[:-1], k)


def a4w4_operand(a: torch.Tensor, in_gemm: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The left operand of an A4W4 grouped GEMM: `a` as is when the GEMM rounds it
    to MXFP4 itself (`in_gemm`, scale None), else its codes [M, K // 2] and E8M0
    scales [M, K // 32] from one Triton pass."""
    if in_gemm:
        return a, None
    return quantize_mxfp4_triton(a)
