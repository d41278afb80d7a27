"""Triton tier of paged attention extend (prefill over a cached radix prefix).

Queries of several sequences are packed; sequence b has `qo_lens[b]` new tokens
after `kv_lens[b] - qo_lens[b]` cached ones, all already in the KV pool. The
kernel (`extend_details/_tiled.py`) tiles each sequence's queries in BLOCK_M
rows -- BLOCK_M // HEADS tokens x HEADS query heads of one KV head (GQA packed:
a K/V tile is loaded once for its whole group) -- and walks its keys in BLOCK_N
tiles up to the causal limit, so chunked
prefill and prefix reuse cost only the tiles they touch. Serves MHA/GQA/MQA,
QK widths of power of two (+ power of two, e.g. 192 = 128 + 64), sliding window,
logit soft-cap, attention sinks and per-sequence tree masks (speculative verify).

With `uniform_qo` (every sequence brings the same number of new tokens; the
backend passes it for target verify) the launch reads no host lengths: the block table
and offsets come from device ops on the tensors' shapes and `kv_lens`, so the
launch can be captured in a CUDA graph and replayed with new lengths.
Launch flags (tile sizes, warps, stages) come from `attention/opt_flags.py`,
per target. Never imports sglang.
"""

from __future__ import annotations

import math

import torch
import triton

from sglang_amd.attention.decode import unsupported_reason
from sglang_amd.attention.extend_details._tiled import _extend_kernel
from sglang_amd.attention.head_dims import split_qk_dim
from sglang_amd.attention.opt_flags import ExtendFlags, extend_flags
from sglang_amd.target_info import current_target
from sglang_amd.triton_utils import dot_flags

__all__ = ["paged_extend", "unsupported_reason"]


Plan = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def heads_per_program(group: int, block_m: int) -> int:
    """Query heads of one KV head packed into a program's BLOCK_M rows: the most
    that divide both the group and the tile, so rows split into whole tokens."""
    return math.gcd(group, block_m)


def _host_plan(
    qo_lens: list[int], kv_lens: list[int] | None, block_m: int, device: torch.device
) -> Plan:
    """(sequence, first query token) of each program, query offsets and mask offsets,
    from host lengths; `block_m` tokens per program. Mask blocks are [qo, kv] (FULL)
    given `kv_lens`, else [qo, qo]."""
    seq_ids, starts = [], []
    for b, qo in enumerate(qo_lens):
        for m0 in range(0, qo, block_m):
            seq_ids.append(b)
            starts.append(m0)
    cols = kv_lens if kv_lens is not None else qo_lens
    mask_sizes = [qo * c for qo, c in zip(qo_lens, cols, strict=True)]
    table = torch.tensor([seq_ids, starts], dtype=torch.int32).to(device)
    offsets = torch.stack([_exclusive_cumsum(qo_lens), _exclusive_cumsum(mask_sizes)]).to(device)
    return table[0], table[1], offsets[0], offsets[1]


def _uniform_plan(
    total: int,
    qo: int,
    block_m: int,
    kv_lens: torch.Tensor,
    mask_draft_only: bool,
    device: torch.device,
) -> Plan:
    """The same plan when every sequence has `qo` new tokens, by device ops only."""
    if qo <= 0 or total % qo:
        raise ValueError(f"paged_extend: uniform_qo={qo} does not divide {total} query rows")
    bsz = total // qo
    blocks = triton.cdiv(qo, block_m)
    idx = torch.arange(bsz * blocks, device=device, dtype=torch.int32)
    block_seq = idx // blocks
    block_start = (idx % blocks) * block_m
    seq = torch.arange(bsz, device=device, dtype=torch.int64)
    q_starts = seq * qo
    if mask_draft_only:
        mask_starts = seq * (qo * qo)
    else:
        sizes = kv_lens[:bsz].to(torch.int64) * qo
        mask_starts = torch.cumsum(sizes, 0) - sizes
    return block_seq, block_start, q_starts, mask_starts


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
    mask_draft_only: bool = False,
    uniform_qo: int | None = None,
    sinks: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    flags: ExtendFlags | None = None,
    plans: dict | None = None,
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
            block, sequences concatenated (SGLang's FULL_MASK tree-verify layout).
        mask_draft_only: `custom_mask` holds only each sequence's [qo_len, qo_len]
            block over its new tokens, which all see the whole prefix (QLEN_ONLY).
        uniform_qo: every qo_lens[b] equals this; T must be B * uniform_qo. Plans
            the launch on the device (no host lengths read; CUDA-graph safe).
        out: [T, Hq, Dv] written in place when given.
        plans: a dict kept for one forward batch (every layer sees the same
            lengths): the launch plan is made by the first layer's call and
            reused by the others instead of being rebuilt (and, from host
            lengths, copied to the device) once per layer.

    Returns:
        [T, Hq, Dv]; rows that see no key are zero.
    """
    reason = unsupported_reason(q, k_cache, v_cache)
    if reason:
        raise ValueError(f"paged_extend: {reason}")
    total, hq, d_qk = q.shape
    hkv, d_v = k_cache.shape[1], v_cache.shape[2]
    d_main, d_extra = split_qk_dim(d_qk)
    if sinks is not None and sinks.shape != (hq,):
        raise ValueError(f"sinks must be [{hq}] (one per query head), got {tuple(sinks.shape)}")
    if out is None:
        out = q.new_empty(total, hq, d_v)
    if total == 0:
        return out
    flags = flags or extend_flags(
        current_target(q.device), d_qk, d_v, max(q.element_size(), k_cache.element_size())
    )
    mask_arg = None
    if custom_mask is not None:
        mask_arg = custom_mask.view(torch.uint8) if custom_mask.dtype == torch.bool else custom_mask
    heads = heads_per_program(hq // hkv, flags.block_m)
    tokens = flags.block_m // heads
    full_mask = custom_mask is not None and not mask_draft_only
    key = (tokens, total, uniform_qo, full_mask, mask_draft_only)
    plan = plans.get(key) if plans is not None else None
    if plan is None:
        if uniform_qo is not None:
            plan = _uniform_plan(total, uniform_qo, tokens, kv_lens, mask_draft_only, q.device)
        else:
            qo_list = qo_lens_cpu if qo_lens_cpu is not None else qo_lens.tolist()
            kv_list = None
            if full_mask:
                kv_list = kv_lens_cpu if kv_lens_cpu is not None else kv_lens.tolist()
            plan = _host_plan(qo_list, kv_list, tokens, q.device)
        if plans is not None:
            plans[key] = plan
    block_seq, block_start, q_starts, mask_starts = plan
    if mask_arg is None:
        mask_arg = q_starts  # unused when MASK_MODE is 0
    window = -1 if sliding_window is None or sliding_window < 0 else int(sliding_window)
    grid = (block_seq.numel(), hq // heads)
    mask_mode = 0 if custom_mask is None else (2 if mask_draft_only else 1)
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
        block_seq,
        block_start,
        mask_arg,
        mask_starts,
        q_starts if sinks is None else sinks,
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
        HEADS=heads,
        BLOCK_M=flags.block_m,
        BLOCK_N=flags.block_n,
        D_MAIN=d_main,
        D_EXTRA=d_extra,
        D_V=d_v,
        CAUSAL=causal,
        HAS_WINDOW=window >= 0,
        HAS_CAP=logit_cap > 0,
        MASK_MODE=mask_mode,
        HAS_SINK=sinks is not None,
        **dot_flags(q.dtype, v_cache.dtype),
        num_warps=flags.num_warps,
        num_stages=flags.num_stages,
    )
    return out
