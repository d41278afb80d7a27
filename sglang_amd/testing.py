"""Shared helpers for tests and benchmarks: paged-KV batches and comparisons.

Builds the SGLang-shaped inputs every attention tier takes (a KV pool with
scattered slots, `req_to_token`, packed queries) from a list of (prefix, new)
lengths, so kernel tests and benchmarks describe a batch in one line.
Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_amd.attention.reference import paged_attention_reference

POISON = float("nan")


@dataclass
class PagedBatch:
    """One attention batch in SGLang's layout (see attention/reference.py)."""

    q: torch.Tensor  # [T, Hq, D]
    k_cache: torch.Tensor  # [S, Hkv, D]
    v_cache: torch.Tensor  # [S, Hkv, Dv]
    req_to_token: torch.Tensor  # [R, max_context] int32
    req_pool_indices: torch.Tensor  # [B] int64
    kv_lens: torch.Tensor  # [B] int64
    qo_lens: torch.Tensor  # [B] int64

    @property
    def num_tokens(self) -> int:
        return self.q.shape[0]


def make_paged_batch(
    seqs: list[tuple[int, int]],
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    v_head_dim: int | None = None,
    *,
    page_size: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    spare_rows: int = 3,
) -> PagedBatch:
    """A random batch: sequence b has `seqs[b] = (prefix_len, new_len)` tokens.

    Slots are allocated page by page in a shuffled order, so each sequence's
    tokens are scattered through the pool as after real radix-cache churn; the
    request rows are shuffled too. Unused pool rows hold random data that a
    correct kernel never reads.
    """
    v_head_dim = v_head_dim or head_dim
    g = generator or torch.Generator().manual_seed(0)
    batch = len(seqs)
    kv_lens = [p + n for p, n in seqs]
    pages_per_seq = [-(-kv // page_size) for kv in kv_lens]
    total_pages = sum(pages_per_seq) + 4
    page_order = torch.randperm(total_pages, generator=g).tolist()
    num_rows = batch + spare_rows
    max_context = max(kv_lens) + page_size
    req_to_token = torch.zeros(num_rows, max_context, dtype=torch.int32)
    rows = torch.randperm(num_rows, generator=g)[:batch]
    cursor = 0
    for b, kv in enumerate(kv_lens):
        pages = page_order[cursor : cursor + pages_per_seq[b]]
        cursor += pages_per_seq[b]
        slots = torch.cat([torch.arange(p * page_size, (p + 1) * page_size) for p in pages])
        req_to_token[rows[b], :kv] = slots[:kv].to(torch.int32)
    num_slots = total_pages * page_size

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dtype)

    total_q = sum(n for _, n in seqs)
    return PagedBatch(
        q=rand(total_q, num_q_heads, head_dim).to(device),
        k_cache=rand(num_slots, num_kv_heads, head_dim).to(device),
        v_cache=rand(num_slots, num_kv_heads, v_head_dim).to(device),
        req_to_token=req_to_token.to(device),
        req_pool_indices=rows.to(torch.int64).to(device),
        kv_lens=torch.tensor(kv_lens, dtype=torch.int64, device=device),
        qo_lens=torch.tensor([n for _, n in seqs], dtype=torch.int64, device=device),
    )


def reference_attention(
    batch: PagedBatch, scale: float, v_cache: torch.Tensor | None = None, **kw
) -> torch.Tensor:
    """The torch tier on `batch` (v_cache overrides, e.g. an MLA latent view);
    keyword arguments as in `paged_attention_reference`."""
    return paged_attention_reference(
        batch.q,
        batch.k_cache,
        batch.v_cache if v_cache is None else v_cache,
        batch.req_to_token,
        batch.req_pool_indices,
        batch.kv_lens,
        batch.qo_lens,
        scale=scale,
        **kw,
    )


def poisoned_like(t: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """An output buffer full of NaN, so any element a kernel forgets shows."""
    return torch.full(shape or t.shape, POISON, dtype=t.dtype, device=t.device)


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """assert_close tolerances that fit the storage dtype."""
    if dtype == torch.float32:
        return {"atol": 1e-5, "rtol": 1e-5}
    if dtype in (torch.bfloat16, torch.float16):
        return {"atol": 1e-2, "rtol": 1e-2}
    raise ValueError(f"no tolerance for {dtype}")


def capture_cuda_graph(launch) -> torch.cuda.CUDAGraph:
    """Warm `launch` up on a side stream (compiles its kernels), then capture it
    the way SGLang's graph runners do; `.replay()` reruns it on the same buffers."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        launch()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        launch()
    return graph
