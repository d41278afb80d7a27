"""Triton grouped GEMM over expert-aligned blocks, bf16 or MXFP4 weights (W4A16).

Program (m, n): block m of the aligned slot list (all its rows belong to one
expert, see moe/align.py) times output columns [n * BLOCK_N, ...). Row r of the
block is slot s; its activation row is s // A_ROW_DIV (the token for the first
GEMM, the slot itself for the second). MXFP4 weights are decoded in the inner
loop: the even and odd K elements come from the low and high nibbles, so A is
read as two strided halves and no interleave is needed; each element takes the
E8M0 scale of its 32-wide block. Output row = slot, optionally times its router weight.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.triton_utils import mma


@triton.jit
def _fp4_value(code):
    exp = ((code >> 1) & 3).to(tl.float32)
    man = (code & 1).to(tl.float32)
    mag = tl.where(exp == 0.0, man * 0.5, tl.exp2(exp - 1.0) * (1.0 + 0.5 * man))
    return tl.where((code & 8) != 0, -mag, mag)


@triton.jit
def _grouped_gemm_kernel(
    A,
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
    stride_we,
    stride_wn,
    stride_se,
    stride_sn,
    stride_cm,
    A_ROW_DIV: tl.constexpr,
    MUL_WEIGHT: tl.constexpr,
    W_MXFP4: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
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
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    a_ty = A.dtype.element_ty
    if W_MXFP4:
        half = tl.arange(0, BLOCK_K // 2)
        for k0 in range(0, K, BLOCK_K):
            k_even = k0 + 2 * half
            k_mask = k_even < K
            a_ptr = A + rows[:, None] * stride_am + k_even[None, :]
            am = valid[:, None] & k_mask[None, :]
            a_even = tl.load(a_ptr, mask=am, other=0.0)
            a_odd = tl.load(a_ptr + 1, mask=am, other=0.0)
            wm = k_mask[:, None] & n_mask[None, :]
            byte = tl.load(
                W + expert * stride_we + offs_n[None, :] * stride_wn + (k_even // 2)[:, None],
                mask=wm,
                other=0,
            )
            sc = tl.load(
                W_SCALE
                + expert * stride_se
                + offs_n[None, :] * stride_sn
                + (k_even // 32)[:, None],
                mask=wm,
                other=127,
            )
            # 0xFF is E8M0's NaN, not 2^128: the block decodes to NaN as in the oracle.
            scale = tl.where(sc == 255, float("nan"), tl.exp2(sc.to(tl.float32) - 127.0))
            w_even = (_fp4_value(byte & 0xF) * scale).to(a_ty)
            w_odd = (_fp4_value(byte >> 4) * scale).to(a_ty)
            acc += mma(a_even, w_even, PRECISION, UPCAST)
            acc += mma(a_odd, w_odd, PRECISION, UPCAST)
    else:
        offs_k0 = tl.arange(0, BLOCK_K)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + offs_k0
            k_mask = offs_k < K
            a = tl.load(
                A + rows[:, None] * stride_am + offs_k[None, :],
                mask=valid[:, None] & k_mask[None, :],
                other=0.0,
            )
            w = tl.load(
                W + expert * stride_we + offs_n[None, :] * stride_wn + offs_k[:, None],
                mask=k_mask[:, None] & n_mask[None, :],
                other=0.0,
            )
            acc += mma(a, w.to(a_ty), PRECISION, UPCAST)
    if MUL_WEIGHT:
        acc *= tl.load(TOPK_WEIGHTS + slots, mask=valid, other=0.0)[:, None]
    c_ptr = C + slots.to(tl.int64)[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptr, acc.to(C.dtype.element_ty), mask=valid[:, None] & n_mask[None, :])
