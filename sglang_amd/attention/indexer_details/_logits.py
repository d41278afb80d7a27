"""Triton kernel of DSA's lightning indexer: the score of every visible token.

One program per (query token, span of positions): it loads the token's H
indexer query heads once, walks its span BLOCK_N positions at a time through
`req_to_token` to the index-K rows, and writes
sum_h w[h] * relu(scale * q[h] . k[s]) for each position (-inf from the
token's causal limit on). Scores stay float32.

With FP8_PAGE (DeepSeek's FP8 mode) K is SGLang's index-K cache, uint8 pages of
FP8_PAGE keys of D float8 e4m3fn bytes followed by their float32 scales
(`attention/index_k_cache.py`); q is float8 too (its scale folded into w), and
each position's score is sum_h w[h] * relu(q[h] . k) * k_scale.

With FNUZ (gfx942, whose matrix cores take float8 e4m3fnuz but not e4m3fn) the
same e4m3fn bytes are read as e4m3fnuz: every code e4m3fn rounding produces
(|x| <= 448) is then worth exactly half, except -0 (0x80), fnuz's NaN, which is
read as 0. The dot is scaled by 4 (both operands halved), exactly, so the scores
are the e4m3fn scores bit for bit and the dot runs on native fp8 MFMA instead of
f16 MFMA after a conversion. Q then arrives as its uint8 bytes.
"""

from __future__ import annotations

import triton
import triton.language as tl

from sglang_amd.triton_utils import mma


@triton.jit
def _e4m3fn_bytes_as_fnuz(codes):
    """uint8 e4m3fn codes -> float8e4b8 worth half each; -0 (0x80, fnuz's NaN) -> 0."""
    return tl.where(codes == 0x80, tl.zeros_like(codes), codes).to(tl.float8e4b8, bitcast=True)


@triton.jit
def _indexer_logits_kernel(
    Q,
    W,
    K,
    REQ_TO_TOKEN,
    REQ_POOL_IDX,
    VISIBLE,
    OUT,
    stride_qt,
    stride_qh,
    stride_wt,
    stride_k,
    stride_r2t,
    stride_ot,
    scale,
    width,
    span,
    NUM_HEADS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    FP8_PAGE: tl.constexpr = 0,
    FNUZ: tl.constexpr = False,
):
    t = tl.program_id(0)
    start = tl.program_id(1) * span
    end = tl.minimum(start + span, width)
    visible = tl.load(VISIBLE + t)
    row = tl.load(REQ_POOL_IDX + t).to(tl.int64)
    offs_h = tl.arange(0, BLOCK_H)
    h_mask = offs_h < NUM_HEADS
    offs_d = tl.arange(0, D)
    q = tl.load(
        Q + t * stride_qt + offs_h[:, None] * stride_qh + offs_d[None, :],
        mask=h_mask[:, None],
        other=0.0,
    )
    if FNUZ:
        q = _e4m3fn_bytes_as_fnuz(q)
    w = tl.load(W + t * stride_wt + offs_h, mask=h_mask, other=0.0).to(tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < visible
        slots = tl.load(REQ_TO_TOKEN + row * stride_r2t + offs_n, mask=n_mask, other=0)
        slots = slots.to(tl.int64)
        if FP8_PAGE > 0:
            page_base = K + (slots // FP8_PAGE) * stride_k  # stride_k: bytes a page
            entry = slots % FP8_PAGE
            k_bytes = tl.load(
                page_base[None, :] + entry[None, :] * D + offs_d[:, None],
                mask=n_mask[None, :],
                other=0,
            )
            scale_ptr = (page_base + FP8_PAGE * D + entry * 4).to(tl.pointer_type(tl.float32))
            k_scale = tl.load(scale_ptr, mask=n_mask, other=0.0)
            if FNUZ:
                s = mma(q, _e4m3fn_bytes_as_fnuz(k_bytes), PRECISION, UPCAST) * 4.0
            else:
                s = mma(q, k_bytes.to(tl.float8e4nv, bitcast=True), PRECISION, UPCAST)
            logits = tl.sum(tl.maximum(s, 0.0) * w[:, None], 0) * k_scale
        else:
            k = tl.load(
                K + slots[None, :] * stride_k + offs_d[:, None],
                mask=n_mask[None, :],
                other=0.0,
            )
            s = mma(q, k.to(q.dtype), PRECISION, UPCAST) * scale  # [BLOCK_H, BLOCK_N]
            logits = tl.sum(tl.maximum(s, 0.0) * w[:, None], 0)
        logits = tl.where(n_mask, logits, float("-inf"))
        tl.store(OUT + t * stride_ot + offs_n, logits, mask=offs_n < end)
