"""Triton tier of paged attention decode (one query token per sequence).

Split-KV flash decoding over SGLang's token-slot KV pool: see
`decode_details/_split_kv.py` for the kernels and `attention/opt_flags.py`
for the launch flags (split count, tiles) per target. Serves MHA, GQA/MQA (query heads of one KV head share each
K/V load), MLA in absorbed form (K = [latent | rope], V aliasing the latent),
sliding window, logit soft-cap and attention sinks. `unsupported_reason` says, before launch,
when a request needs the torch tier instead. Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.attention.decode_details._split_kv import (
    _decode_reduce_kernel,
    _decode_split_kernel,
)
from sglang_amd.attention.head_dims import split_qk_dim, unsupported_dims
from sglang_amd.attention.opt_flags import DecodeFlags, decode_flags, reduce_warps
from sglang_amd.target_info import current_target
from sglang_amd.triton_utils import dot_flags

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def unsupported_reason(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> str | None:
    """Why `paged_decode` cannot serve these tensors, or None when it can."""
    if q.dtype not in _FLOAT_DTYPES or k_cache.dtype not in _FLOAT_DTYPES:
        return f"dtypes q={q.dtype} kv={k_cache.dtype} (quantized KV needs the torch tier)"
    if q.shape[1] % k_cache.shape[1]:
        return f"{q.shape[1]} query heads is not a multiple of {k_cache.shape[1]} KV heads"
    return unsupported_dims(q.shape[2], v_cache.shape[2])


def paged_decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    kv_lens: torch.Tensor,
    *,
    scale: float,
    max_kv_len: int | None = None,
    sliding_window: int | None = None,
    logit_cap: float = 0.0,
    sinks: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    flags: DecodeFlags | None = None,
) -> torch.Tensor:
    """Decode attention, one query per sequence.

    Args:
        q: [B, Hq, Dqk] float16/bfloat16/float32.
        k_cache: [S, Hkv, Dqk] pool rows, same dtype family as q.
        v_cache: [S, Hkv, Dv]; may be a view of k_cache[..., :Dv] (MLA).
        req_to_token: [R, max_context] int32/int64 token slots.
        req_pool_indices: [B] int row of each sequence in req_to_token.
        kv_lens: [B] int tokens in cache per sequence (the new one included).
        scale: softmax scale.
        max_kv_len: host-side upper bound of kv_lens, sizes the split grid (avoids
            a device sync when given). Under CUDA graphs pass the capacity
            (req_to_token.shape[1]): nothing read from the host then changes
            between replays, and each sequence still uses only the splits its
            length needs.
        sliding_window: read only keys j with (kv_len - 1) - j <= window.
        logit_cap: > 0 applies cap * tanh(s / cap) to the scores.
        sinks: [Hq] per-head sink logits (any float dtype, read as float32): each
            joins its head's softmax denominator, unscaled and uncapped.
        out: [B, Hq, Dv] written in place when given.
        flags: launch parameters (default: `decode_flags` for this device's target/shape).

    Returns:
        [B, Hq, Dv] in q's dtype (or out's). A sequence with kv_len 0 gets zeros.
    """
    reason = unsupported_reason(q, k_cache, v_cache)
    if reason:
        raise ValueError(f"paged_decode: {reason}")
    if out is None:
        out = q.new_empty(q.shape[0], q.shape[1], v_cache.shape[2])
    if q.shape[0] == 0:
        return out
    if max_kv_len is None:
        max_kv_len = int(kv_lens.max().item())
    window = -1 if sliding_window is None or sliding_window < 0 else int(sliding_window)
    return split_kv_attention(
        q, k_cache, v_cache, req_to_token, req_pool_indices, kv_lens, None,
        length=max_kv_len, scale=scale, window=window, logit_cap=logit_cap, out=out, flags=flags,
        sinks=sinks,
    )  # fmt: skip


def split_kv_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    kv_lens: torch.Tensor | None,
    topk: torch.Tensor | None,
    *,
    length: int,
    scale: float,
    window: int,
    logit_cap: float,
    out: torch.Tensor,
    flags: DecodeFlags | None,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """The two launches (split-KV stage 1, merge) shared by dense and sparse decode.

    Dense (`topk` None): row b walks positions 0..kv_lens[b]-1 of its request;
    `length` bounds kv_lens and sizes the grid. Sparse: row b walks the entries of
    topk[b] ([B, length] token positions, -1 none); `kv_lens` is unused.
    """
    batch, hq, d_qk = q.shape
    hkv, d_v = k_cache.shape[1], v_cache.shape[2]
    group = hq // hkv
    d_main, d_extra = split_qk_dim(d_qk)
    target = current_target(q.device)
    flags = flags or decode_flags(target, batch, hkv, group, length, d_qk, d_v)
    splits = flags.num_splits
    block_s = max(triton.next_power_of_2(splits), 2)
    mid_o = torch.empty(batch, hq, splits, d_v, dtype=torch.float32, device=q.device)
    mid_lse = torch.empty(batch, hq, splits, dtype=torch.float32, device=q.device)
    head_blocks = triton.cdiv(group, flags.block_h)
    # V is K's first D_V columns (MLA's latent): reuse the loaded K tile.
    v_from_k = (
        d_v == d_main
        and v_cache.data_ptr() == k_cache.data_ptr()
        and v_cache.stride() == k_cache.stride()
    )
    sparse = topk is not None
    _decode_split_kernel[(batch, hkv * head_blocks, splits)](
        q,
        k_cache,
        v_cache,
        req_to_token,
        req_pool_indices,
        req_pool_indices if kv_lens is None else kv_lens,
        topk if sparse else req_to_token,
        mid_o,
        mid_lse,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        v_cache.stride(0),
        v_cache.stride(1),
        req_to_token.stride(0),
        topk.stride(0) if sparse else 0,
        mid_o.stride(0),
        mid_o.stride(1),
        mid_o.stride(2),
        mid_lse.stride(0),
        mid_lse.stride(1),
        scale * 1.4426950408889634,
        float(logit_cap),
        window,
        splits,
        max(1, flags.min_split_len),
        length if sparse else 0,
        GROUP=group,
        BLOCK_H=flags.block_h,
        BLOCK_N=flags.block_n,
        D_MAIN=d_main,
        D_EXTRA=d_extra,
        D_V=d_v,
        HAS_WINDOW=window >= 0,
        HAS_CAP=logit_cap > 0,
        V_FROM_K=v_from_k,
        SPARSE=sparse,
        **dot_flags(q.dtype, v_cache.dtype),
        num_warps=flags.num_warps,
        num_stages=flags.num_stages,
    )
    if sinks is not None and sinks.shape != (hq,):
        raise ValueError(f"sinks must be [{hq}] (one per query head), got {tuple(sinks.shape)}")
    _decode_reduce_kernel[(batch, hq)](
        mid_o,
        mid_lse,
        mid_lse if sinks is None else sinks,
        out,
        mid_o.stride(0),
        mid_o.stride(1),
        mid_o.stride(2),
        mid_lse.stride(0),
        mid_lse.stride(1),
        out.stride(0),
        out.stride(1),
        splits,
        D_V=d_v,
        BLOCK_S=block_s,
        HAS_SINK=sinks is not None,
        num_warps=reduce_warps(target, block_s, d_v),
    )
    return out
