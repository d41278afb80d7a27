"""`sglang-amd bench dsa`: DeepSeek-V3.2's sparse attention (DSA) decode, piece by piece.

A decode step of a DSA layer is the lightning indexer (score every position of the
request, keep the top index_topk) then attention over the picked latent rows. Each
case times one piece on DeepSeek-V3.2's shapes (64 index heads of 128; latent
512 + 64; 128 query heads at tp 1, 16 at tp 8; top 2048) over a paged pool with
scattered pages, cache-cold, in a CUDA graph where it can be captured
(`roofline.time_replayed`), and rates it in GB/s of what the piece must read
(the roofline: memory-bound at decode):
- "sparse": our `attention.sparse` (the tier serving this device) over a random top-2048 table; peer
  SGLang's Triton sparse MLA decode (`triton_sparse_mla_decode_splitk`, its DSA
  backend on ROCm) on the same rows; variant our dense MLA decode over the whole
  context (what the indexer saves). Ideal: each picked latent row once, q and out.
- "indexer": our FP8 indexer scores and their top-k (`attention.indexer`: on
  Triton a radix select, `topk.py`); peer the same
  math in torch over the dequantized cache (gather, matmul, ReLU, top-k); variant
  our float mode (bf16 keys, HF's math). Ideal: each index key and scale once.
Imports sglang only through `bench/sglang_peers.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_amd.attention import dsa
from sglang_amd.attention.index_k_cache import (
    INDEX_HEAD_DIM,
    index_k_cache_bytes_per_page,
    load_index_k,
)
from sglang_amd.bench.report import Row
from sglang_amd.bench.roofline import CacheFlush, Candidate, ceilings, time_candidates
from sglang_amd.bench.sglang_peers import sglang_sparse_mla_peer
from sglang_amd.testing import make_paged_batch
from sglang_amd.tiers import Tier, TieredOp

KV_LORA, ROPE, PAGE = 512, 64, 64


@dataclass(frozen=True)
class Case:
    piece: str  # "sparse" or "indexer"
    batch: int
    context: int
    heads: int = 16  # query heads (sparse) or index heads (indexer)
    topk: int = 2048

    @property
    def label(self) -> str:
        what = f"h{self.heads}" if self.piece == "sparse" else f"{self.heads} index heads"
        return f"decode dsa-{self.piece} b{self.batch} ctx{self.context} {what} top{self.topk}"


GPU_CASES = [
    Case("sparse", 1, 65536, 128),
    Case("sparse", 8, 65536, 16),
    Case("sparse", 64, 8192, 16),
    Case("sparse", 64, 8192, 128),
    Case("indexer", 1, 65536, 64),
    Case("indexer", 8, 65536, 64),
    Case("indexer", 64, 8192, 64),
]
SMOKE_CASES = [  # the plumbing only (interpreted Triton on CPU): the smallest shapes
    Case("sparse", 1, 64, 4, topk=16),
    Case("indexer", 1, 64, 4, topk=16),
]


def _table(b, case: Case, g: torch.Generator) -> torch.Tensor:
    """[B, topk] distinct random positions of each request (what an indexer picks)."""
    picks = [torch.randperm(case.context, generator=g)[: case.topk] for _ in range(case.batch)]
    return torch.stack(picks).to(torch.int32).to(b.q.device)


def _sparse(case: Case, dtype, device) -> list[Candidate]:
    b = make_paged_batch([(case.context - 1, 1)] * case.batch, case.heads, 1, KV_LORA + ROPE,
                         KV_LORA, page_size=PAGE, dtype=dtype, device=device)  # fmt: skip
    g = torch.Generator().manual_seed(case.batch)
    topk = _table(b, case, g)
    v = b.k_cache[..., :KV_LORA]
    scale = (128 + ROPE) ** -0.5
    rows = b.req_pool_indices
    slots = torch.gather(b.req_to_token[rows.long()], 1, topk.long()).to(torch.int32)
    sparse = TieredOp("attention.sparse", device)
    out = b.q.new_empty(case.batch, case.heads, KV_LORA)
    call = dsa.SparseCall(b.q, b.k_cache, v, b.req_to_token, rows, rows.tolist(), topk, scale,
                          out)  # fmt: skip
    peer, note = sglang_sparse_mla_peer(b.q, b.k_cache, slots, scale, KV_LORA)
    found = [
        (f"amd {sparse.tier.value}", lambda: sparse(call), "", "ours"),
        ("sglang triton sparse mla", peer, note, "peer"),
    ]
    if sparse.tier is Tier.TRITON:
        from sglang_amd.attention.decode import paged_decode

        found.append(("amd dense mla (whole context)", lambda: paged_decode(
            b.q, b.k_cache, v, b.req_to_token, rows, b.kv_lens, scale=scale,
            max_kv_len=case.context), "variant: reads every row", "variant"))  # fmt: skip
    return found


def _indexer(case: Case, dtype, device) -> list[Candidate]:
    b = make_paged_batch([(case.context - 1, 1)] * case.batch, 1, 1, 8, page_size=PAGE,
                         dtype=dtype, device=device)  # fmt: skip
    g = torch.Generator(device=device).manual_seed(case.batch)
    slots = -(-b.k_cache.shape[0] // PAGE) * PAGE  # the pool's rows, whole pages
    keys = torch.randn(slots, INDEX_HEAD_DIM, device=device, generator=g)
    q = torch.randn(case.batch, case.heads, INDEX_HEAD_DIM, device=device, generator=g)
    w = torch.randn(case.batch, case.heads, device=device, generator=g)
    # Power-of-two scales, as SGLang builds every DeepSeek indexer (ue8m0).
    q8, w8, k8, k_scale = dsa.indexer_inputs(q, keys, w, fp8=True, round_scale=True)
    cache = torch.zeros(slots // PAGE, index_k_cache_bytes_per_page(PAGE), dtype=torch.uint8,
                        device=device)  # fmt: skip
    dsa.store_keys(cache, torch.arange(slots, device=device), k8, k_scale, PAGE)
    rows = b.req_pool_indices
    visible = b.kv_lens.to(torch.int32)
    visible_cpu = visible.tolist()
    width = case.context
    indexer = TieredOp("attention.indexer", device)
    fp8_call = dsa.IndexerCall(q8, w8, cache, b.req_to_token, rows, visible, visible_cpu,
                               INDEX_HEAD_DIM**-0.5, case.topk, PAGE)  # fmt: skip
    qf, wf, kf, _ = dsa.indexer_inputs(q.to(dtype), keys.to(dtype), w, fp8=False)
    float_call = dsa.IndexerCall(qf, wf, kf, b.req_to_token, rows, visible, visible_cpu,
                                 INDEX_HEAD_DIM**-0.5, case.topk)  # fmt: skip
    slot_rows = b.req_to_token[rows.long(), :width].long()

    def torch_fp8() -> torch.Tensor:
        k, s = load_index_k(cache, slot_rows.reshape(-1), PAGE)
        k = k.float().view(case.batch, width, -1)
        scores = torch.relu(torch.einsum("bhd,bnd->bhn", q8.float(), k)) * s.view(case.batch, 1, -1)
        return torch.topk(torch.einsum("bh,bhn->bn", w8, scores), case.topk, dim=1).indices

    tier = indexer.tier.value
    return [
        (f"amd {tier} fp8", lambda: indexer(fp8_call), "", "ours"),
        ("torch fp8 (gather + matmul + topk)", torch_fp8, "", "peer"),
        (
            f"amd {tier} float ({dtype_name(dtype)} keys, HF's math)",
            lambda: indexer(float_call),
            f"variant: reads {dtype.itemsize} B a value",
            "variant",
        ),  # fmt: skip
    ]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _ideal_bytes(case: Case, dtype: torch.dtype) -> int:
    """What the piece must read: the picked latent rows (sparse) or every index key
    with its scale (indexer), once per request."""
    if case.piece == "sparse":
        return case.batch * case.topk * (KV_LORA + ROPE) * dtype.itemsize
    return case.batch * case.context * (INDEX_HEAD_DIM + 4)


def run(cases: list[Case], device: torch.device, dtype: torch.dtype) -> dict:
    """Measure every case; returns the copy ceiling, how calls were timed, and rows."""
    flush = CacheFlush(device)
    measured = ceilings(device, flush)
    rows: list[Row] = []
    for case in cases:
        build = _sparse if case.piece == "sparse" else _indexer
        work = _ideal_bytes(case, dtype)
        rows += time_candidates(case.label, build(case, dtype, device), work, device, flush)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"ceilings": measured, "timing": flush.describe(), "rows": rows}
