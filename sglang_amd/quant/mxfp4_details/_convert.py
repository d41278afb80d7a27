"""Triton kernels: float <-> MXFP4 (packed E2M1 + E8M0), bit-exact with quant/mxfp4.py.

Each program converts one row's run of BLOCKS_PER_PROG 32-element blocks. Even
and odd elements are loaded as two [blocks, 16] tiles, which is exactly the
packing (even element -> low nibble), so no in-register shuffles are needed.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _e2m1_code(v):
    """Nearest E2M1 code of v (ties to even mantissa, saturating), uint8."""
    a = tl.abs(v)
    code = (a > 0.25).to(tl.uint8)
    code += (a >= 0.75).to(tl.uint8)
    code += (a > 1.25).to(tl.uint8)
    code += (a >= 1.75).to(tl.uint8)
    code += (a > 2.5).to(tl.uint8)
    code += (a >= 3.5).to(tl.uint8)
    code += (a > 5.0).to(tl.uint8)
    sign = (v.to(tl.int32, bitcast=True) >> 31) & 1
    return code | (sign.to(tl.uint8) << 3)


@triton.jit
def _e2m1_value(code):
    exp = ((code >> 1) & 3).to(tl.float32)
    man = (code & 1).to(tl.float32)
    mag = tl.where(exp == 0.0, man * 0.5, tl.exp2(exp - 1.0) * (1.0 + 0.5 * man))
    return tl.where((code & 8) != 0, -mag, mag)


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
    finite = (tl.abs(even) < float("inf")) & (tl.abs(odd) < float("inf"))
    bad = tl.min(finite.to(tl.int32), 1) == 0
    amax = tl.max(
        tl.maximum(tl.where(finite, tl.abs(even), 0.0), tl.where(finite, tl.abs(odd), 0.0)), 1
    )
    bits = amax.to(tl.int32, bitcast=True)
    floor_log2 = ((bits >> 23) & 0xFF) - 127
    if ROUNDING == 0:
        e = floor_log2 + ((bits & 0x7FFFFF) >= 0x600000).to(tl.int32) - 2
    elif ROUNDING == 2:
        e = floor_log2 - 2
    else:
        e = floor_log2 - 2
        e = tl.where(amax / tl.exp2(e.to(tl.float32)) > 6.0, e + 1, e)
        e = tl.where(amax / tl.exp2(e.to(tl.float32)) > 6.0, e + 1, e)
    e = tl.where(amax > 0.0, e, -127)
    e = tl.minimum(tl.maximum(e, -127), 127)
    inv = tl.exp2(-e.to(tl.float32))[:, None]
    lo = _e2m1_code(even * inv)
    hi = _e2m1_code(odd * inv)
    byte = tl.where(bad[:, None], 0, lo | (hi << 4)).to(tl.uint8)
    p_col = blk[:, None] * 16 + j[None, :]
    tl.store(PACKED + row * stride_p + p_col, byte, mask=b_mask[:, None])
    scale = tl.where(bad, 255, e + 127).to(tl.uint8)
    tl.store(SCALES + row * stride_s + blk, scale, mask=b_mask)


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
        (_e2m1_value(byte & 0xF) * scale).to(out_ty),
        mask=b_mask[:, None],
    )
    tl.store(
        OUT + row * stride_o + col + 1,
        (_e2m1_value(byte >> 4) * scale).to(out_ty),
        mask=b_mask[:, None],
    )
