"""The torch reference tier against an independent dense oracle.

The oracle gathers each sequence's K/V into dense tensors, expands GQA heads and
calls torch's scaled_dot_product_attention in float64 with an explicit mask, so
it shares no code with the paged reference it judges.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sglang_amd.attention.reference import attention_mask, paged_attention_reference
from sglang_amd.testing import make_paged_batch, poisoned_like, reference_attention, tolerance
from tests.hypothesis_compat import given, settings, st


def dense_oracle(batch, scale, *, causal=True, window=None, cap=0.0, custom_mask=None):
    outs = []
    q_start = 0
    m_start = 0
    hq = batch.q.shape[1]
    hkv = batch.k_cache.shape[1]
    for b in range(len(batch.kv_lens)):
        kv, qo = int(batch.kv_lens[b]), int(batch.qo_lens[b])
        slots = batch.req_to_token[batch.req_pool_indices[b], :kv].long()
        k = batch.k_cache[slots].double().repeat_interleave(hq // hkv, dim=1).transpose(0, 1)
        v = batch.v_cache[slots].double().repeat_interleave(hq // hkv, dim=1).transpose(0, 1)
        q = batch.q[q_start : q_start + qo].double().transpose(0, 1)
        pos = torch.arange(kv - qo, kv)[:, None]
        j = torch.arange(kv)[None, :]
        allowed = torch.ones(qo, kv, dtype=torch.bool)
        if causal:
            allowed &= j <= pos
        if window is not None:
            allowed &= pos - j <= window
        if custom_mask is not None:
            allowed &= custom_mask[m_start : m_start + qo * kv].view(qo, kv)
            m_start += qo * kv
        if cap > 0:
            s = torch.einsum("hqd,hkd->hqk", q, k) * scale
            s = cap * torch.tanh(s / cap)
            s = s.masked_fill(~allowed, float("-inf"))
            o = torch.softmax(s, -1).nan_to_num(0.0) @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
            o = o.masked_fill(~allowed.any(-1)[None, :, None], 0.0)
        outs.append(o.transpose(0, 1))
        q_start += qo
    return torch.cat(outs)


seq_strategy = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None)
@given(
    seqs=seq_strategy,
    heads=st.sampled_from([(8, 8), (32, 8), (16, 1), (4, 2)]),
    head_dim=st.sampled_from([16, 64, 128]),
    page_size=st.sampled_from([1, 16]),
    seed=st.integers(0, 2**16),
)
def test_extend_matches_dense_fp32(seqs, heads, head_dim, page_size, seed):
    batch = make_paged_batch(
        seqs, *heads, head_dim, page_size=page_size, generator=torch.Generator().manual_seed(seed)
    )
    scale = head_dim**-0.5
    out = poisoned_like(batch.q)
    got = reference_attention(
        batch,
        scale,
        out=out,
    )
    assert got is out
    torch.testing.assert_close(got.double(), dense_oracle(batch, scale), **tolerance(torch.float32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_decode_low_precision_against_fp64(dtype):
    seqs = [(0, 1), (7, 1), (300, 1), (2047, 1)]
    batch = make_paged_batch(seqs, 32, 8, 128, dtype=dtype, page_size=16)
    got = reference_attention(
        batch,
        0.088,
        out=poisoned_like(batch.q),
    )
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), dense_oracle(batch, 0.088), **tolerance(dtype))


@pytest.mark.parametrize("window", [0, 3, 17])
def test_sliding_window_and_softcap(window):
    batch = make_paged_batch([(20, 5), (3, 9), (40, 1)], 8, 2, 64)
    for cap in (0.0, 5.0):
        got = reference_attention(
            batch,
            0.3,
            sliding_window=window,
            logit_cap=cap,
            out=poisoned_like(batch.q),
        )
        want = dense_oracle(batch, 0.3, window=window, cap=cap)
        torch.testing.assert_close(got.double(), want, **tolerance(torch.float32))


def test_custom_tree_mask_and_fully_masked_rows():
    batch = make_paged_batch([(10, 4), (0, 3)], 4, 4, 32)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(4 * 14 + 3 * 3, generator=g) > 0.4
    mask[:14] = False  # first query of sequence 0 sees nothing: its row must be 0
    got = reference_attention(
        batch,
        0.2,
        causal=False,
        custom_mask=mask,
        out=poisoned_like(batch.q),
    )
    want = dense_oracle(batch, 0.2, causal=False, custom_mask=mask)
    torch.testing.assert_close(got.double(), want, **tolerance(torch.float32))
    assert torch.equal(got[0], torch.zeros_like(got[0]))


def test_mla_absorbed_shared_kv_buffer():
    """MLA decode: one KV head whose first 512 dims are also the value."""
    batch = make_paged_batch([(33, 1), (5, 1)], 16, 1, 576)
    v_view = batch.k_cache[..., :512]
    got = paged_attention_reference(
        batch.q,
        batch.k_cache,
        v_view,
        batch.req_to_token,
        batch.req_pool_indices,
        batch.kv_lens,
        batch.qo_lens,
        scale=0.05,
        out=poisoned_like(batch.q, (2, 16, 512)),
    )
    batch.v_cache = v_view
    torch.testing.assert_close(got.double(), dense_oracle(batch, 0.05), **tolerance(torch.float32))


def test_mask_positions():
    m = attention_mask(2, 5, causal=True, sliding_window=1)
    assert m.tolist() == [
        [False, False, True, True, False],
        [False, False, False, True, True],
    ]


def test_bad_inputs_raise():
    batch = make_paged_batch([(3, 2)], 6, 4, 16)
    with pytest.raises(ValueError, match="multiple of KV heads"):
        reference_attention(
            batch,
            1.0,
        )
    batch = make_paged_batch([(3, 2)], 4, 4, 16)
    with pytest.raises(ValueError, match="sum\\(qo_lens\\)"):
        paged_attention_reference(
            batch.q,
            batch.k_cache,
            batch.v_cache,
            batch.req_to_token,
            batch.req_pool_indices,
            batch.kv_lens,
            [3],
            scale=1.0,
        )
