"""Torch reference for paged attention over SGLang's KV pool: the oracle tier.

Serves every request shape the `amd` backend accepts (extend over a radix
prefix, decode, GQA/MQA, MLA in absorbed form through a shared K/V buffer,
sliding window, logit soft-cap, attention sinks, tree masks for speculative verify)
on any device,
computing in float32 whatever the storage dtype. It is what runs on CPU and what
every faster tier is tested against. Never imports sglang.

Layout, as in SGLang: the KV pool holds one row per token slot; row
`req_to_token[req_pool_indices[b], j]` is the j-th token of sequence b. Page size
does not matter at this level because `req_to_token` is per token.
"""

from __future__ import annotations

import torch


def _as_list(x: torch.Tensor | list[int]) -> list[int]:
    return x.tolist() if isinstance(x, torch.Tensor) else list(x)


def attention_mask(
    qo_len: int,
    kv_len: int,
    *,
    causal: bool = True,
    sliding_window: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Bool [qo_len, kv_len]: True where query i may read key j.

    The queries are the last `qo_len` tokens of the `kv_len` in the sequence,
    so query i sits at absolute position `kv_len - qo_len + i`. With a sliding
    window w (SGLang's `layer.sliding_window_size`), key j is read only when
    `pos - j <= w`.
    """
    q_pos = torch.arange(kv_len - qo_len, kv_len, device=device).unsqueeze(1)
    k_pos = torch.arange(kv_len, device=device).unsqueeze(0)
    allowed = torch.ones(qo_len, kv_len, dtype=torch.bool, device=device)
    if causal:
        allowed &= k_pos <= q_pos
    if sliding_window is not None and sliding_window >= 0:
        allowed &= k_pos >= q_pos - sliding_window
    return allowed


def contiguous_token_map(lengths: list[int], device: torch.device | str) -> torch.Tensor:
    """[B, max(lengths)] int32 map whose row b pages over rows starting[b] .. of a packed
    tensor (sequence b's rows contiguous, in order): lets K/V handed in with the
    queries (MLA's decompressed prefill) be read like a pool. Pad entries point
    past a row's length and are never read."""
    width = max(lengths, default=0)
    starts = torch.tensor([0, *lengths[:-1]], device=device, dtype=torch.long).cumsum(0)
    cols = torch.arange(width, device=device)
    return (starts[:, None] + cols[None, :]).to(torch.int32)


def paged_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor | list[int],
    kv_lens: torch.Tensor | list[int],
    qo_lens: torch.Tensor | list[int],
    *,
    scale: float,
    causal: bool = True,
    sliding_window: int | None = None,
    logit_cap: float = 0.0,
    custom_mask: torch.Tensor | None = None,
    k_scale: float | None = None,
    v_scale: float | None = None,
    sinks: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of packed queries over paged K/V.

    Args:
        q: [T, Hq, Dqk], T = sum(qo_lens); sequence b's queries are contiguous.
        k_cache: [S, Hkv, Dqk] pool rows (any float dtype, fp8 with `k_scale`).
        v_cache: [S, Hkv, Dv]; may alias a slice of `k_cache` (MLA absorbed form).
        req_to_token: [R, max_context] int32/int64 slot of each token.
        req_pool_indices: [B] row of `req_to_token` for each sequence.
        kv_lens: [B] tokens in the cache for each sequence, new ones included.
        qo_lens: [B] queries of each sequence (1 in decode); qo_len <= kv_len.
        scale: softmax scale applied to q.k.
        causal: mask keys after each query's position.
        sliding_window: keep keys with pos - j <= window; None or <0 for no window.
        logit_cap: when > 0, scores become cap * tanh(score / cap) (Gemma/Grok).
        custom_mask: flat bool, the concatenation over sequences of row-major
            [qo_len, kv_len] masks (speculative tree verify); ANDed with the rest.
        k_scale, v_scale: dequantization scales of a quantized cache.
        sinks: [Hq] learned per-head logits (gpt-oss) that join each row's softmax
            denominator as one more key whose value is zero: the raw logit, neither
            scaled nor capped (SGLang's and HF's definition).
        out: [T, Hq, Dv] written in place when given.

    Returns:
        [T, Hq, Dv] in `out`'s dtype, else `q`'s dtype. Rows whose keys are all
        masked are zero.
    """
    rows = _as_list(req_pool_indices)
    kv_list = _as_list(kv_lens)
    qo_list = _as_list(qo_lens)
    if not (len(rows) == len(kv_list) == len(qo_list)):
        raise ValueError("req_pool_indices, kv_lens and qo_lens must have one entry per sequence")
    total_q, hq, _ = q.shape
    hkv, dv = k_cache.shape[1], v_cache.shape[2]
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of KV heads ({hkv})")
    if sum(qo_list) != total_q:
        raise ValueError(f"sum(qo_lens)={sum(qo_list)} but q has {total_q} tokens")
    group = hq // hkv
    if out is None:
        out = q.new_empty(total_q, hq, dv)
    sink_col = None
    if sinks is not None:
        if sinks.shape != (hq,):
            raise ValueError(f"sinks must be [{hq}] (one per query head), got {tuple(sinks.shape)}")
        sink_col = sinks.float().view(hkv, group, 1, 1)

    q_start = 0
    mask_start = 0
    for row, kv_len, qo_len in zip(rows, kv_list, qo_list, strict=True):
        if qo_len > kv_len:
            raise ValueError(f"a sequence has {qo_len} queries but only {kv_len} cached tokens")
        q_end = q_start + qo_len
        if qo_len == 0:
            continue
        slots = req_to_token[row, :kv_len].long()
        k = k_cache[slots].float()
        v = v_cache[slots].float()
        if k_scale is not None:
            k = k * k_scale
        if v_scale is not None:
            v = v * v_scale
        qs = q[q_start:q_end].float().view(qo_len, hkv, group, -1)
        scores = torch.einsum("qhgd,khd->hgqk", qs, k) * scale
        if logit_cap > 0:
            scores = logit_cap * torch.tanh(scores / logit_cap)
        allowed = attention_mask(
            qo_len, kv_len, causal=causal, sliding_window=sliding_window, device=q.device
        )
        if custom_mask is not None:
            n = qo_len * kv_len
            allowed = allowed & custom_mask[mask_start : mask_start + n].view(qo_len, kv_len)
            mask_start += n
        scores = scores.masked_fill(~allowed, float("-inf"))
        if sink_col is not None:
            sink = sink_col.expand(hkv, group, qo_len, 1)
            probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
            probs = probs.nan_to_num_(0.0)  # a -inf sink over no key
        else:
            probs = torch.softmax(scores, dim=-1).nan_to_num_(0.0)
        o = torch.einsum("hgqk,khd->qhgd", probs, v).reshape(qo_len, hq, dv)
        out[q_start:q_end] = o.to(out.dtype)
        q_start = q_end
    return out


def sparse_attention_reference(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor | list[int],
    topk: torch.Tensor,
    *,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Top-k sparse attention (DeepSeek-V3.2's DSA): each query token attends to the
    tokens its indexer selected, and only to them.

    Args:
        q: [T, Hq, Dqk] one row per query token.
        k_cache, v_cache: [S, Hkv, Dqk] / [S, Hkv, Dv] pool rows (V may alias K).
        req_to_token: [R, max_context] slot of each token of each request.
        req_pool_indices: [T] request row of each query token.
        topk: [T, K] token positions in that request; -1 entries select nothing
            (a position listed twice counts once).
        scale: softmax scale.
        out: [T, Hq, Dv] written in place when given.

    Returns:
        [T, Hq, Dv]; a row that selects nothing is zero.
    """
    rows = _as_list(req_pool_indices)
    total, hq, _ = q.shape
    hkv, dv = k_cache.shape[1], v_cache.shape[2]
    group = hq // hkv
    if out is None:
        out = q.new_empty(total, hq, dv)
    for t in range(total):
        pos = topk[t].long()
        pos = torch.unique(pos[pos >= 0])
        if pos.numel() == 0:
            out[t] = 0
            continue
        slots = req_to_token[rows[t], pos].long()
        k, v = k_cache[slots].float(), v_cache[slots].float()
        qs = q[t].float().view(hkv, group, -1)
        probs = torch.softmax(torch.einsum("hgd,khd->hgk", qs, k) * scale, dim=-1)
        out[t] = torch.einsum("hgk,khd->hgd", probs, v).reshape(hq, dv).to(out.dtype)
    return out


def indexer_logits_reference(
    q: torch.Tensor,
    weights: torch.Tensor,
    index_k: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor | list[int],
    visible: torch.Tensor | list[int],
    *,
    scale: float,
    width: int | None = None,
) -> torch.Tensor:
    """DeepSeek-V3.2's lightning indexer, float mode (HF transformers' math): the
    score of token s for query token t is sum_h weights[t, h] * relu(scale * q[t, h] . k[s]).

    Args:
        q: [T, H, D] indexer queries (RoPE applied).
        weights: [T, H] per-head weights (the model's weights_proj output times
            n_heads^-0.5, as HF folds it).
        index_k: [S, D] the index-K pool: one row per token slot.
        req_to_token: [R, max_context] slot of each token of each request.
        req_pool_indices: [T] request row of each query token.
        visible: [T] how many leading positions of its request each query token
            may see (its own position + 1: the causal limit).
        scale: index_head_dim ** -0.5.
        width: columns of the result (default max(visible)).

    Returns:
        [T, width] float32 scores; -inf at positions >= visible[t].
    """

    def head_scores(t: int, slots: torch.Tensor) -> torch.Tensor:
        return torch.relu(q[t].float() @ index_k[slots.long()].float().T * scale)

    return _indexer_scores(head_scores, weights, req_to_token, req_pool_indices, visible, width)


def _indexer_scores(head_scores, weights, req_to_token, req_pool_indices, visible, width):
    """[T, width] float32: weights[t] @ head_scores(t, slots of t's visible positions)
    ([H, n] each), -inf past each token's limit; both indexer modes' loop."""
    rows = _as_list(req_pool_indices)
    vis = _as_list(visible)
    width = max(vis, default=0) if width is None else width
    out = torch.full((weights.shape[0], width), float("-inf"), dtype=torch.float32,
                     device=weights.device)  # fmt: skip
    for t, (row, n) in enumerate(zip(rows, vis, strict=True)):
        if n:
            out[t, :n] = weights[t].float() @ head_scores(t, req_to_token[row, :n])
    return out


def indexer_logits_fp8_reference(
    q8: torch.Tensor,
    weights: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_size: int,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor | list[int],
    visible: torch.Tensor | list[int],
    *,
    width: int | None = None,
) -> torch.Tensor:
    """DeepSeek-V3.2's lightning indexer, FP8 mode (DeepSeek's and SGLang's): the
    score of token s for query token t is sum_h weights[t, h] * relu(q8[t, h] . k8[s])
    * k_scale[s], k8 and k_scale read from SGLang's index-K cache layout.

    Args:
        q8: [T, H, 128] float8 e4m3fn (`index_k_cache.fp8_indexer_inputs`).
        weights: [T, H] float32 with the query scale, 128^-0.5 and H^-0.5 folded in.
        index_k_cache: [pages, page_size * 132] uint8 (`index_k_cache.store_index_k`).
        page_size, req_to_token, req_pool_indices, visible, width: as above.

    Returns:
        [T, width] float32 scores; -inf at positions >= visible[t].
    """
    from sglang_amd.attention.index_k_cache import load_index_k

    def head_scores(t: int, slots: torch.Tensor) -> torch.Tensor:
        k8, k_scale = load_index_k(index_k_cache, slots, page_size, q8.shape[2])
        return torch.relu(q8[t].float() @ k8.float().T) * k_scale

    return _indexer_scores(head_scores, weights, req_to_token, req_pool_indices, visible, width)


def select_topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k positions of each row of `logits` ([T, N] float32, -inf where not
    visible), as [T, k] int32, -1 where a row has fewer than k visible positions.

    Tie rule: a higher score first; between equal scores the lower position (a
    stable descending sort). ReLU makes exact ties common (every head's score
    negative gives 0), so the rule decides which of them are kept.
    """
    n = logits.shape[1]
    order = torch.sort(logits, dim=1, descending=True, stable=True).indices[:, : min(k, n)]
    picked = torch.gather(logits, 1, order)
    out = torch.full((logits.shape[0], k), -1, dtype=torch.int32, device=logits.device)
    out[:, : order.shape[1]] = torch.where(picked > float("-inf"), order, -1).to(torch.int32)
    return out
