"""Triton grouped GEMM over expert-aligned blocks with MXFP4 on both sides (A4W4).

Same program layout as `_grouped_gemm.py` (block m of the aligned slot list x
output columns n; activation row = slot // A_ROW_DIV), but both operands stay
packed: two e2m1 codes per byte along K (even index in the low nibble) and one
E8M0 scale per 32 K-elements, handed to `tl.dot_scaled`. Where the device has
FP4 matrix cores (MI350, B200) Triton issues them directly; elsewhere it
upcasts in registers, still reading a quarter of the bytes of bf16 operands.

GATED (the MoE's first GEMM), as in `_grouped_gemm.py`: gate rows [0, N) and up
rows [N, 2N) of W go to two accumulators and the program writes
SiLU(gate) * up (C is float32 there: the caller quantizes it for the second GEMM).
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
    GATED: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """A [rows, K // 2] uint8 codes + A_SCALE [rows, K // 32] uint8; W [G, (2 if
    GATED else 1) * N, K // 2] uint8 + W_SCALE [G, ., K // 32] uint8; C [num_slots, N]
    float; SLOTS [num_blocks * BLOCK_M] int32; BLOCK_EXPERT [num_blocks] int32;
    TOPK_WEIGHTS [num_slots] float (MUL_WEIGHT). Grid (num_blocks, cdiv(N, BLOCK_N))."""
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
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    up = N * stride_wn  # up rows follow the N gate rows (GATED)
    up_s = N * stride_sn
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
        wm = b_mask[:, None] & n_mask[None, :]
        sm = n_mask[:, None] & s_mask[None, :]
        w = tl.load(w_base + kb[:, None], mask=wm, other=0)
        w_scale = tl.load(ws_base + ks[None, :], mask=sm, other=127)
        acc = tl.dot_scaled(a, a_scale, "e2m1", w, w_scale, "e2m1", acc)
        if GATED:
            w = tl.load(w_base + up + kb[:, None], mask=wm, other=0)
            w_scale = tl.load(ws_base + up_s + ks[None, :], mask=sm, other=127)
            acc_up = tl.dot_scaled(a, a_scale, "e2m1", w, w_scale, "e2m1", acc_up)
    if GATED:
        acc = acc * tl.sigmoid(acc) * acc_up  # SiLU(gate) * up, in float32
    if MUL_WEIGHT:
        acc *= tl.load(TOPK_WEIGHTS + slots, mask=valid, other=0.0).to(tl.float32)[:, None]
    c_ptr = C + slots.to(tl.int64)[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptr, acc.to(C.dtype.element_ty), mask=valid[:, None] & n_mask[None, :])
