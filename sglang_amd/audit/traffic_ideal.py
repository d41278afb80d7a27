"""The bytes each op must move at the least: what `audit/traffic_audit.py` divides by.

Where it sits: `audit/traffic_cases.py` builds each case's tensors and asks here
for the ideal; `audit/traffic.py` counts what the kernels actually moved. An
ideal reads every input byte the math needs once and writes every output byte
once; index tensors (page tables, lengths, routing ids) are left out, so small
bookkeeping reads show as ratio above 1.0. Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _kv_row_bytes(k: torch.Tensor, v: torch.Tensor) -> int:
    """Bytes of one token's K and V over all KV heads; once when V aliases K (MLA:
    V is the latent K already holds, so the ideal reads the latent once)."""
    row_k = k.shape[1] * k.shape[2] * k.element_size()
    shares = v.untyped_storage().data_ptr() == k.untyped_storage().data_ptr()
    return row_k if shares else row_k + v.shape[1] * v.shape[2] * v.element_size()


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_lens: Sequence[int], dv: int
) -> int:
    """Decode or extend: q [T, Hq, Dqk] read once, out [T, Hq, Dv] (q's dtype) written
    once, and each sequence's kv_len tokens of K and V read once."""
    out = q.shape[0] * q.shape[1] * dv * q.element_size()
    return _nbytes(q) + out + sum(kv_lens) * _kv_row_bytes(k, v)


def expert_bytes(weights: Sequence[torch.Tensor], topk_ids: torch.Tensor) -> int:
    """Bytes of the experts any token selected, each once: `weights` are [E, ...]
    tensors (w13, w2, and their E8M0 scales for MXFP4)."""
    ids = topk_ids.reshape(-1)
    num_experts = weights[0].shape[0]
    selected = int(torch.unique(ids[(ids >= 0) & (ids < num_experts)]).numel())
    return selected * sum(_nbytes(w[0]) for w in weights)


def moe(x: torch.Tensor, weights: Sequence[torch.Tensor], topk_ids: torch.Tensor) -> int:
    """Fused MoE: the selected experts' weight (+ scale) bytes once, x read once and
    the [T, H] output (x's dtype) written once."""
    return expert_bytes(weights, topk_ids) + 2 * _nbytes(x)


def linear(x: torch.Tensor, weights: Sequence[torch.Tensor], n: int) -> int:
    """Dense linear: the weight (+ scales) once, x once, the [rows, N] output once."""
    return sum(_nbytes(w) for w in weights) + _nbytes(x) + x.shape[0] * n * x.element_size()


def indexer(q: torch.Tensor, weights: torch.Tensor, index_k_row_bytes: int, visible: int) -> int:
    """DSA's indexer for one query token: q [1, H, D] and its head weights read once,
    the `visible` index-K rows read once, one float32 score per position written."""
    return _nbytes(q) + _nbytes(weights) + visible * (index_k_row_bytes + 4)


def topk(scores: torch.Tensor, k: int) -> int:
    """DSA's top-k: each float32 score [T, width] read once, k int32 positions a row
    written once."""
    return _nbytes(scores) + scores.shape[0] * k * 4


def ep_pack(
    x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, rows: int, row_bytes: int
) -> int:
    """Expert-parallel dispatch's pack: each token's x, routing weights and expert ids
    (its record's payload) read once, and each of the `rows` rows of the send buffer
    written once (high throughput: a row per token and destination rank; low
    latency: the whole fixed buffer, padding included, as the mode ships it)."""
    return _nbytes(x) + _nbytes(weights) + _nbytes(ids) + rows * row_bytes


def ep_combine(returned: int, out: torch.Tensor) -> int:
    """Expert-parallel combine: the `returned` bytes of the rows sent back for this
    rank's tokens read once (low latency's padding rows are not), [T, H] written once."""
    return returned + _nbytes(out)
