"""DeepSeek sparse attention (DSA) through the tiers: the indexer's top-k, then
attention over the tokens it picked.

Where it sits: the SGLang side (`sglang_dsa.py`) projects each layer's indexer
query, key and head weights, turns them into the mode's inputs (`indexer_inputs`),
writes the new tokens' index keys (`store_keys`) and runs `attention.indexer` (the
scores and their top-k positions); the attention layer then runs `attention.sparse`
over that table. Each op runs on Triton (`indexer.py` + `topk.py`, `sparse.py`) or
torch (`reference.py`, the oracle).

Two indexer modes, one table for attention:
- float (HF transformers' `DeepseekV32Indexer`: the definition the e2e oracle
  computes): keys kept as float rows [slots, 128] in the model's dtype;
- fp8 (DeepSeek-V3.2's inference and SGLang's dsa backend): Hadamard-rotated,
  block-scaled float8 keys in SGLang's own index-K pool (`index_k_cache.py`).
The table is [T, index_topk] int32 token positions in each query token's request,
-1 for none: the k highest scores, the lower positions among scores equal to the
k-th (`reference.select_topk`, a sort, on the torch tier; `topk.topk_positions`, a
radix select, on Triton, which lists them in position order). Never imports sglang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from sglang_amd.attention.index_k_cache import INDEX_HEAD_DIM, fp8_indexer_inputs, store_index_k
from sglang_amd.attention.reference import select_topk

__all__ = [
    "INDEXER_MODES",
    "INDEXER_MODE_ENV",
    "INDEX_HEAD_DIM",
    "IndexerCall",
    "SparseCall",
    "graph_rows_and_visible",
    "indexer_inputs",
    "indexer_mode",
    "indexer_mode_refusal",
    "indexer_torch",
    "indexer_torch_refusal",
    "indexer_triton",
    "indexer_triton_refusal",
    "sparse_torch",
    "sparse_torch_refusal",
    "sparse_triton",
    "sparse_triton_refusal",
    "store_keys",
    "token_rows_and_visible",
]

INDEXER_MODES = ("float", "fp8")
INDEXER_MODE_ENV = "SGLANG_AMD_DSA_INDEXER"


def indexer_mode() -> str:
    """The indexer's mode from SGLANG_AMD_DSA_INDEXER (default float)."""
    return os.environ.get(INDEXER_MODE_ENV, "").strip().lower() or "float"


def indexer_mode_refusal() -> str | None:
    """Why SGLANG_AMD_DSA_INDEXER cannot be served (None: it can)."""
    mode = indexer_mode()
    if mode in INDEXER_MODES:
        return None
    return f"{INDEXER_MODE_ENV}={mode!r} is not an indexer mode; set it to one of {INDEXER_MODES}"


@dataclass
class IndexerCall:
    """One layer's indexer scoring, either mode.

    q: [T, H, 128] queries (float mode: float, RoPE applied; fp8: float8 e4m3fn,
    rotated and quantized). weights: [T, H] float32 head weights (float mode:
    weights_proj * H^-0.5; fp8: also the query scale and 128^-0.5). keys: float
    rows [S, 128] (float) or SGLang's index-K pages [pages, page * 132] uint8 (fp8).
    rows / visible: [T] request row and causal limit of each query token;
    visible_cpu: the same on the host, or None inside a CUDA graph, where the
    scores are `capacity` wide (the pool's longest request) and only the Triton
    tier serves (no host read).
    """

    q: torch.Tensor
    weights: torch.Tensor
    keys: torch.Tensor
    req_to_token: torch.Tensor
    rows: torch.Tensor
    visible: torch.Tensor
    visible_cpu: list[int] | None
    scale: float  # float mode's 128^-0.5 (folded into weights in fp8 mode)
    topk: int  # positions kept per query token (index_topk)
    fp8_page: int = 0  # the index-K pool's page size in fp8 mode, 0 in float mode
    capacity: int | None = None  # score columns when visible_cpu is None

    @property
    def width(self) -> int:
        if self.visible_cpu is None:
            if self.capacity is None:
                raise ValueError("IndexerCall: without host lengths the capacity sets the width")
            return self.capacity
        return max(self.visible_cpu, default=0)


@dataclass
class SparseCall:
    """Attention of q [T, Hq, Dqk] over the pool rows `topk` [T, K] picks for each
    query token (positions in request rows[t], -1 none); writes out [T, Hq, Dv]."""

    q: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    req_to_token: torch.Tensor
    rows: torch.Tensor
    rows_cpu: list[int] | None  # None inside a CUDA graph (the Triton tier serves)
    topk: torch.Tensor
    scale: float
    out: torch.Tensor


def token_rows_and_visible(
    req_pool_indices: torch.Tensor, kv_lens_cpu: list[int], qo_lens_cpu: list[int]
) -> tuple[torch.Tensor, list[int], torch.Tensor, list[int]]:
    """Per query token of a batch laid out request after request (qo_lens_cpu[b] new
    tokens ending at kv_lens_cpu[b]): its request row ([T] device and host) and how
    many leading positions it may see, its own position + 1 ([T] device and host)."""
    rows_cpu = [r for r, n in zip(req_pool_indices.tolist(), qo_lens_cpu, strict=True)
                for _ in range(n)]  # fmt: skip
    visible_cpu = [kv - qo + j + 1 for kv, qo in zip(kv_lens_cpu, qo_lens_cpu, strict=True)
                   for j in range(qo)]  # fmt: skip
    device = req_pool_indices.device
    rows = torch.tensor(rows_cpu, dtype=torch.int64, device=device)
    visible = torch.tensor(visible_cpu, dtype=torch.int32, device=device)
    return rows, rows_cpu, visible, visible_cpu


def graph_rows_and_visible(
    req_pool_indices: torch.Tensor, kv_lens: torch.Tensor, new_tokens: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of `new_tokens` query tokens a request (decode: 1; a chain target
    verify: the draft width), the last ending at kv_lens[b], laid out request after
    request on the device alone, for a CUDA graph: rows [B * n] int64, visible
    [B * n] int32 (token j of request b sees kv_lens[b] - n + j + 1 positions)."""
    n = new_tokens
    rows = req_pool_indices.to(torch.int64)
    if n == 1:
        return rows, kv_lens.to(torch.int32)
    step = torch.arange(1 - n, 1, dtype=torch.int32, device=kv_lens.device)
    visible = kv_lens.to(torch.int32)[:, None] + step
    return rows[:, None].expand(-1, n).reshape(-1), visible.reshape(-1)


def indexer_inputs(
    q: torch.Tensor, k: torch.Tensor, weights: torch.Tensor, *, fp8: bool, round_scale: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """From the indexer's q [T, H, 128] and k [N, 128] (RoPE applied) and its
    weights_proj output [T, H]: (queries, head weights, keys to store, key scales)
    as the mode scores them. Float: H^-0.5 folded into the weights (HF); fp8:
    `index_k_cache.fp8_indexer_inputs` (Hadamard, block-128 float8, every scale
    folded into the weights)."""
    if fp8:
        q8, w, k8, k_scale = fp8_indexer_inputs(q, k, weights, round_scale=round_scale)
        return q8, w, k8, k_scale
    return q, weights.float() * q.shape[1] ** -0.5, k, None


def store_keys(
    keys: torch.Tensor, loc: torch.Tensor, k: torch.Tensor, k_scale: torch.Tensor | None,
    fp8_page: int,
) -> None:  # fmt: skip
    """The new tokens' index keys k [N, 128] into the store at slots loc [N]: float
    rows (float mode), or float8 keys with their scales into SGLang's pages (fp8)."""
    if fp8_page:
        store_index_k(keys, loc, k, k_scale, fp8_page)
    else:
        keys[loc.long()] = k.to(keys.dtype)


# ----------------------------------------------------------------- tier entries
def indexer_triton(call: IndexerCall) -> torch.Tensor:
    """[T, topk] int32: the scores kernel, then the radix-select top-k (`topk.py`)."""
    from sglang_amd.attention.indexer import indexer_logits, indexer_logits_fp8
    from sglang_amd.attention.topk import topk_positions

    if call.fp8_page:
        scores = indexer_logits_fp8(call.q, call.weights, call.keys, call.fp8_page,
                                    call.req_to_token, call.rows, call.visible,
                                    width=call.width)  # fmt: skip
    else:
        scores = indexer_logits(call.q, call.weights, call.keys, call.req_to_token, call.rows,
                                call.visible, scale=call.scale, width=call.width)  # fmt: skip
    return topk_positions(scores, call.topk)


def indexer_triton_refusal(call: IndexerCall) -> str | None:
    dim = call.q.shape[2]
    if dim & (dim - 1):
        return f"indexer head dim {dim} is not a power of two"
    return None


def _host_lengths_refusal(missing: bool) -> str | None:
    if missing:
        return (
            "the torch tier reads lengths on the host, which a CUDA graph would freeze; "
            "start with --disable-cuda-graph"
        )
    return None


def indexer_torch_refusal(call: IndexerCall) -> str | None:
    return _host_lengths_refusal(call.visible_cpu is None)


def sparse_torch_refusal(call: SparseCall) -> str | None:
    return _host_lengths_refusal(call.rows_cpu is None)


def indexer_torch(call: IndexerCall) -> torch.Tensor:
    """[T, topk] int32: the reference scores, then `select_topk` (a stable sort)."""
    from sglang_amd.attention.reference import (
        indexer_logits_fp8_reference,
        indexer_logits_reference,
    )

    if call.fp8_page:
        scores = indexer_logits_fp8_reference(call.q, call.weights, call.keys, call.fp8_page,
                                              call.req_to_token, call.rows, call.visible_cpu)  # fmt: skip
    else:
        scores = indexer_logits_reference(call.q, call.weights, call.keys, call.req_to_token,
                                          call.rows, call.visible_cpu, scale=call.scale)  # fmt: skip
    return select_topk(scores, call.topk)


def sparse_triton(call: SparseCall) -> torch.Tensor:
    from sglang_amd.attention.sparse import sparse_attention

    return sparse_attention(call.q, call.k_cache, call.v_cache, call.req_to_token, call.rows,
                            call.topk, scale=call.scale, out=call.out)  # fmt: skip


def sparse_triton_refusal(call: SparseCall) -> str | None:
    from sglang_amd.attention.decode import unsupported_reason

    return unsupported_reason(call.q, call.k_cache, call.v_cache)


def sparse_torch(call: SparseCall) -> torch.Tensor:
    from sglang_amd.attention.reference import sparse_attention_reference

    return sparse_attention_reference(call.q, call.k_cache, call.v_cache, call.req_to_token,
                                      call.rows_cpu, call.topk, scale=call.scale, out=call.out)  # fmt: skip
