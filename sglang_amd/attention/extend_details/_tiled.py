"""Triton kernel for tiled extend (prefill) attention over a paged KV pool.

One program per (block of one sequence's query tokens, group of HEADS query
heads sharing one KV head). GQA is packed: the program's BLOCK_M rows are
BLOCK_M // HEADS tokens x HEADS heads, so each K/V tile it loads serves all of
them instead of being re-read by every head of the group. The new tokens' K/V
are already in the pool (the backend writes them first), so prefix and new
tokens are read the same way, through `req_to_token`; a query at absolute
position p reads keys j <= p (causal), p - j <= window (sliding window) and,
for speculative verify, where the per-sequence tree mask allows. The mask comes
in SGLang's two layouts: MASK_MODE 1 is a row-major [qo_len, kv_len] block per
sequence (FULL_MASK), MASK_MODE 2 only the [qo_len, qo_len] block over the new
tokens, the prefix being visible to all of them (QLEN_ONLY: a few KB at any
context, and the layout our backend owns for graph-captured verify). Online
softmax in base 2; rows that see no key are written as zeros. A per-head sink
logit (gpt-oss), when given, joins each row's denominator at the end as a key
whose value is zero.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.triton_utils import mma, scale_scores


@triton.jit
def _extend_kernel(
    Q,
    K,
    V,
    OUT,
    REQ_TO_TOKEN,
    REQ_POOL_IDX,
    KV_LENS,
    QO_LENS,
    Q_STARTS,
    BLOCK_SEQ,
    BLOCK_M_START,
    MASK,
    MASK_STARTS,
    SINKS,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_ot,
    stride_oh,
    stride_r2t,
    scale_log2,
    logit_cap,
    window,
    GROUP: tl.constexpr,
    HEADS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    D_MAIN: tl.constexpr,
    D_EXTRA: tl.constexpr,
    D_V: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_WINDOW: tl.constexpr,
    HAS_CAP: tl.constexpr,
    MASK_MODE: tl.constexpr,
    HAS_SINK: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_h = tl.program_id(1)
    b = tl.load(BLOCK_SEQ + pid)
    m0 = tl.load(BLOCK_M_START + pid)
    kv_len = tl.load(KV_LENS + b)
    qo_len = tl.load(QO_LENS + b)
    q_start = tl.load(Q_STARTS + b).to(tl.int64)
    row = tl.load(REQ_POOL_IDX + b).to(tl.int64)
    prefix = kv_len - qo_len
    kv_head = pid_h // (GROUP // HEADS)
    TOKENS: tl.constexpr = BLOCK_M // HEADS

    # Row r is token m0 + r // HEADS of the block, query head h0 + r % HEADS.
    rows = tl.arange(0, BLOCK_M)
    offs_m = m0 + rows // HEADS
    heads = pid_h * HEADS + rows % HEADS
    m_mask = offs_m < qo_len
    pos = prefix + offs_m
    offs_d = tl.arange(0, D_MAIN)
    offs_dv = tl.arange(0, D_V)
    q_rows = (q_start + offs_m)[:, None] * stride_qt + heads[:, None] * stride_qh
    q = tl.load(Q + q_rows + offs_d[None, :], mask=m_mask[:, None], other=0.0)
    if D_EXTRA > 0:
        offs_de = D_MAIN + tl.arange(0, D_EXTRA)
        qe = tl.load(Q + q_rows + offs_de[None, :], mask=m_mask[:, None], other=0.0)

    hi = kv_len
    if CAUSAL:
        hi = tl.minimum(kv_len, prefix + m0 + TOKENS)
    lo = 0
    if HAS_WINDOW:
        lo = tl.maximum(0, prefix + m0 - window)
    if MASK_MODE != 0:
        mask_start = tl.load(MASK_STARTS + b).to(tl.int64)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, D_V], dtype=tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < hi
        slots = tl.load(REQ_TO_TOKEN + row * stride_r2t + offs_n, mask=n_mask, other=0).to(tl.int64)
        k_base = K + slots[None, :] * stride_kt + kv_head * stride_kh
        k = tl.load(k_base + offs_d[:, None], mask=n_mask[None, :], other=0.0)
        s = mma(q, k.to(q.dtype), PRECISION, UPCAST)
        if D_EXTRA > 0:
            ke = tl.load(k_base + offs_de[:, None], mask=n_mask[None, :], other=0.0)
            s += mma(qe, ke.to(qe.dtype), PRECISION, UPCAST)
        s = scale_scores(s, scale_log2, logit_cap, HAS_CAP)
        allowed = m_mask[:, None] & n_mask[None, :]
        if CAUSAL:
            allowed &= offs_n[None, :] <= pos[:, None]
        if HAS_WINDOW:
            allowed &= offs_n[None, :] >= pos[:, None] - window
        if MASK_MODE == 1:
            cm_ptrs = MASK + mask_start + offs_m[:, None].to(tl.int64) * kv_len + offs_n[None, :]
            allowed &= tl.load(cm_ptrs, mask=allowed, other=0) != 0
        if MASK_MODE == 2:
            in_tree = offs_n[None, :] >= prefix
            cols = offs_n[None, :] - prefix
            cm_ptrs = MASK + mask_start + offs_m[:, None].to(tl.int64) * qo_len + cols
            tree_ok = tl.load(cm_ptrs, mask=allowed & in_tree, other=0) != 0
            allowed &= (offs_n[None, :] < prefix) | tree_ok
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_use)
        p = tl.exp2(s - m_use[:, None])
        v_ptrs = V + slots[:, None] * stride_vt + kv_head * stride_vh + offs_dv[None, :]
        v = tl.load(v_ptrs, mask=n_mask[:, None], other=0.0)
        acc = acc * alpha[:, None] + mma(p.to(v.dtype), v, PRECISION, UPCAST)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new

    if HAS_SINK:  # rescale to max(m, sink) so a large sink cannot overflow exp2
        sink = tl.load(SINKS + heads).to(tl.float32) * 1.4426950408889634
        m_fin = tl.maximum(m_i, sink)
        m_fin = tl.where(m_fin == float("-inf"), 0.0, m_fin)
        alpha = tl.exp2(m_i - m_fin)
        acc = acc * alpha[:, None]
        l_i = l_i * alpha + tl.exp2(sink - m_fin)
    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    o_rows = (q_start + offs_m)[:, None] * stride_ot + heads[:, None] * stride_oh
    o_ptrs = OUT + o_rows + offs_dv[None, :]
    tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=m_mask[:, None])
