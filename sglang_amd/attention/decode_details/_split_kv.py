"""Triton kernels for split-KV (flash-decoding) paged attention decode.

Stage 1 (`_decode_split_kernel`): one program per (sequence, KV head, head
block, split); a sequence uses only ceil(kv_len / min_split_len) of the grid's
splits (the rest write an empty partial), so the grid can be sized on the host
from an upper bound of the lengths (the capacity, under CUDA graphs) without
cutting short sequences into slivers. It loads the query heads that share the KV head (GQA packing, so
each K/V tile is read once for the whole group), walks its slice of the
sequence's tokens through `req_to_token`, and keeps an online softmax. It writes
a partial output and its log-sum-exp. Stage 2 (`_decode_reduce_kernel`) merges
the splits of each (sequence, query head); a per-head sink logit (gpt-oss), when
given, joins the merged softmax's denominator there, once per row, as a key
whose value is zero.

SPARSE (DSA's top-k attention, `attention/sparse.py`): row b is one query token
and walks the `sparse_width` entries of its row of TOPK, token positions in its
request (-1: no token), instead of positions 0..kv_len-1; the splits divide the
entries. The positions go through `req_to_token` to pool slots as usual.

The QK dimension is split in a power-of-two main part and an optional extra part
(MLA: 512 latent + 64 rope); V may alias K (MLA absorbed form), and then
(V_FROM_K) the K tile's latent columns serve as V instead of being loaded
again: the latent is read once, not twice. Scores are kept
in base 2 (the softmax scale is pre-multiplied by log2(e)).
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.triton_utils import mma, scale_scores


@triton.jit
def _decode_split_kernel(
    Q,
    K,
    V,
    REQ_TO_TOKEN,
    REQ_POOL_IDX,
    KV_LENS,
    TOPK,
    MID_O,
    MID_LSE,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_r2t,
    stride_topk,
    stride_mo_b,
    stride_mo_h,
    stride_mo_s,
    stride_ml_b,
    stride_ml_h,
    scale_log2,
    logit_cap,
    window,
    num_splits,
    min_split_len,
    sparse_width,
    GROUP: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D_MAIN: tl.constexpr,
    D_EXTRA: tl.constexpr,
    D_V: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    HAS_CAP: tl.constexpr,
    V_FROM_K: tl.constexpr,
    SPARSE: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    b = tl.program_id(0)
    pid_h = tl.program_id(1)
    split = tl.program_id(2)
    head_blocks: tl.constexpr = (GROUP + BLOCK_H - 1) // BLOCK_H
    kv_head = pid_h // head_blocks
    hb = pid_h % head_blocks

    if SPARSE:  # the splits walk this query's top-k entries, not its context
        kv_len = sparse_width
    else:
        kv_len = tl.load(KV_LENS + b)
    row = tl.load(REQ_POOL_IDX + b).to(tl.int64)
    # Splits actually used by this sequence: short ones stay whole even when the
    # grid was sized for a long one (or, under CUDA graphs, for the capacity).
    used = tl.minimum(num_splits, tl.maximum(tl.cdiv(kv_len, min_split_len), 1))
    split_len = tl.cdiv(tl.cdiv(kv_len, used), BLOCK_N) * BLOCK_N
    start = split * split_len
    end = tl.minimum(start + split_len, kv_len)
    if HAS_WINDOW:
        start = tl.maximum(start, kv_len - 1 - window)

    offs_h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = offs_h < GROUP
    heads = kv_head * GROUP + offs_h
    offs_d = tl.arange(0, D_MAIN)
    offs_dv = tl.arange(0, D_V)
    q_ptrs = Q + b * stride_qt + heads[:, None] * stride_qh + offs_d[None, :]
    q = tl.load(q_ptrs, mask=h_mask[:, None], other=0.0)
    if D_EXTRA > 0:
        offs_de = D_MAIN + tl.arange(0, D_EXTRA)
        qe_ptrs = Q + b * stride_qt + heads[:, None] * stride_qh + offs_de[None, :]
        qe = tl.load(qe_ptrs, mask=h_mask[:, None], other=0.0)

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, D_V], dtype=tl.float32)

    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        if SPARSE:  # entry -> token position (-1: none) -> pool slot
            pos = tl.load(TOPK + b * stride_topk + offs_n, mask=n_mask, other=-1)
            n_mask = n_mask & (pos >= 0)
            r2t_ptrs = REQ_TO_TOKEN + row * stride_r2t + pos
        else:
            r2t_ptrs = REQ_TO_TOKEN + row * stride_r2t + offs_n
        slots = tl.load(r2t_ptrs, mask=n_mask, other=0).to(tl.int64)
        if V_FROM_K:  # one [BLOCK_N, D_MAIN] tile of the latent serves as K and as V
            kv_ptrs = K + slots[:, None] * stride_kt + kv_head * stride_kh + offs_d[None, :]
            kv = tl.load(kv_ptrs, mask=n_mask[:, None], other=0.0)
            k = tl.trans(kv)
        else:
            k_ptrs = K + slots[None, :] * stride_kt + kv_head * stride_kh + offs_d[:, None]
            k = tl.load(k_ptrs, mask=n_mask[None, :], other=0.0)
        s = mma(q, k.to(q.dtype), PRECISION, UPCAST)
        if D_EXTRA > 0:
            ke_ptrs = K + slots[None, :] * stride_kt + kv_head * stride_kh + offs_de[:, None]
            ke = tl.load(ke_ptrs, mask=n_mask[None, :], other=0.0)
            s += mma(qe, ke.to(qe.dtype), PRECISION, UPCAST)
        s = scale_scores(s, scale_log2, logit_cap, HAS_CAP)
        s = tl.where(n_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_ref = m_new
        if SPARSE:  # a tile of -1 entries and no key yet: keep exp2 off -inf - -inf
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_ref)
        p = tl.exp2(s - m_ref[:, None])
        if V_FROM_K:
            v = kv
        else:
            v_ptrs = V + slots[:, None] * stride_vt + kv_head * stride_vh + offs_dv[None, :]
            v = tl.load(v_ptrs, mask=n_mask[:, None], other=0.0)
        acc = acc * alpha[:, None] + mma(p.to(v.dtype), v, PRECISION, UPCAST)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new

    has_keys = l_i > 0.0
    out = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    lse = tl.where(has_keys, m_i + tl.log2(tl.where(has_keys, l_i, 1.0)), float("-inf"))
    o_ptrs = MID_O + b * stride_mo_b + heads[:, None] * stride_mo_h + split * stride_mo_s
    tl.store(o_ptrs + offs_dv[None, :], out, mask=h_mask[:, None])
    tl.store(MID_LSE + b * stride_ml_b + heads * stride_ml_h + split, lse, mask=h_mask)


@triton.jit
def _decode_reduce_kernel(
    MID_O,
    MID_LSE,
    SINKS,
    OUT,
    stride_mo_b,
    stride_mo_h,
    stride_mo_s,
    stride_ml_b,
    stride_ml_h,
    stride_ot,
    stride_oh,
    num_splits,
    D_V: tl.constexpr,
    BLOCK_S: tl.constexpr,
    HAS_SINK: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    s_mask = offs_s < num_splits
    lse = tl.load(
        MID_LSE + b * stride_ml_b + h * stride_ml_h + offs_s, mask=s_mask, other=float("-inf")
    )
    m = tl.max(lse, 0)
    if HAS_SINK:  # base 2, like the partials' log-sum-exp
        sink = tl.load(SINKS + h).to(tl.float32) * 1.4426950408889634
        m = tl.maximum(m, sink)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse - m_safe)
    offs_d = tl.arange(0, D_V)
    o = tl.load(
        MID_O + b * stride_mo_b + h * stride_mo_h + offs_s[:, None] * stride_mo_s + offs_d[None, :],
        mask=s_mask[:, None],
        other=0.0,
    )
    total = tl.sum(w, 0)
    if HAS_SINK:
        total += tl.exp2(sink - m_safe)
    out = tl.sum(o * w[:, None], 0) / tl.where(total > 0.0, total, 1.0)
    tl.store(OUT + b * stride_ot + h * stride_oh + offs_d, out.to(OUT.dtype.element_ty))
