"""Triton kernel: each token's wire record, written straight into every destination's row.

Where it sits: the second launch of the Triton tier of `ep_permute.pack`
(`ep/permute.py`), after `_plan.py` left each token's slot per rank and the
rows sent to each rank. One program per (token, BLOCK_H hidden columns) loads
its piece of x once, encodes it for the wire (`ep/wire.py`'s record: x as given,
float8 e4m3 with a float32 scale per 128, or MXFP4 with an E8M0 scale per 32,
then the float32 routing weights and int32 expert ids) and stores it in the row
of every rank the token goes to: high throughput, the exact send buffer grouped
by rank (rank r's rows from the sum of the counts before r); low latency, rank
r's block of `capacity` rows. No [T, record] copy, no repeat. In the low-latency
layout the grid runs over the capacity and program i also zeroes row i of every
rank's block past that rank's count, so the padding that travels is zeros, as
the torch tier's zero-filled buffer sends it.

FP8 is rounded here on the bits (`e4m3_code`: nearest even, subnormals through
the float adder as c10's Float8_e4m3fn does), not by a cast: Triton 3.8's
interpreter converts float32 -> float8 its own way (it drops the carry of a
mantissa that rounds up into the exponent), and the bytes must match the torch
tier's `.to(torch.float8_e4m3fn)` on every device. MXFP4 is the package's one
Triton encoder (`numerics_details/mxfp4.py`).
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.numerics_details.mxfp4 import quantize_tile

FP8_BLOCK = tl.constexpr(128)
MXFP4_BLOCK = tl.constexpr(32)


@triton.jit
def e4m3_code(y):
    """float8 e4m3fn byte (uint8) of float32 y, |y| <= 448 or NaN: nearest, ties to
    even. Normals round the 23-bit mantissa to 3 (a carry moves into the exponent);
    below 2^-6 the float adder rounds y to a multiple of 2^-9 (the subnormal step)."""
    a = tl.abs(y)
    bits = a.to(tl.int32, bitcast=True)
    normal = ((bits + 0x7FFFF + ((bits >> 20) & 1)) >> 20) - (120 << 3)
    # 2^14 + a: the sum's last mantissa bit is worth 2^-9.
    sub = (a + 16384.0).to(tl.int32, bitcast=True) - 0x46800000
    code = tl.where(a < 0.015625, sub, normal)
    code = tl.where(y != y, 0x7F, code | (((y.to(tl.int32, bitcast=True) >> 31) & 1) << 7))
    return code.to(tl.uint8)


@triton.jit
def _fp8_blocks(x, BLOCK_H: tl.constexpr):
    """x [BLOCK_H] float -> (bytes [BLOCK_H] uint8, scales [BLOCK_H // 128] float32) as
    fp8_blocks.quantize_fp8 (amax floored at 1e-4, scale amax * (1 / 448)). A block
    holding NaN or inf gets an infinite scale: it decodes to NaN, as the torch tier's."""
    blocks = tl.reshape(x.to(tl.float32), (BLOCK_H // FP8_BLOCK, FP8_BLOCK))
    amax = tl.max(tl.where(blocks == blocks, tl.abs(blocks), float("inf")), axis=1)
    scale = tl.maximum(amax, 1e-4) * (1.0 / 448.0)
    y = tl.div_rn(blocks, tl.broadcast_to(scale[:, None], (BLOCK_H // FP8_BLOCK, FP8_BLOCK)))
    y = tl.where(y > 448.0, 448.0, tl.where(y < -448.0, -448.0, y))  # NaN stays NaN
    return tl.reshape(e4m3_code(y), (BLOCK_H,)), scale


@triton.jit
def _store_record(
    OUT_X,
    OUT_S,
    OUT_F32,
    OUT_I32,
    OUT_U8,
    row,
    ok,
    head,
    chunk,
    H,
    xv,
    sv,
    wv,
    iv,
    ROW_BYTES: tl.constexpr,
    X_OFF: tl.constexpr,
    S_OFF: tl.constexpr,
    W_OFF: tl.constexpr,
    I_OFF: tl.constexpr,
    GAPS: tl.constexpr,
    WIRE: tl.constexpr,
    TOPK: tl.constexpr,
    K_PAD: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """Row `row` (int64) of the send buffer gets this program's piece of a record
    where `ok`; `head` (chunk 0) also writes the weights, the ids and the padding
    bytes between fields (zeros). Offsets in bytes from the row start."""
    row_u8 = row * ROW_BYTES
    row_32 = row * (ROW_BYTES // 4)
    if WIRE == 0:
        offs = chunk * BLOCK_H + tl.arange(0, BLOCK_H)
        x_elem: tl.constexpr = ROW_BYTES // (OUT_X.dtype.element_ty.primitive_bitwidth // 8)
        x_off: tl.constexpr = X_OFF // (OUT_X.dtype.element_ty.primitive_bitwidth // 8)
        tl.store(OUT_X + row * x_elem + x_off + offs, xv, mask=ok & (offs < H))
    elif WIRE == 1:
        offs = chunk * BLOCK_H + tl.arange(0, BLOCK_H)
        tl.store(OUT_U8 + row_u8 + X_OFF + offs, xv, mask=ok & (offs < H))
        nb = chunk * (BLOCK_H // FP8_BLOCK) + tl.arange(0, BLOCK_H // FP8_BLOCK)
        tl.store(OUT_S + row_32 + S_OFF // 4 + nb, sv, mask=ok & (nb < H // FP8_BLOCK))
    else:
        offs = chunk * (BLOCK_H // 2) + tl.arange(0, BLOCK_H // 2)
        tl.store(OUT_U8 + row_u8 + X_OFF + offs, xv, mask=ok & (offs < H // 2))
        nb = chunk * (BLOCK_H // MXFP4_BLOCK) + tl.arange(0, BLOCK_H // MXFP4_BLOCK)
        tl.store(OUT_S + row_u8 + S_OFF + nb, sv, mask=ok & (nb < H // MXFP4_BLOCK))
    kk = tl.arange(0, K_PAD)
    tl.store(OUT_F32 + row_32 + W_OFF // 4 + kk, wv, mask=ok & head & (kk < TOPK))
    tl.store(OUT_I32 + row_32 + I_OFF // 4 + kk, iv, mask=ok & head & (kk < TOPK))
    gap = tl.arange(0, 16)
    for j in tl.static_range(len(GAPS)):
        tl.store(
            OUT_U8 + row_u8 + GAPS[j][0] + gap,
            tl.zeros([16], dtype=tl.uint8),
            mask=ok & head & (gap < GAPS[j][1]),
        )


@triton.jit
def _ep_pack_kernel(
    X,
    WEIGHTS,
    IDS,
    SLOT,
    COUNTS,
    OUT_X,
    OUT_S,
    OUT_F32,
    OUT_I32,
    OUT_U8,
    T,
    H,
    stride_x,
    stride_w,
    stride_ids,
    capacity,
    ROW_BYTES: tl.constexpr,
    X_OFF: tl.constexpr,
    S_OFF: tl.constexpr,
    W_OFF: tl.constexpr,
    I_OFF: tl.constexpr,
    GAPS: tl.constexpr,
    WIRE: tl.constexpr,
    TOPK: tl.constexpr,
    K_PAD: tl.constexpr,
    WORLD: tl.constexpr,
    LOW_LATENCY: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """X [T, H] float32/bfloat16/float16; WEIGHTS [T, TOPK] float; IDS [T, TOPK] int;
    SLOT [T, WORLD] int32 and COUNTS [WORLD] int64 (the plan kernel's). OUT_*: one
    uint8 send buffer [rows, ROW_BYTES] viewed as X's dtype (WIRE 0), the scales'
    dtype, float32, int32 and uint8. WIRE: 0 as given, 1 fp8, 2 mxfp4. GAPS:
    ((byte offset, length < 16), ...) of the padding between and after fields.
    Grid (T, cdiv(H, BLOCK_H)) in high throughput, (capacity, ...) in low latency."""
    i = tl.program_id(0)
    chunk = tl.program_id(1)
    token = i < T
    head = chunk == 0
    i64 = i.to(tl.int64)
    offs = chunk * BLOCK_H + tl.arange(0, BLOCK_H)
    x = tl.load(X + i64 * stride_x + offs, mask=token & (offs < H), other=0.0)
    if WIRE == 0:
        xv = x
        sv = tl.zeros([1], dtype=tl.float32)
    elif WIRE == 1:
        xv, sv = _fp8_blocks(x, BLOCK_H)
    else:
        xq, sq = quantize_tile(tl.reshape(x, (1, BLOCK_H)), 1, BLOCK_H, 0)
        xv = tl.reshape(xq, (BLOCK_H // 2,))
        sv = tl.reshape(sq, (BLOCK_H // MXFP4_BLOCK,))
    kk = tl.arange(0, K_PAD)
    wv = tl.load(WEIGHTS + i64 * stride_w + kk, mask=token & head & (kk < TOPK), other=0.0)
    wv = wv.to(tl.float32)
    iv = tl.load(IDS + i64 * stride_ids + kk, mask=token & head & (kk < TOPK), other=0)
    iv = iv.to(tl.int32)
    first = tl.zeros([], dtype=tl.int64)
    for r in range(WORLD):
        slot = tl.load(SLOT + i64 * WORLD + r, mask=token, other=-1).to(tl.int64)
        count = tl.load(COUNTS + r)
        if LOW_LATENCY:
            first = (r * capacity).to(tl.int64)
        _store_record(
            OUT_X, OUT_S, OUT_F32, OUT_I32, OUT_U8, first + slot, slot >= 0, head, chunk, H,
            xv, sv, wv, iv, ROW_BYTES, X_OFF, S_OFF, W_OFF, I_OFF, GAPS, WIRE, TOPK, K_PAD,
            BLOCK_H,
        )  # fmt: skip
        if LOW_LATENCY:
            # Row i of rank r's block is padding when rank r got fewer than i + 1 rows.
            _store_record(
                OUT_X, OUT_S, OUT_F32, OUT_I32, OUT_U8, first + i64, i64 >= count, head, chunk,
                H, tl.zeros_like(xv), tl.zeros_like(sv), tl.zeros_like(wv), tl.zeros_like(iv),
                ROW_BYTES, X_OFF, S_OFF, W_OFF, I_OFF, GAPS, WIRE, TOPK, K_PAD, BLOCK_H,
            )  # fmt: skip
        else:
            first += count
