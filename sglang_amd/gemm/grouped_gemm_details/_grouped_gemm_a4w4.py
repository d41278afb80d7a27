"""Triton grouped GEMM over expert-aligned blocks with MXFP4 on both sides (A4W4).

Same program layout as `_grouped_gemm.py` (block m of the aligned slot list x
output columns n; activation row = slot // A_ROW_DIV), but both operands reach
`tl.dot_scaled` as MXFP4: two e2m1 codes per byte along K (even index in the
low nibble) and one E8M0 scale per 32 K-elements. Where the device has FP4
matrix cores (MI350, B200) Triton issues them directly; elsewhere it upcasts
in registers.

A comes packed (codes + scales), or with QUANTIZE_A as float rows that each
program quantizes in registers as it loads them (the MoE's x, the dense
linear's input): no quantizer launch and no packed copy in HBM, at the price of
reading the float row once per output-column block, as W4A16 does.

GATED (the MoE's first GEMM), as in `_grouped_gemm.py`: gate rows [0, N) and up
rows [N, 2N) of W (INTERLEAVED: rows 2n and 2n + 1) go to two accumulators, the
bias (HAS_BIAS) is added to each and the program computes GLU(gate, up) in
float32 (`_activation.py`). With C_MXFP4 it writes that as MXFP4 (C [slots,
N // 2] codes, C_SCALE [slots, N // 32]), the second GEMM's packed A; BLOCK_N
is then a multiple of 32 and N % 32 == 0, so no 32-block straddles two programs.
Both quantizations use the shared encoder (`numerics_details/mxfp4.py`) with
"even" scale rounding, bit-exact with `quant/mxfp4.quantize_mxfp4`.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.numerics_details.mxfp4 import quantize_tile


@triton.jit
def _grouped_gemm_a4w4_kernel(
    A,
    A_SCALE,
    W,
    W_SCALE,
    C,
    C_SCALE,
    SLOTS,
    BLOCK_EXPERT,
    TOPK_WEIGHTS,
    BIAS,
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
    stride_csm,
    stride_be,
    alpha,
    limit,
    A_ROW_DIV: tl.constexpr,
    MUL_WEIGHT: tl.constexpr,
    GATED: tl.constexpr,
    GLU: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    QUANTIZE_A: tl.constexpr,
    C_MXFP4: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """A [rows, K // 2] uint8 codes + A_SCALE [rows, K // 32] uint8, or with QUANTIZE_A
    A [rows, K] float (A_SCALE, stride_asm unused); W [G, (2 if GATED else 1) * N,
    K // 2] uint8 + W_SCALE [G, ., K // 32] uint8; C [num_slots, N] float, or with
    C_MXFP4 C [num_slots, N // 2] uint8 + C_SCALE [num_slots, N // 32] uint8 (else
    unused); SLOTS [num_blocks * BLOCK_M] int32; BLOCK_EXPERT [num_blocks] int32;
    TOPK_WEIGHTS [num_slots] float (MUL_WEIGHT); BIAS [G, rows of W] float (HAS_BIAS).
    Grid (num_blocks, cdiv(N, BLOCK_N))."""
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
    offs_b = tl.arange(0, BLOCK_K // 2)  # bytes along K
    offs_s = tl.arange(0, BLOCK_K // 32)  # scales along K
    offs_k = tl.arange(0, BLOCK_K)  # elements along K (QUANTIZE_A)
    w_base = W + expert * stride_we + w_rows[None, :] * stride_wn
    ws_base = W_SCALE + expert * stride_se + w_rows[:, None] * stride_sn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    up = up_rows * stride_wn
    up_s = up_rows * stride_sn
    for k0 in range(0, K, BLOCK_K):
        kb = k0 // 2 + offs_b
        b_mask = kb < K // 2
        ks = k0 // 32 + offs_s
        s_mask = ks < K // 32
        # Masked codes read as +0 and masked scales as 2^0: they add nothing.
        if QUANTIZE_A:
            # Masked elements read as 0: whole zero blocks (K % 32 == 0), which
            # encode as zero codes and add nothing whatever their scale.
            kk = k0 + offs_k
            a_float = tl.load(
                A + rows[:, None] * stride_am + kk[None, :],
                mask=valid[:, None] & (kk < K)[None, :],
                other=0.0,
            )
            a, a_scale = quantize_tile(a_float, BLOCK_M, BLOCK_K, 0)
        else:
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
    if HAS_BIAS:
        b_ptrs = BIAS + expert * stride_be + w_rows
        acc += tl.load(b_ptrs, mask=n_mask, other=0.0).to(tl.float32)[None, :]
        if GATED:
            acc_up += tl.load(b_ptrs + up_rows, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if GATED:
        acc = GLU(acc, acc_up, alpha, limit)  # in float32
    if MUL_WEIGHT:
        acc *= tl.load(TOPK_WEIGHTS + slots, mask=valid, other=0.0).to(tl.float32)[:, None]
    out_rows = slots.to(tl.int64)[:, None]
    if C_MXFP4:
        codes, scales = quantize_tile(acc, BLOCK_M, BLOCK_N, 0)
        cb = pid_n * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
        tl.store(
            C + out_rows * stride_cm + cb[None, :],
            codes,
            mask=valid[:, None] & (cb < N // 2)[None, :],
        )
        cs = pid_n * (BLOCK_N // 32) + tl.arange(0, BLOCK_N // 32)
        tl.store(
            C_SCALE + out_rows * stride_csm + cs[None, :],
            scales,
            mask=valid[:, None] & (cs < N // 32)[None, :],
        )
    else:
        c_ptr = C + out_rows * stride_cm + offs_n[None, :]
        tl.store(c_ptr, acc.to(C.dtype.element_ty), mask=valid[:, None] & n_mask[None, :])
