"""Triton tier of paged attention extend (prefill over a cached radix prefix).

Queries of several sequences are packed; sequence b has `qo_lens[b]` new tokens
after `kv_lens[b] - qo_lens[b]` cached ones, all already in the KV pool. The
kernel (`extend_details/_tiled.py`) tiles each sequence's queries in BLOCK_M
rows and walks its keys in BLOCK_N tiles up to the causal limit, so chunked
prefill and prefix reuse cost only the tiles they touch. Serves MHA/GQA/MQA,
QK widths of power of two (+ power of two, e.g. 192 = 128 + 64), sliding window,
logit soft-cap and per-sequence tree masks (speculative verify). Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_amd.attention.decode import unsupported_reason
from sglang_amd.attention.extend_details._tiled import _extend_kernel
from sglang_amd.attention.head_dims import split_qk_dim
from sglang_amd.attention.triton_utils import dot_flags
from sglang_amd.target_info import device_kind

__all__ = ["ExtendFlags", "extend_flags", "paged_extend", "unsupported_reason"]


@dataclass(frozen=True)
class ExtendFlags:
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def extend_flags(device: torch.device, d_qk: int, d_v: int) -> ExtendFlags:
    wide = max(d_qk, d_v) > 128
    if device.type != "cuda":
        return ExtendFlags(16, 16, 4, 1)  # interpreter: small tiles, small cost
    if device_kind(device) == "rocm":
        return ExtendFlags(64 if wide else 128, 32 if wide else 64, 4, 1)
    return ExtendFlags(64 if wide else 128, 32 if wide else 64, 4 if wide else 8, 2 if wide else 3)


def _block_table(qo_lens: list[int], block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    seq_ids, starts = [], []
    for b, qo in enumerate(qo_lens):
        for m0 in range(0, qo, block_m):
            seq_ids.append(b)
            starts.append(m0)
    return torch.tensor(seq_ids, dtype=torch.int32), torch.tensor(starts, dtype=torch.int32)


def _exclusive_cumsum(values: list[int]) -> torch.Tensor:
    out, total = [], 0
    for v in values:
        out.append(total)
        total += v
    return torch.tensor(out, dtype=torch.int64)


def paged_extend(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    kv_lens: torch.Tensor,
    qo_lens: torch.Tensor,
    *,
    scale: float,
    kv_lens_cpu: list[int] | None = None,
    qo_lens_cpu: list[int] | None = None,
    causal: bool = True,
    sliding_window: int | None = None,
    logit_cap: float = 0.0,
    custom_mask: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    flags: ExtendFlags | None = None,
) -> torch.Tensor:
    """Extend attention for packed new tokens over paged K/V.

    Args:
        q: [T, Hq, Dqk], T = sum(qo_lens), sequences contiguous in order.
        k_cache, v_cache: [S, Hkv, Dqk] / [S, Hkv, Dv] pool rows (new tokens included).
        req_to_token: [R, max_context] int token slots.
        req_pool_indices, kv_lens, qo_lens: [B] int on q's device.
        scale: softmax scale.
        kv_lens_cpu, qo_lens_cpu: the same lengths as host lists (saves a sync).
        causal: query i of sequence b reads keys j <= kv_len - qo_len + i.
        sliding_window: also require pos - j <= window.
        logit_cap: > 0 applies cap * tanh(s / cap).
        custom_mask: flat bool/uint8, per sequence a row-major [qo_len, kv_len]
            block, sequences concatenated (SGLang's tree-verify mask layout).
        out: [T, Hq, Dv] written in place when given.

    Returns:
        [T, Hq, Dv]; rows that see no key are zero.
    """
    reason = unsupported_reason(q, k_cache, v_cache)
    if reason:
        raise ValueError(f"paged_extend: {reason}")
    total, hq, d_qk = q.shape
    hkv, d_v = k_cache.shape[1], v_cache.shape[2]
    d_main, d_extra = split_qk_dim(d_qk)
    if out is None:
        out = q.new_empty(total, hq, d_v)
    if total == 0:
        return out
    qo_list = qo_lens_cpu if qo_lens_cpu is not None else qo_lens.tolist()
    flags = flags or extend_flags(q.device, d_qk, d_v)
    block_seq, block_start = _block_table(qo_list, flags.block_m)
    device = q.device
    q_starts = _exclusive_cumsum(qo_list).to(device)
    if custom_mask is not None:
        kv_list = kv_lens_cpu if kv_lens_cpu is not None else kv_lens.tolist()
        mask_starts = _exclusive_cumsum([a * b for a, b in zip(qo_list, kv_list, strict=True)])
        mask_starts = mask_starts.to(device)
        mask_arg = custom_mask.view(torch.uint8) if custom_mask.dtype == torch.bool else custom_mask
    else:
        mask_starts, mask_arg = q_starts, q_starts  # unused when HAS_MASK is False
    window = -1 if sliding_window is None or sliding_window < 0 else int(sliding_window)
    grid = (block_seq.numel(), hq)
    _extend_kernel[grid](
        q,
        k_cache,
        v_cache,
        out,
        req_to_token,
        req_pool_indices,
        kv_lens,
        qo_lens,
        q_starts,
        block_seq.to(device),
        block_start.to(device),
        mask_arg,
        mask_starts,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        v_cache.stride(0),
        v_cache.stride(1),
        out.stride(0),
        out.stride(1),
        req_to_token.stride(0),
        scale * 1.4426950408889634,
        float(logit_cap),
        window,
        GROUP=hq // hkv,
        BLOCK_M=flags.block_m,
        BLOCK_N=flags.block_n,
        D_MAIN=d_main,
        D_EXTRA=d_extra,
        D_V=d_v,
        CAUSAL=causal,
        HAS_WINDOW=window >= 0,
        HAS_CAP=logit_cap > 0,
        HAS_MASK=custom_mask is not None,
        **dot_flags(q.dtype, v_cache.dtype),
        num_warps=flags.num_warps,
        num_stages=flags.num_stages,
    )
    return out
