"""Triton kernel: each token's sum of the rows the ranks sent back (`ep/permute.py`).

Where it sits: the Triton tier of `ep_permute.combine`, after the combine
all-to-all. One program per (token, BLOCK_H columns) reads the row each rank
returned for the token (the plan's slot; -1: masked, never read) and adds them
in rank order, rounding to the token dtype after each add exactly as the torch
tier's `out += back[rows]` in that dtype does, so both tiers, both modes and
every device give the same bits. bfloat16 is rounded by hand (round to nearest
even on the bits): Triton 3.8's interpreter truncates a float32 -> bfloat16
cast, the GPU rounds it.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def round_to(v, ROUND: tl.constexpr):
    """float32 v rounded to the token dtype and back to float32. ROUND: 0 float32
    (as is), 1 bfloat16 (nearest even; NaN kept), 2 float16."""
    if ROUND == 1:
        bits = v.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
        return tl.where(v != v, v, bits.to(tl.float32, bitcast=True))
    elif ROUND == 2:
        return v.to(tl.float16).to(tl.float32)
    else:
        return v


@triton.jit
def _ep_combine_kernel(
    BACK,
    SLOT,
    COUNTS,
    OUT,
    H,
    stride_back,
    stride_out,
    capacity,
    WORLD: tl.constexpr,
    LOW_LATENCY: tl.constexpr,
    ROUND: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """BACK [R, H] float: rank r's rows start at r * capacity (LOW_LATENCY) or at
    the sum of COUNTS before r; SLOT [T, WORLD] int (-1: not sent); COUNTS [WORLD]
    int64; OUT [T, H] float (the token dtype), written in full (a token sent
    nowhere gets zeros). Grid (T, cdiv(H, BLOCK_H))."""
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = offs < H
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    first = tl.zeros([], dtype=tl.int64)
    for r in range(WORLD):
        slot = tl.load(SLOT + t * WORLD + r).to(tl.int64)
        if LOW_LATENCY:
            first = (r * capacity).to(tl.int64)
        row = first + slot
        v = tl.load(BACK + row * stride_back + offs, mask=h_mask & (slot >= 0), other=0.0)
        acc = round_to(acc + round_to(v.to(tl.float32), ROUND), ROUND)
        if not LOW_LATENCY:
            first += tl.load(COUNTS + r)
    tl.store(OUT + t * stride_out + offs, acc.to(OUT.dtype.element_ty), mask=h_mask)
