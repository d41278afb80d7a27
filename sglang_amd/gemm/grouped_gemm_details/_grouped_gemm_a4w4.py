"""Triton grouped GEMM over expert-aligned blocks with MXFP4 on both sides (A4W4).

Same program layout as `_grouped_gemm.py` (block m of the aligned slot list x
output columns n; activation row = slot // A_ROW_DIV), but both operands stay
packed: two e2m1 codes per byte along K (even index in the low nibble) and one
E8M0 scale per 32 K-elements, handed to `tl.dot_scaled`. Where the device has
FP4 matrix cores (MI350, B200) Triton issues them directly; elsewhere it
upcasts in registers, still reading a quarter of the bytes of bf16 operands.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _grouped_gemm_a4w4_kernel(
    A,
    A_SCALE,
    W,
    W_SCALE,
    C,
    SLOTS,
    BLOCK_EXPERT,
    TOPK_WEIGHTS,
    num_slots,
    N,
    K,
    stride_am,
    stride_asm,
    stride_we,
    stride_wn,
    stride_se,
    stride_sn,
    stride_cm,
    A_ROW_DIV: tl.constexpr,
    MUL_WEIGHT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(BLOCK_EXPERT + pid_m).to(tl.int64)
    if expert < 0:  # a block past this routing's (layout sized for the worst case)
        return
    slots = tl.load(SLOTS + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    valid = slots < num_slots
    rows = (slots // A_ROW_DIV).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_b = tl.arange(0, BLOCK_K // 2)  # bytes along K
    offs_s = tl.arange(0, BLOCK_K // 32)  # scales along K
    w_base = W + expert * stride_we + offs_n[None, :] * stride_wn
    ws_base = W_SCALE + expert * stride_se + offs_n[:, None] * stride_sn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kb = k0 // 2 + offs_b
        b_mask = kb < K // 2
        ks = k0 // 32 + offs_s
        s_mask = ks < K // 32
        # Masked codes read as +0 and masked scales as 2^0: they add nothing.
        a = tl.load(
            A + rows[:, None] * stride_am + kb[None, :],
            mask=valid[:, None] & b_mask[None, :],
            other=0,
        )
        a_scale = tl.load(
            A_SCALE + rows[:, None] * stride_asm + ks[None, :],
            mask=valid[:, None] & s_mask[None, :],
            other=127,
        )
        w = tl.load(w_base + kb[:, None], mask=b_mask[:, None] & n_mask[None, :], other=0)
        w_scale = tl.load(ws_base + ks[None, :], mask=n_mask[:, None] & s_mask[None, :], other=127)
        acc = tl.dot_scaled(a, a_scale, "e2m1", w, w_scale, "e2m1", acc)
    if MUL_WEIGHT:
        acc *= tl.load(TOPK_WEIGHTS + slots, mask=valid, other=0.0)[:, None]
    c_ptr = C + slots.to(tl.int64)[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptr, acc.to(C.dtype.element_ty), mask=valid[:, None] & n_mask[None, :])
