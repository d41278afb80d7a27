"""Triton tier of top-k sparse attention (DeepSeek-V3.2's DSA), decode and extend.

Where it sits: after the lightning indexer has picked, per query token, the
positions of its request it may attend to (`topk`, token positions, -1 for
none), each query token is one row of the split-KV decode kernels
(`decode_details/_split_kv.py` with SPARSE): the splits divide its top-k entries
instead of its context, each entry goes position -> `req_to_token` -> pool slot,
and -1 entries are masked out before any K/V load. Decode (one query per
request) and extend (each new token its own row, the indexer having applied the
causal limit) are the same call. MLA's absorbed form (K = [latent | rope], V the
latent) reads each selected latent row once per head block. The meaning of
`topk` is ours: the SGLang adapter turns SGLang's indexer output into it. Never
imports sglang.
"""

from __future__ import annotations

import torch

from sglang_amd.attention.decode import split_kv_attention, unsupported_reason
from sglang_amd.attention.opt_flags import DecodeFlags, sparse_flags
from sglang_amd.target_info import current_target

__all__ = ["sparse_attention"]


def sparse_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    topk: torch.Tensor,
    *,
    scale: float,
    out: torch.Tensor | None = None,
    flags: DecodeFlags | None = None,
) -> torch.Tensor:
    """Each query token attends to the tokens `topk` lists for it.

    Args:
        q: [T, Hq, Dqk] float16/bfloat16/float32, one row per query token.
        k_cache: [S, Hkv, Dqk] pool rows.
        v_cache: [S, Hkv, Dv]; may be a view of k_cache[..., :Dv] (MLA).
        req_to_token: [R, max_context] int32/int64 token slots.
        req_pool_indices: [T] int request row of each query token.
        topk: [T, K] int32 token positions in the request, -1 for none, in any
            order; a position must not be listed twice (the indexer's top-k never
            does). K sizes the grid, so a fixed K (index_topk) keeps the launch
            the same under CUDA graphs.
        scale: softmax scale.
        out: [T, Hq, Dv] written in place when given.
        flags: launch parameters (default: `opt_flags.sparse_flags`, decode's
            heuristics over K entries, the splits capped by their overhead).

    Returns:
        [T, Hq, Dv] in q's dtype (or out's); a row that selects nothing is zero.
    """
    reason = unsupported_reason(q, k_cache, v_cache)
    if reason:
        raise ValueError(f"sparse_attention: {reason}")
    if topk.dim() != 2 or topk.shape[0] != q.shape[0]:
        raise ValueError(f"sparse_attention: topk {tuple(topk.shape)} must be [T={q.shape[0]}, K]")
    if topk.stride(1) != 1:
        raise ValueError("sparse_attention: topk rows must be contiguous")
    if out is None:
        out = q.new_empty(q.shape[0], q.shape[1], v_cache.shape[2])
    if q.shape[0] == 0 or topk.shape[1] == 0:
        return out.zero_() if q.shape[0] else out
    if flags is None:
        hkv = k_cache.shape[1]
        flags = sparse_flags(current_target(q.device), q.shape[0], hkv, q.shape[1] // hkv,
                             topk.shape[1], q.shape[2], v_cache.shape[2])  # fmt: skip
    return split_kv_attention(
        q, k_cache, v_cache, req_to_token, req_pool_indices, None, topk,
        length=topk.shape[1], scale=scale, window=-1, logit_cap=0.0, out=out, flags=flags,
    )  # fmt: skip
