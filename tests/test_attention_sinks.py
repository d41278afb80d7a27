"""Attention sinks (gpt-oss) in both tiers of `--attention-backend amd`.

A sink is one learned logit per query head that joins the softmax denominator
as a key whose value is zero: out = sum_j e^{s_j} v_j / (sum_j e^{s_j} + e^{sink}).
The torch tier is checked against HF transformers' own gpt-oss attention
(`eager_attention_forward`) and against the two limits (a -inf sink is no sink;
a sink far above every score takes all the mass, so the output is zero); the
Triton decode and extend kernels (interpreted on CPU, compiled on a GPU) against the torch tier on
fresh random batches with windows, GQA and bf16 sinks, outputs NaN-poisoned.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang_amd.attention.decode import paged_decode
from sglang_amd.attention.extend import paged_extend
from sglang_amd.attention.reference import attention_mask, paged_attention_reference
from sglang_amd.testing import make_paged_batch, poisoned_like, tolerance
from sglang_amd.testing import reference_attention as reference
from tests.hypothesis_compat import given, settings, st

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _sinks(hq: int, seed: int, dtype=torch.float32, spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(hq, generator=g) * spread).to(dtype).to(DEVICE)


def _decode(batch, scale, **kw):
    out = poisoned_like(batch.q, (batch.q.shape[0], batch.q.shape[1], batch.v_cache.shape[2]))
    paged_decode(
        batch.q, batch.k_cache, batch.v_cache, batch.req_to_token, batch.req_pool_indices,
        batch.kv_lens, scale=scale, out=out, **kw,
    )  # fmt: skip
    return out


def _extend(batch, scale, **kw):
    out = poisoned_like(batch.q, (batch.q.shape[0], batch.q.shape[1], batch.v_cache.shape[2]))
    paged_extend(
        batch.q, batch.k_cache, batch.v_cache, batch.req_to_token, batch.req_pool_indices,
        batch.kv_lens, batch.qo_lens, scale=scale, out=out, **kw,
    )  # fmt: skip
    return out


def _check(got, want, dtype):
    assert not torch.isnan(got).any(), "unwritten (NaN-poisoned) elements"
    torch.testing.assert_close(got.float(), want.float(), **tolerance(dtype))


# ------------------------------------------------------------- torch tier
def _hf_gpt_oss_attention(batch, scale, sinks, window):
    """HF transformers' gpt-oss eager attention, sequence by sequence, on dense K/V."""
    hf = pytest.importorskip("transformers.models.gpt_oss.modeling_gpt_oss")
    eager_attention_forward = hf.eager_attention_forward

    hq, hkv = batch.q.shape[1], batch.k_cache.shape[1]
    module = SimpleNamespace(sinks=sinks.float(), num_key_value_groups=hq // hkv, training=False)
    outs, start = [], 0
    for row, kv, qo in zip(
        batch.req_pool_indices.tolist(), batch.kv_lens.tolist(), batch.qo_lens.tolist(),
        strict=True,
    ):  # fmt: skip
        slots = batch.req_to_token[row, :kv].long()
        q = batch.q[start : start + qo].float().transpose(0, 1)[None]
        k = batch.k_cache[slots].float().transpose(0, 1)[None]
        v = batch.v_cache[slots].float().transpose(0, 1)[None]
        allowed = attention_mask(qo, kv, sliding_window=window)
        additive = torch.zeros(qo, kv).masked_fill(~allowed, float("-inf"))[None, None]
        o, _ = eager_attention_forward(module, q, k, v, additive, scale)
        outs.append(o[0])
        start += qo
    return torch.cat(outs)


@pytest.mark.parametrize("heads", [(4, 4), (8, 2)])
@pytest.mark.parametrize("window", [None, 3])
def test_torch_tier_equals_hf_gpt_oss_attention(heads, window):
    g = torch.Generator().manual_seed(11)
    batch = make_paged_batch([(0, 7), (5, 4), (9, 1)], *heads, 32, page_size=4, generator=g)
    sinks = _sinks(heads[0], 1).cpu()
    got = reference(batch, 0.2, sinks=sinks, sliding_window=window)
    want = _hf_gpt_oss_attention(batch, 0.2, sinks, window)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # The sinks matter: the same call without them is far from it.
    assert (reference(batch, 0.2, sliding_window=window) - want).abs().max() > 1e-2


def test_torch_tier_sink_limits():
    batch = make_paged_batch([(3, 5), (0, 2)], 4, 2, 16, generator=torch.Generator().manual_seed(2))
    none = reference(batch, 0.25)
    minus_inf = torch.full((4,), float("-inf"))
    torch.testing.assert_close(reference(batch, 0.25, sinks=minus_inf), none, atol=0, rtol=0)
    all_on_sink = reference(batch, 0.25, sinks=torch.full((4,), 1e4))
    assert all_on_sink.abs().max() == 0


def test_torch_tier_sink_with_no_visible_key_is_zero():
    # A window of 0 over a tree mask that hides the query's own key: no key left.
    batch = make_paged_batch([(2, 1)], 2, 2, 8, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(3, dtype=torch.bool)
    out = paged_attention_reference(
        batch.q, batch.k_cache, batch.v_cache, batch.req_to_token, batch.req_pool_indices,
        batch.kv_lens, batch.qo_lens, scale=0.3, custom_mask=mask, sinks=torch.zeros(2),
    )  # fmt: skip
    assert out.abs().max() == 0


def test_wrong_sink_shape_is_an_error():
    batch = make_paged_batch([(0, 3)], 4, 2, 16)
    with pytest.raises(ValueError, match="one per query head"):
        reference(batch, 0.25, sinks=torch.zeros(2))
    with pytest.raises(ValueError, match="one per query head"):
        _decode(make_paged_batch([(3, 1)], 4, 2, 16, device=DEVICE), 0.25,
                sinks=torch.zeros(2, device=DEVICE))  # fmt: skip


# ------------------------------------------------------------ Triton tier
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads", [(8, 8), (16, 2)])
@pytest.mark.parametrize("window", [None, 5])
def test_triton_decode_with_sinks(dtype, heads, window):
    g = torch.Generator().manual_seed(5)
    batch = make_paged_batch(
        [(0, 1), (40, 1), (90, 1)], *heads, 64, page_size=16, dtype=dtype, device=DEVICE,
        generator=g,
    )  # fmt: skip
    sinks = _sinks(heads[0], 7, torch.bfloat16)  # SGLang keeps gpt-oss sinks in bf16
    got = _decode(batch, 0.125, sinks=sinks, sliding_window=window)
    _check(got, reference(batch, 0.125, sinks=sinks, sliding_window=window), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads", [(8, 8), (16, 2)])
@pytest.mark.parametrize("window", [None, 6])
def test_triton_extend_with_sinks(dtype, heads, window):
    g = torch.Generator().manual_seed(6)
    batch = make_paged_batch(
        [(0, 9), (17, 5), (3, 1)], *heads, 64, page_size=4, dtype=dtype, device=DEVICE,
        generator=g,
    )  # fmt: skip
    sinks = _sinks(heads[0], 8, torch.float32)
    got = _extend(batch, 0.125, sinks=sinks, sliding_window=window)
    _check(got, reference(batch, 0.125, sinks=sinks, sliding_window=window), dtype)


@pytest.mark.parametrize("run", [_decode, _extend])
def test_triton_sink_limits(run):
    seqs = [(6, 1), (20, 1)] if run is _decode else [(6, 4), (0, 3)]
    batch = make_paged_batch(
        seqs, 4, 2, 32, device=DEVICE, generator=torch.Generator().manual_seed(9)
    )
    none = run(batch, 0.2)
    minus_inf = torch.full((4,), float("-inf"), device=DEVICE)
    torch.testing.assert_close(run(batch, 0.2, sinks=minus_inf), none, atol=1e-6, rtol=1e-6)
    # Far above every score: all the mass on the sink, and no overflow on the way.
    assert run(batch, 0.2, sinks=torch.full((4,), 1e4, device=DEVICE)).abs().max() < 1e-30


@settings(max_examples=6, deadline=None)
@given(
    seqs=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9)), min_size=1, max_size=3),
    group=st.sampled_from([1, 2, 4]),
    window=st.sampled_from([None, 0, 4, 17]),
    seed=st.integers(0, 2**16),
)
def test_triton_extend_and_decode_with_sinks_random(seqs, group, window, seed):
    g = torch.Generator().manual_seed(seed)
    hkv = 2
    batch = make_paged_batch(seqs, hkv * group, hkv, 32, page_size=2, device=DEVICE, generator=g)
    sinks = _sinks(hkv * group, seed + 1)
    want = reference(batch, 0.3, sinks=sinks, sliding_window=window)
    _check(_extend(batch, 0.3, sinks=sinks, sliding_window=window), want, torch.float32)
    last = make_paged_batch(
        [(p + n - 1, 1) for p, n in seqs], hkv * group, hkv, 32, page_size=2, device=DEVICE,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    want = reference(last, 0.3, sinks=sinks, sliding_window=window)
    _check(_decode(last, 0.3, sinks=sinks, sliding_window=window), want, torch.float32)
