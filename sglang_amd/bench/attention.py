"""`sglang-amd bench attention`: paged decode and extend against peers.

Ours runs on a paged KV pool with scattered pages (what serving sees). Peers get
their easiest layout (dense, contiguous K/V), so a ratio >= 1 is conservative:
torch SDPA and flex_attention always; FlashInfer's paged decode when importable.
SGLang's own Triton attention (its default backend's kernels) runs on the same
paged pool as ours (`bench/sglang_peers.py`).
Decode is judged in GB/s of KV read against measured copy bandwidth, extend in
TFLOP/s against the measured bf16 matmul peak. Every call of ours and of each peer
is timed cache-cold (`roofline.CacheFlush` before each timed call), so a KV cache
smaller than the device's cache is read from memory, as the ceiling is. On a GPU
each is captured in a CUDA graph and timed over replays, as SGLang serves decode
and verify (no host launch cost inside the span, which at batch 1 can rival the
kernel); one that cannot be captured is timed eagerly and its note says so.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sglang_amd.attention.reference import paged_attention_reference
from sglang_amd.bench.report import Row
from sglang_amd.bench.roofline import CacheFlush, ceilings, time_candidates
from sglang_amd.bench.sglang_peers import sglang_attention_peer
from sglang_amd.testing import PagedBatch, make_paged_batch
from sglang_amd.tiers import Tier, select


@dataclass(frozen=True)
class Case:
    kind: str  # "decode" or "extend"
    batch: int
    prefix: int
    new: int
    heads: tuple[int, int]
    head_dim: int
    v_head_dim: int | None = None

    @property
    def label(self) -> str:
        hq, hkv = self.heads
        dims = f"d{self.head_dim}" + (f"/{self.v_head_dim}" if self.v_head_dim else "")
        return f"{self.kind} b{self.batch} ctx{self.prefix + self.new} h{hq}/{hkv} {dims}"


GPU_CASES = [
    Case("decode", 1, 8191, 1, (32, 8), 128),
    Case("decode", 8, 8191, 1, (32, 8), 128),
    Case("decode", 8, 32767, 1, (32, 8), 128),
    Case("decode", 64, 4095, 1, (32, 8), 128),
    Case("decode", 8, 8191, 1, (16, 1), 576, 512),
    Case("extend", 1, 0, 4096, (32, 8), 128),
    Case("extend", 1, 4096, 4096, (32, 8), 128),
    Case("extend", 4, 0, 1024, (32, 8), 128),
]
SMOKE_CASES = [
    Case("decode", 2, 63, 1, (4, 2), 32),
    Case("extend", 1, 16, 16, (4, 2), 32),
]


def _kv_bytes(case: Case, b: PagedBatch) -> int:
    per_token = b.k_cache.shape[1] * (b.k_cache.shape[2] + b.v_cache.shape[2])
    mla = case.v_head_dim is not None and case.v_head_dim < case.head_dim
    if mla:  # V aliases K: each latent row is read once
        per_token = b.k_cache.shape[1] * b.k_cache.shape[2]
    return case.batch * (case.prefix + case.new) * per_token * b.k_cache.element_size()


def _flops(case: Case) -> float:
    hq = case.heads[0]
    dv = case.v_head_dim or case.head_dim
    pairs = case.new * case.prefix + case.new * (case.new + 1) / 2
    return case.batch * hq * pairs * 2 * (case.head_dim + dv)


def _ours(case: Case, b: PagedBatch) -> tuple[str, Callable[[], object]]:
    scale = case.head_dim**-0.5
    v = b.k_cache[..., : case.v_head_dim] if case.v_head_dim else b.v_cache
    tier = select(f"attention.{case.kind}", b.q.device).tier
    if tier is Tier.TRITON and case.kind == "decode":
        from sglang_amd.attention.decode import paged_decode

        max_kv = case.prefix + case.new
        return "amd triton", lambda: paged_decode(
            b.q,
            b.k_cache,
            v,
            b.req_to_token,
            b.req_pool_indices,
            b.kv_lens,
            scale=scale,
            max_kv_len=max_kv,
        )
    if tier is Tier.TRITON:
        from sglang_amd.attention.extend import paged_extend

        qo = [case.new] * case.batch
        kv = [case.prefix + case.new] * case.batch
        plans: dict = {}  # planned by the warm-up call, as by a forward's first layer
        return "amd triton", lambda: paged_extend(
            b.q,
            b.k_cache,
            v,
            b.req_to_token,
            b.req_pool_indices,
            b.kv_lens,
            b.qo_lens,
            scale=scale,
            qo_lens_cpu=qo,
            kv_lens_cpu=kv,
            plans=plans,
        )
    rows, kv, qo = b.req_pool_indices.tolist(), b.kv_lens.tolist(), b.qo_lens.tolist()
    return "amd torch", lambda: paged_attention_reference(
        b.q, b.k_cache, v, b.req_to_token, rows, kv, qo, scale=scale
    )


def _dense(case: Case, b: PagedBatch):
    """Peers' layout: q [B, Hq, new, D], k/v [B, Hkv, ctx, D] contiguous."""
    ctx = case.prefix + case.new
    q = b.q.view(case.batch, case.new, *b.q.shape[1:]).transpose(1, 2).contiguous()
    gen = torch.Generator(device=b.q.device).manual_seed(1)
    hkv = case.heads[1]
    dv = case.v_head_dim or case.head_dim
    k = torch.randn(case.batch, hkv, ctx, case.head_dim, device=b.q.device, generator=gen).to(
        q.dtype
    )
    v = k[..., :dv] if case.v_head_dim else torch.randn_like(k)
    return q, k, v


def _peers(case: Case, b: PagedBatch) -> list[tuple[str, Callable[[], object] | None, str]]:
    q, k, v = _dense(case, b)
    scale = case.head_dim**-0.5
    mask = None
    if case.kind == "extend" and case.prefix:
        from torch.nn.attention.bias import causal_lower_right

        mask = causal_lower_right(case.new, case.prefix + case.new)
    causal = case.kind == "extend" and not case.prefix
    peers: list[tuple[str, Callable[[], object] | None, str]] = [
        (
            "torch sdpa",
            lambda: F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=True
            ),
            "",
        )
    ]
    fn, note = sglang_attention_peer(case.kind, b, scale, case.v_head_dim)
    peers.append(("sglang triton", fn, note))
    if b.q.device.type == "cuda":
        peers.append(_flex_peer(case, q, k, v, scale))
        peers.append(_flashinfer_peer(case, b, scale))
    return peers


def _flex_peer(case, q, k, v, scale):
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
        block_mask = None
        if case.kind == "extend":
            offset = case.prefix

            def causal(b, h, qi, ki):
                return ki <= qi + offset

            block_mask = create_block_mask(
                causal, None, None, case.new, case.prefix + case.new, device=q.device
            )
        return (
            "flex_attention",
            lambda: flex(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=True),
            "",
        )
    except Exception as exc:  # an unsupported shape is reported, not fatal
        return ("flex_attention", None, f"unavailable: {type(exc).__name__}: {exc}"[:120])


def _flashinfer_peer(case, b, scale):
    if case.kind != "decode" or case.v_head_dim:
        return ("flashinfer", None, "not run: peer covers MHA/GQA paged decode only")
    if importlib.util.find_spec("flashinfer") is None:
        return ("flashinfer", None, "not installed")
    try:
        import flashinfer

        page = 16
        ctx = case.prefix + case.new
        pages = -(-ctx // page)
        hkv, d = case.heads[1], case.head_dim
        kv = torch.randn(case.batch * pages, 2, page, hkv, d, device=b.q.device).to(b.q.dtype)
        indptr = torch.arange(0, case.batch + 1, device=b.q.device, dtype=torch.int32) * pages
        indices = torch.randperm(case.batch * pages, device=b.q.device).to(torch.int32)
        last = torch.full(
            (case.batch,), ctx - (pages - 1) * page, dtype=torch.int32, device=b.q.device
        )
        ws = torch.empty(128 << 20, dtype=torch.uint8, device=b.q.device)
        wrapper = flashinfer.BatchDecodeWithPagedKVCacheWrapper(ws, "NHD")
        wrapper.plan(indptr, indices, last, case.heads[0], hkv, d, page, q_data_type=b.q.dtype)
        return ("flashinfer", lambda: wrapper.run(b.q, kv), "")
    except Exception as exc:
        return ("flashinfer", None, f"unavailable: {type(exc).__name__}: {exc}"[:120])


def run(cases: list[Case], device: torch.device, dtype: torch.dtype, page_size: int) -> dict:
    """Measure every case; returns ceilings, how calls were timed, and rows for `report`."""
    flush = CacheFlush(device)
    measured = ceilings(device, flush)
    rows: list[Row] = []
    for case in cases:
        batch = make_paged_batch(
            [(case.prefix, case.new)] * case.batch,
            *case.heads,
            case.head_dim,
            case.v_head_dim,
            page_size=page_size,
            dtype=dtype,
            device=device,
        )
        work = _kv_bytes(case, batch) if case.kind == "decode" else _flops(case)
        name, fn = _ours(case, batch)
        candidates = [(name, fn, "", "ours")]
        candidates += [(impl, fn, note, "peer") for impl, fn, note in _peers(case, batch)]
        rows += time_candidates(case.label, candidates, work, device, flush)
        del batch
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"ceilings": measured, "timing": flush.describe(), "rows": rows}
