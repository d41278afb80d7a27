"""Triton kernel that sums each token's k expert outputs (moe/combine.py).

Where it sits: last launch of `moe/fused.py`, after the second grouped GEMM
wrote y[slot] = w_route * act @ W2^T in the activation dtype. One program per
(token, BLOCK_H columns) adds the k rows in slot order in float32: no atomics,
so the sum is the same on every run. Slots whose id is outside [0, E) were
never written (routed to another rank): they are masked, never read.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _combine_kernel(
    Y,
    IDS,
    OUT,
    num_experts,
    H,
    stride_y,
    stride_o,
    TOPK: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    """Y [T * TOPK, H] float (row t * TOPK + j: token t's j-th choice); IDS [T * TOPK]
    any int; OUT [T, H] float, written in full. Grid (T, cdiv(H, BLOCK_H))."""
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = offs < H
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for j in tl.static_range(TOPK):
        slot = t * TOPK + j
        e = tl.load(IDS + slot)
        routed = (e >= 0) & (e < num_experts)
        y = tl.load(Y + slot * stride_y + offs, mask=h_mask & routed, other=0.0)
        acc += y.to(tl.float32)
    tl.store(OUT + t * stride_o + offs, acc.to(OUT.dtype.element_ty), mask=h_mask)
