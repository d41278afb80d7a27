"""Top-k sparse attention (DSA, issue 14): the Triton tier against the torch reference.

Sparse attention over every position equals dense attention; over a subset it
equals dense attention with the other tokens masked; -1 entries anywhere in a
row select nothing; a row that selects nothing is zero. Each query token is its
own row (decode: one per request; extend: each new token, with the causal limit
applied by whoever chose the positions). Outputs start poisoned (NaN).
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.attention.decode import paged_decode
from sglang_amd.attention.opt_flags import DecodeFlags
from sglang_amd.attention.reference import paged_attention_reference, sparse_attention_reference
from sglang_amd.attention.sparse import sparse_attention
from sglang_amd.testing import make_paged_batch, poisoned_like, tolerance

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (q heads, kv heads, qk dim, v dim, v aliases k): GQA, MLA at 16 and 128 heads.
SHAPES = [(8, 2, 64, 64, False), (16, 1, 576, 512, True), (128, 1, 576, 512, True)]


def _batch(seed: int, lens: list[int], shape, dtype):
    hq, hkv, dqk, dv, alias = shape
    g = torch.Generator().manual_seed(seed)
    batch = make_paged_batch([(n - 1, 1) for n in lens], hq, hkv, dqk, None if alias else dv,
                             dtype=dtype, device=DEVICE, generator=g)  # fmt: skip
    v = batch.k_cache[..., :dv] if alias else batch.v_cache
    return batch, v, g


def _run(batch, v, topk, rows, scale=0.09, flags=None):
    out = poisoned_like(batch.q, (topk.shape[0], batch.q.shape[1], v.shape[2]))
    q = batch.q[: topk.shape[0]] if batch.q.shape[0] >= topk.shape[0] else None
    got = sparse_attention(q, batch.k_cache, v, batch.req_to_token, rows, topk, scale=scale,
                           out=out, flags=flags)  # fmt: skip
    assert got is out
    return got


FULL = pytest.mark.full  # repetitions: make test-full


@pytest.mark.parametrize(
    "shape,dtype",
    [(s, torch.float32) for s in SHAPES]
    + [pytest.param(SHAPES[1], torch.bfloat16)]
    + [pytest.param(s, torch.bfloat16, marks=FULL) for s in (SHAPES[0], SHAPES[2])],
)
def test_all_positions_selected_is_dense_decode(shape, dtype):
    """top-k >= context: the padded table (-1 after the context) gives dense decode."""
    lens = [7, 40, 19]
    batch, v, _ = _batch(1, lens, shape, dtype)
    width = 48
    topk = torch.full((3, width), -1, dtype=torch.int32)
    for b, n in enumerate(lens):
        topk[b, :n] = torch.randperm(n, generator=torch.Generator().manual_seed(b))
    got = _run(batch, v, topk.to(DEVICE), batch.req_pool_indices)
    dense = paged_decode(batch.q, batch.k_cache, v, batch.req_to_token, batch.req_pool_indices,
                         batch.kv_lens, scale=0.09)  # fmt: skip
    torch.testing.assert_close(got, dense, **tolerance(dtype))


@pytest.mark.parametrize(
    "shape,seed",
    [(s, 0) for s in SHAPES] + [pytest.param(s, n, marks=FULL) for s in SHAPES for n in (1, 2)],
)
def test_a_subset_is_dense_attention_with_the_rest_masked(shape, seed):
    """Random subsets, -1 entries scattered anywhere in the row, K not a tile multiple."""
    lens = [33, 70]
    batch, v, g = _batch(seed, lens, shape, torch.float32)
    width = 21
    topk = torch.full((2, width), -1, dtype=torch.int32)
    for b, n in enumerate(lens):
        chosen = torch.randperm(n, generator=g)[: width - 5]
        slots = torch.randperm(width, generator=g)[: chosen.numel()]
        topk[b, slots] = chosen.int()
    topk = topk.to(DEVICE)
    got = _run(batch, v, topk, batch.req_pool_indices)
    want = sparse_attention_reference(batch.q, batch.k_cache, v, batch.req_to_token,
                                      batch.req_pool_indices, topk, scale=0.09)  # fmt: skip
    torch.testing.assert_close(got, want, **tolerance(torch.float32))
    # The same thing said as dense attention under a mask (an independent route).
    for b, n in enumerate(lens):
        keep = torch.zeros(n, dtype=torch.bool)
        keep[topk[b][topk[b] >= 0].long().cpu()] = True
        mask = keep[None, :]  # one query row (the newest token) over n keys
        dense = paged_attention_reference(
            batch.q[b : b + 1], batch.k_cache, v, batch.req_to_token,
            batch.req_pool_indices[b : b + 1], [n], [1], scale=0.09,
            custom_mask=mask.flatten().to(DEVICE),
        )  # fmt: skip
        torch.testing.assert_close(got[b : b + 1], dense, **tolerance(torch.float32))


def test_extend_rows_each_attend_to_their_own_selection():
    """Extend: every new token of a request is a row with its own (causal) choice."""
    shape = (16, 1, 576, 512, True)
    batch, v, g = _batch(5, [90], shape, torch.float32)
    new = 6
    q = torch.randn(new, 16, 576, generator=g).to(DEVICE)
    rows = batch.req_pool_indices[:1].repeat(new)
    width = 16
    topk = torch.full((new, width), -1, dtype=torch.int32)
    for t in range(new):
        visible = 90 - new + t + 1  # the causal limit of new token t
        pick = torch.randperm(visible, generator=g)[:width]
        topk[t, : pick.numel()] = pick.int()
    topk = topk.to(DEVICE)
    out = poisoned_like(q, (new, 16, 512))
    got = sparse_attention(q, batch.k_cache, v, batch.req_to_token, rows, topk, scale=0.05, out=out)
    want = sparse_attention_reference(q, batch.k_cache, v, batch.req_to_token, rows, topk,
                                      scale=0.05)  # fmt: skip
    torch.testing.assert_close(got, want, **tolerance(torch.float32))


@pytest.mark.parametrize("splits", [1, 3, 8])
def test_rows_that_select_nothing_are_zero_for_any_split_count(splits):
    shape = (8, 2, 64, 64, False)
    batch, v, _ = _batch(2, [12, 30], shape, torch.float32)
    topk = torch.full((2, 24), -1, dtype=torch.int32)
    topk[1, 5:15] = torch.arange(10, 20, dtype=torch.int32)
    topk = topk.to(DEVICE)
    # 16: tl.dot's smallest tile on a GPU (24 entries still take two tiles).
    flags = DecodeFlags(num_splits=splits, block_h=16, block_n=16, num_warps=4, num_stages=1,
                        min_split_len=1)  # fmt: skip
    got = _run(batch, v, topk, batch.req_pool_indices, flags=flags)
    assert torch.count_nonzero(got[0]) == 0
    want = sparse_attention_reference(batch.q, batch.k_cache, v, batch.req_to_token,
                                      batch.req_pool_indices, topk, scale=0.09)  # fmt: skip
    torch.testing.assert_close(got, want, **tolerance(torch.float32))


def test_bad_tables_are_refused_by_name():
    shape = (8, 2, 64, 64, False)
    batch, v, _ = _batch(3, [4], shape, torch.float32)
    with pytest.raises(ValueError, match=r"topk \(2, 4\) must be \[T=1, K\]"):
        sparse_attention(batch.q, batch.k_cache, v, batch.req_to_token, batch.req_pool_indices,
                         torch.zeros(2, 4, dtype=torch.int32), scale=0.1)  # fmt: skip
    with pytest.raises(ValueError, match="contiguous"):
        sparse_attention(batch.q, batch.k_cache, v, batch.req_to_token, batch.req_pool_indices,
                         torch.zeros(1, 8, dtype=torch.int32)[:, ::2], scale=0.1)  # fmt: skip


def test_sparse_splits_are_capped_by_their_overhead_with_one_head_block():
    from sglang_amd.attention.opt_flags import decode_flags, sparse_flags
    from sglang_amd.target_info import target_for_arch

    for arch in ("gfx942", "gfx950", "sm_90", "sm_100"):
        t = target_for_arch(arch)
        dense = decode_flags(t, 1, 1, 16, 2048, 576, 512)
        capped = sparse_flags(t, 1, 1, 16, 2048, 576, 512)
        # 0.18 x 2048 rows x 1152 bytes over 16 x (513 x 8 + 1152) bytes a split.
        assert (dense.num_splits, capped.num_splits) == (8, 5), arch
        # 128 heads: two 64-head programs already re-read the rows; splits unchanged.
        assert sparse_flags(t, 1, 1, 128, 2048, 576, 512) == decode_flags(t, 1, 1, 128, 2048, 576, 512)
