"""Token maps and verify masks of the speculative modes (attention/spec_layout.py).

Each map is checked against a plain loop written from SGLang 0.5.23's layout
(`generate_draft_decode_kv_indices`, `prepare_for_draft`, the verify window), on
random slot tables; then a verify step through the map and tree mask is checked
against dense attention over the K/V gathered by hand.
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.attention.reference import paged_attention_reference
from sglang_amd.attention.spec_layout import (
    draft_decode_token_map,
    full_verify_mask,
    prefix_plus_new_token_map,
)
from tests.hypothesis_compat import given, settings, st

POISON = -7


def _random_table(gen, rows=6, cols=96):
    return torch.randperm(rows * cols, generator=gen)[: rows * cols].view(rows, cols).int()


@settings(max_examples=25, deadline=None)
@given(
    lens=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9)), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_prefix_plus_new_map_matches_loop(lens, seed):
    gen = torch.Generator().manual_seed(seed)
    table = _random_table(gen)
    rows = torch.randperm(table.shape[0], generator=gen)[: len(lens)]
    prefix = [p for p, _ in lens]
    qo = [q for _, q in lens]
    new_locs = torch.randint(5000, 6000, (sum(qo),), generator=gen)
    got = prefix_plus_new_token_map(table, rows, prefix, qo, new_locs)
    assert got.dtype == torch.int32 and got.shape == (len(lens), max(p + q for p, q in lens))
    offset = 0
    for b, (p, q) in enumerate(lens):
        want = torch.cat([table[rows[b], :p].long(), new_locs[offset : offset + q]])
        assert torch.equal(got[b, : p + q].long(), want)
        offset += q


def _draft_loop(table, rows, seq_lens, topk, num_steps, step, page_size):
    """SGLang's generate_draft_decode_kv_indices, one branch at a time."""
    out = []
    for b, s in enumerate(seq_lens):
        for t in range(topk):
            if page_size == 1 or topk == 1:
                start = s + t * num_steps
            else:
                last = s % page_size
                pages = (last + num_steps + page_size - 1) // page_size
                start = s // page_size * page_size + t * pages * page_size + last
            cols = list(range(s)) + [start + j for j in range(step + 1)]
            out.append(table[rows[b], cols].long())
    return out


@pytest.mark.parametrize("topk,page_size", [(1, 1), (1, 16), (2, 1), (4, 1), (2, 16), (3, 4)])
@pytest.mark.parametrize("step", [0, 2])
def test_draft_decode_map_matches_sglang_layout(topk, page_size, step):
    gen = torch.Generator().manual_seed(topk * 100 + page_size + step)
    table = _random_table(gen, rows=5, cols=160)
    seq_lens = [1, 17, 33, 5]
    rows = torch.tensor([4, 0, 2, 3])
    got, kv_lens = draft_decode_token_map(
        table, rows, seq_lens, topk=topk, num_steps=3, step=step, page_size=page_size
    )
    want = _draft_loop(table, rows.tolist(), seq_lens, topk, 3, step, page_size)
    assert kv_lens == [len(w) for w in want]
    assert got.shape == (len(seq_lens) * topk, max(kv_lens))
    for row, w in zip(got, want, strict=True):
        assert torch.equal(row[: len(w)].long(), w)


def test_full_verify_mask_widens_draft_only_masks():
    gen = torch.Generator().manual_seed(3)
    prefix, n = [4, 0, 7], 3
    blocks = torch.rand(len(prefix), n, n, generator=gen) > 0.5
    got = full_verify_mask(blocks.reshape(-1), prefix, n)
    offset = 0
    for b, p in enumerate(prefix):
        block = got[offset : offset + n * (p + n)].view(n, p + n)
        assert block[:, :p].all() and torch.equal(block[:, p:], blocks[b])
        offset += n * (p + n)
    assert offset == got.numel()


def test_full_verify_mask_passes_full_masks_and_refuses_packed():
    prefix, n = [2, 5], 2
    full = torch.rand(sum(n * (p + n) for p in prefix) + 9) > 0.5  # a larger buffer
    assert torch.equal(full_verify_mask(full, prefix, n), full[: full.numel() - 9])
    assert full_verify_mask(None, prefix, n) is None
    with pytest.raises(NotImplementedError, match="bit-packed"):
        full_verify_mask(torch.zeros(4, dtype=torch.uint8), prefix, n)


@pytest.mark.parametrize("heads", [(4, 4), (8, 2)])
def test_verify_through_map_and_tree_mask_matches_dense(heads):
    """Drafts written at out_cache_loc, prefix in req_to_token, a random tree."""
    gen = torch.Generator().manual_seed(heads[0])
    hq, hkv, d, n = *heads, 16, 4
    prefix = [9, 3]
    slots = 64
    k_pool = torch.randn(slots, hkv, d, generator=gen)
    v_pool = torch.randn(slots, hkv, d, generator=gen)
    perm = torch.randperm(slots, generator=gen)
    table = torch.zeros(3, 40, dtype=torch.int32)
    table[0, :9] = perm[:9].int()
    table[2, :3] = perm[9:12].int()
    new_locs = perm[12 : 12 + 2 * n]
    rows = torch.tensor([0, 2])
    # tree: each draft sees itself and a random subset of the drafts before it
    tree = torch.tril(torch.rand(2, n, n, generator=gen) > 0.4) | torch.eye(n, dtype=torch.bool)
    mask = full_verify_mask(tree.reshape(-1), prefix, n)
    q = torch.randn(2 * n, hq, d, generator=gen)
    token_map = prefix_plus_new_token_map(table, rows, prefix, [n, n], new_locs)
    out = torch.full((2 * n, hq, d), float(POISON))
    paged_attention_reference(
        q,
        k_pool,
        v_pool,
        token_map,
        [0, 1],
        [p + n for p in prefix],
        [n, n],
        scale=0.3,
        custom_mask=mask,
        out=out,
    )
    for b, p in enumerate(prefix):
        idx = torch.cat([table[rows[b], :p].long(), new_locs[b * n : (b + 1) * n]])
        k = k_pool[idx].repeat_interleave(hq // hkv, dim=1)
        v = v_pool[idx].repeat_interleave(hq // hkv, dim=1)
        qb = q[b * n : (b + 1) * n]
        scores = torch.einsum("qhd,khd->hqk", qb, k) * 0.3
        allowed = torch.cat([torch.ones(n, p, dtype=torch.bool), tree[b]], dim=1)
        probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        want = torch.einsum("hqk,khd->qhd", probs, v)
        torch.testing.assert_close(out[b * n : (b + 1) * n], want, atol=1e-5, rtol=1e-5)


def test_tensor_lengths_need_a_width():
    """Device lengths never size the map from the device (that would be a sync)."""
    table = torch.zeros(2, 8, dtype=torch.int32)
    rows, lens = torch.tensor([0, 1]), torch.tensor([3, 4])
    with pytest.raises(ValueError, match="width or out"):
        prefix_plus_new_token_map(table, rows, lens, lens, torch.arange(7))
    with pytest.raises(ValueError, match="pass out"):
        draft_decode_token_map(table, rows, lens, topk=1, num_steps=2, step=0, page_size=1)
    out = torch.full((2, 9), POISON, dtype=torch.int32)
    got = prefix_plus_new_token_map(
        table, rows, lens, torch.tensor([1, 1]), torch.arange(2), out=out
    )
    assert got.shape == (2, 9) and got.data_ptr() == out.data_ptr()
