"""Triton grouped GEMM over expert-aligned blocks, float or MXFP4 weights (W4A16).

Program (m, n): block m of the aligned slot list (all its rows belong to one
expert, see moe/align.py) times output columns [n * BLOCK_N, ...). Row r of the
block is slot s; its activation row is s // A_ROW_DIV (the token for the first
GEMM, the slot itself for the second). Output row = slot, optionally times its
router weight.

GATED (the MoE's first GEMM): W holds 2N rows, gate rows [0, N) then up rows
[N, 2N), or with INTERLEAVED gate row 2n and up row 2n + 1 (gpt-oss); the
program keeps one accumulator for gate columns n and one for the matching up
columns and writes act = GLU(gate, up) (`_activation.py`: SiLU(gate) * up, or
gpt-oss's clamped SwiGLU with `alpha`, `limit`), so no [slots, 2N] intermediate
is ever stored. HAS_BIAS: BIAS [G, rows of W] float is added to each
accumulator before the activation (GATED) or before the router weight.

MXFP4 weights with bf16/fp16 activations go to `tl.dot_scaled` (codes and one
E8M0 scale per 32 straight to the MMA, or its upcast). Float32 activations
(the CPU path) decode in the loop: the even and odd K elements come from the
low and high nibbles, so A is read as two strided halves, and the scale tile
[BLOCK_K // 32, BLOCK_N] is loaded once and broadcast over its 32 elements.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.numerics_details.mxfp4 import e2m1_value
from sglang_amd.triton_utils import mma


@triton.jit
def _decoded_dot(
    acc,
    a_even,
    a_odd,
    w_ptrs,
    s_ptrs,
    wm,
    sm,
    BLOCK_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """acc + [a_even | a_odd] @ decode(codes [BLOCK_K // 2, BLOCK_N], scales [BLOCK_K // 32, BLOCK_N])."""
    byte = tl.load(w_ptrs, mask=wm, other=0)
    sc = tl.load(s_ptrs, mask=sm, other=127)
    # 0xFF is E8M0's NaN, not 2^128: the block decodes to NaN as in the oracle.
    scale = tl.where(sc == 255, float("nan"), tl.exp2(sc.to(tl.float32) - 127.0))
    # Byte row r holds K elements 2r, 2r + 1: 16 byte rows share one scale row.
    scale = tl.reshape(
        tl.broadcast_to(scale[:, None, :], (BLOCK_K // 32, 16, BLOCK_N)), (BLOCK_K // 2, BLOCK_N)
    )
    a_ty = a_even.dtype
    acc += mma(a_even, (e2m1_value(byte & 0xF) * scale).to(a_ty), PRECISION, UPCAST)
    acc += mma(a_odd, (e2m1_value(byte >> 4) * scale).to(a_ty), PRECISION, UPCAST)
    return acc


@triton.jit
def _scaled_dot(acc, nan_cols, a, w_ptrs, s_ptrs, wm, sm, A_FORMAT: tl.constexpr):
    """acc + a [BLOCK_M, BLOCK_K] @ e2m1 codes [BLOCK_K // 2, BLOCK_N] with scales
    [BLOCK_N, BLOCK_K // 32]; nan_cols marks columns that met an E8M0 NaN scale."""
    w = tl.load(w_ptrs, mask=wm, other=0)
    sc = tl.load(s_ptrs, mask=sm, other=127)
    # Backends decode 0xFF as 2^128 or NaN: the oracle's NaN is applied explicitly.
    nan_cols |= tl.max((sc == 255).to(tl.int32), axis=1) != 0
    return tl.dot_scaled(a, None, A_FORMAT, w, sc, "e2m1", acc), nan_cols


@triton.jit
def _grouped_gemm_kernel(
    A,
    W,
    W_SCALE,
    C,
    SLOTS,
    BLOCK_EXPERT,
    TOPK_WEIGHTS,
    BIAS,
    num_slots,
    N,
    K,
    stride_am,
    stride_we,
    stride_wn,
    stride_se,
    stride_sn,
    stride_cm,
    stride_be,
    alpha,
    limit,
    A_ROW_DIV: tl.constexpr,
    MUL_WEIGHT: tl.constexpr,
    W_MXFP4: tl.constexpr,
    GATED: tl.constexpr,
    GLU: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    A_FORMAT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """A [rows, K] f16/bf16/f32; W [G, (2 if GATED else 1) * N, K] float, or with
    W_MXFP4 [G, ., K // 2] uint8 codes + W_SCALE [G, ., K // 32] uint8;
    C [num_slots, N] (any float dtype); SLOTS [num_blocks * BLOCK_M] int32;
    BLOCK_EXPERT [num_blocks] int32; TOPK_WEIGHTS [num_slots] float (MUL_WEIGHT);
    BIAS [G, rows of W] float (HAS_BIAS). GLU (GATED): a `_activation.py` function
    of (gate, up, alpha, limit). A_FORMAT "bf16"/"fp16": MXFP4 through
    tl.dot_scaled; "": decoded in the loop. Grid (num_blocks, cdiv(N, BLOCK_N))."""
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
    # W's row of output column n, and (GATED) how many rows further its up row is.
    if INTERLEAVED:
        w_rows = 2 * offs_n
        up_rows = 1
    else:
        w_rows = offs_n
        up_rows = N
    up = up_rows * stride_wn
    up_s = up_rows * stride_sn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    nan_cols = tl.zeros([BLOCK_N], dtype=tl.int1)
    w_base = W + expert * stride_we
    s_base = W_SCALE + expert * stride_se
    if W_MXFP4 and A_FORMAT != "":
        offs_k0 = tl.arange(0, BLOCK_K)
        offs_b = tl.arange(0, BLOCK_K // 2)
        offs_s = tl.arange(0, BLOCK_K // 32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + offs_k0
            a = tl.load(
                A + rows[:, None] * stride_am + offs_k[None, :],
                mask=valid[:, None] & (offs_k < K)[None, :],
                other=0.0,
            )
            kb = k0 // 2 + offs_b
            ks = k0 // 32 + offs_s
            wm = (kb < K // 2)[:, None] & n_mask[None, :]
            sm = n_mask[:, None] & (ks < K // 32)[None, :]
            w_ptrs = w_base + w_rows[None, :] * stride_wn + kb[:, None]
            s_ptrs = s_base + w_rows[:, None] * stride_sn + ks[None, :]
            acc, nan_cols = _scaled_dot(acc, nan_cols, a, w_ptrs, s_ptrs, wm, sm, A_FORMAT)
            if GATED:
                acc_up, nan_cols = _scaled_dot(
                    acc_up, nan_cols, a, w_ptrs + up, s_ptrs + up_s, wm, sm, A_FORMAT
                )
        acc = tl.where(nan_cols[None, :], float("nan"), acc)
    elif W_MXFP4:
        half = tl.arange(0, BLOCK_K // 2)
        offs_s = tl.arange(0, BLOCK_K // 32)
        for k0 in range(0, K, BLOCK_K):
            k_even = k0 + 2 * half
            k_mask = k_even < K
            a_ptr = A + rows[:, None] * stride_am + k_even[None, :]
            am = valid[:, None] & k_mask[None, :]
            a_even = tl.load(a_ptr, mask=am, other=0.0)
            a_odd = tl.load(a_ptr + 1, mask=am, other=0.0)
            ks = k0 // 32 + offs_s
            wm = k_mask[:, None] & n_mask[None, :]
            sm = (ks < K // 32)[:, None] & n_mask[None, :]
            w_ptrs = w_base + w_rows[None, :] * stride_wn + (k_even // 2)[:, None]
            s_ptrs = s_base + w_rows[None, :] * stride_sn + ks[:, None]
            acc = _decoded_dot(
                acc, a_even, a_odd, w_ptrs, s_ptrs, wm, sm, BLOCK_K, BLOCK_N, PRECISION, UPCAST
            )
            if GATED:
                acc_up = _decoded_dot(
                    acc_up,
                    a_even,
                    a_odd,
                    w_ptrs + up,
                    s_ptrs + up_s,
                    wm,
                    sm,
                    BLOCK_K,
                    BLOCK_N,
                    PRECISION,
                    UPCAST,
                )
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
            w_ptrs = w_base + w_rows[None, :] * stride_wn + offs_k[:, None]
            wm = k_mask[:, None] & n_mask[None, :]
            acc += mma(a, tl.load(w_ptrs, mask=wm, other=0.0).to(a.dtype), PRECISION, UPCAST)
            if GATED:
                w_up = tl.load(w_ptrs + up, mask=wm, other=0.0).to(a.dtype)
                acc_up += mma(a, w_up, PRECISION, UPCAST)
    if HAS_BIAS:
        b_ptrs = BIAS + expert * stride_be + w_rows
        acc += tl.load(b_ptrs, mask=n_mask, other=0.0).to(tl.float32)[None, :]
        if GATED:
            acc_up += tl.load(b_ptrs + up_rows, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if GATED:
        acc = GLU(acc, acc_up, alpha, limit)  # in float32
    if MUL_WEIGHT:
        acc *= tl.load(TOPK_WEIGHTS + slots, mask=valid, other=0.0).to(tl.float32)[:, None]
    c_ptr = C + slots.to(tl.int64)[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptr, acc.to(C.dtype.element_ty), mask=valid[:, None] & n_mask[None, :])
