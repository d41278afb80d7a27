"""Triton kernels: float <-> MXFP4 (packed E2M1 + E8M0), bit-exact with quant/mxfp4.py.

Each program converts one row's run of BLOCKS_PER_PROG 32-element blocks. Even
and odd elements are loaded as two [blocks, 16] tiles, which is exactly the
packing (even element -> low nibble), so no in-register shuffles are needed.
The encoder itself is `numerics_details/mxfp4.py`, shared with the A4W4 GEMM.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.numerics_details.mxfp4 import e2m1_value, quantize_pairs


@triton.jit
def _quantize_kernel(
    X,
    PACKED,
    SCALES,
    stride_x,
    stride_p,
    stride_s,
    num_blocks,
    BLOCKS_PER_PROG: tl.constexpr,
    ROUNDING: tl.constexpr,  # 0 even, 1 up, 2 down
):
    row = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1) * BLOCKS_PER_PROG + tl.arange(0, BLOCKS_PER_PROG)
    b_mask = blk < num_blocks
    j = tl.arange(0, 16)
    col = blk[:, None] * 32 + 2 * j[None, :]
    even = tl.load(X + row * stride_x + col, mask=b_mask[:, None], other=0.0).to(tl.float32)
    odd = tl.load(X + row * stride_x + col + 1, mask=b_mask[:, None], other=0.0).to(tl.float32)
    byte, scale = quantize_pairs(even, odd, BLOCKS_PER_PROG, 1, ROUNDING)
    p_col = blk[:, None] * 16 + j[None, :]
    tl.store(PACKED + row * stride_p + p_col, byte, mask=b_mask[:, None])
    tl.store(SCALES + row * stride_s + blk, tl.reshape(scale, (BLOCKS_PER_PROG,)), mask=b_mask)


@triton.jit
def _dequantize_kernel(
    PACKED,
    SCALES,
    OUT,
    stride_p,
    stride_s,
    stride_o,
    num_blocks,
    BLOCKS_PER_PROG: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1) * BLOCKS_PER_PROG + tl.arange(0, BLOCKS_PER_PROG)
    b_mask = blk < num_blocks
    j = tl.arange(0, 16)
    byte = tl.load(
        PACKED + row * stride_p + blk[:, None] * 16 + j[None, :], mask=b_mask[:, None], other=0
    )
    sc = tl.load(SCALES + row * stride_s + blk, mask=b_mask, other=127).to(tl.int32)
    scale = tl.where(sc == 255, float("nan"), tl.exp2((sc - 127).to(tl.float32)))[:, None]
    col = blk[:, None] * 32 + 2 * j[None, :]
    out_ty = OUT.dtype.element_ty
    tl.store(
        OUT + row * stride_o + col,
        (e2m1_value(byte & 0xF) * scale).to(out_ty),
        mask=b_mask[:, None],
    )
    tl.store(
        OUT + row * stride_o + col + 1,
        (e2m1_value(byte >> 4) * scale).to(out_ty),
        mask=b_mask[:, None],
    )
