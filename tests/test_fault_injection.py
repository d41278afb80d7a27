"""SGLANG_AMD_INJECT_FAULT: the deliberate errors `eval compare`'s tests must catch do
exactly what they say, only on the op they name, and bad values are refused by name."""

from __future__ import annotations

import pytest
import torch

from sglang_amd import fault_injection, tiers
from sglang_amd.attention.attend import ForwardMetadata, LayerMath
from sglang_amd.attention.reference import paged_attention_reference


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("SGLANG_AMD_TIER", "SGLANG_AMD_ATTENTION_TIER", "SGLANG_AMD_ATTENTION_DECODE_TIER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")


def _decode_call(seed: int, kv_lens: list[int]):
    g = torch.Generator().manual_seed(seed)
    b, hq, hkv, d = len(kv_lens), 4, 2, 16
    slots = len(kv_lens) * max(kv_lens) + 5
    k = torch.randn(slots, hkv, d, generator=g)
    v = torch.randn(slots, hkv, d, generator=g)
    r2t = torch.randperm(slots, generator=g)[: b * max(kv_lens)].reshape(b, max(kv_lens)).int()
    q = torch.randn(b, hq, d, generator=g)
    meta = ForwardMetadata(
        mode="decode",
        req_pool_indices=torch.arange(b),
        kv_lens=torch.tensor(kv_lens),
        qo_lens=torch.ones(b, dtype=torch.long),
        kv_lens_cpu=list(kv_lens),
        qo_lens_cpu=[1] * b,
    )
    out = torch.full((b, hq, d), float("nan"))
    return (q, k, v, r2t, meta, LayerMath(scale=d**-0.5, causal=True), out)


@pytest.mark.parametrize("kv_lens", [[5], [1, 7, 3], [12, 2]])
def test_drop_newest_key_attends_to_all_but_the_newest(monkeypatch, kv_lens):
    monkeypatch.setenv(fault_injection.ENV, "attention.decode:drop_newest_key")
    op = tiers.TieredOp("attention.decode", "cpu")
    assert op.fault is not None and op.tier is tiers.Tier.TORCH
    args = _decode_call(len(kv_lens), kv_lens)
    q, k, v, r2t = args[:4]
    got = op(*args)
    shorter = [max(n - 1, 1) for n in kv_lens]
    want = paged_attention_reference(q, k, v, r2t, list(range(len(kv_lens))), shorter, [1] * len(kv_lens),
                                     scale=16**-0.5)  # fmt: skip
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    honest = tiers.TieredOp("attention.extend", "cpu")  # another op: untouched
    assert honest.fault is None


def test_scale_multiplies_the_output(monkeypatch):
    monkeypatch.setenv(fault_injection.ENV, "attention.decode:scale:1.01")
    args = _decode_call(0, [6, 3])
    got = tiers.TieredOp("attention.decode", "cpu")(*args).clone()
    monkeypatch.delenv(fault_injection.ENV)
    want = tiers.TieredOp("attention.decode", "cpu")(*_decode_call(0, [6, 3]))
    torch.testing.assert_close(got, want * 1.01, rtol=1e-6, atol=1e-6)


def test_scale_on_an_op_without_a_float_output_says_so(monkeypatch):
    """The EP pack returns packed wire bytes: a clear error, not an AttributeError."""
    from sglang_amd.ep import wire

    monkeypatch.setenv(fault_injection.ENV, "ep_permute.pack:scale:1.01")
    x, w, ids = torch.randn(3, 128), torch.rand(3, 2), torch.tensor([[0, 1], [2, -1], [3, 0]])
    op = tiers.TieredOp("ep_permute.pack", "cpu")
    with pytest.raises(
        fault_injection.FaultSpecError, match="float tensor; this one returns Packed"
    ):
        op(x, w, ids, wire.RowLayout(128, 2, "none", torch.float32), 2, 2)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("attention.decoder:scale:2", "unknown op"),
        ("attention.extend:drop_newest_key", "attention.decode only"),
        ("attention.decode:scale:big", "needs a number"),
        ("attention.decode:flip", "faults are"),
    ],
)
def test_bad_fault_values_are_refused_by_name(monkeypatch, spec, match):
    monkeypatch.setenv(fault_injection.ENV, spec)
    with pytest.raises(fault_injection.FaultSpecError, match=match) as err:
        tiers.TieredOp("attention.decode", "cpu")
    assert fault_injection.ENV in str(err.value)


def test_unset_means_no_fault(monkeypatch):
    monkeypatch.delenv(fault_injection.ENV, raising=False)
    assert all(tiers.TieredOp(op, "cpu").fault is None for op in tiers.OPS)


def test_a_tier_qualified_fault_touches_only_that_tier(monkeypatch):
    """`op@tier:...`: the CPU serves attention.decode on torch, so a Triton-only fault
    leaves it exact and a torch-only one applies (what `--bisect` narrows by)."""
    want = tiers.TieredOp("attention.decode", "cpu")(*_decode_call(1, [6, 3])).clone()
    monkeypatch.setenv(fault_injection.ENV, "attention.decode@triton:scale:2")
    op = tiers.TieredOp("attention.decode", "cpu")
    assert op.fault is not None and op.tier is tiers.Tier.TORCH
    torch.testing.assert_close(op(*_decode_call(1, [6, 3])), want, rtol=0, atol=0)
    monkeypatch.setenv(fault_injection.ENV, "attention.decode@torch:scale:2")
    got = tiers.TieredOp("attention.decode", "cpu")(*_decode_call(1, [6, 3]))
    torch.testing.assert_close(got, want * 2, rtol=1e-6, atol=1e-6)


def test_an_unknown_fault_tier_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(fault_injection.ENV, "attention.decode@cuda:scale:2")
    with pytest.raises(fault_injection.FaultSpecError, match="unknown tier 'cuda'; tiers: aiter"):
        tiers.TieredOp("attention.decode", "cpu")
