"""Tier selection: order, forcing, and clear errors. No sglang needed."""

from __future__ import annotations

import logging

import pytest

from sglang_amd import tiers
from sglang_amd.target_info import probe_aiter, probe_triton
from sglang_amd.tiers import Tier, TierError, TierUnavailableError, select


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (
        "SGLANG_AMD_TIER",
        "SGLANG_AMD_ATTENTION_TIER",
        "SGLANG_AMD_ATTENTION_DECODE_TIER",
        "TRITON_INTERPRET",
    ):
        monkeypatch.delenv(var, raising=False)


def test_cpu_attention_uses_torch_and_says_why_not_the_others():
    sel = select("attention.decode", "cpu")
    assert sel.tier is Tier.TORCH and sel.forced_by is None
    reasons = dict(sel.considered)
    assert not reasons[Tier.AITER].ok and not reasons[Tier.TRITON].ok
    assert reasons[Tier.AITER].reason and reasons[Tier.TRITON].reason


def test_forcing_torch_works_and_names_the_variable(monkeypatch):
    monkeypatch.setenv("SGLANG_AMD_ATTENTION_TIER", "torch")
    sel = select("attention.decode", "cpu")
    assert sel.tier is Tier.TORCH and sel.forced_by == "SGLANG_AMD_ATTENTION_TIER"


@pytest.mark.parametrize("var", ["SGLANG_AMD_ATTENTION_TIER", "SGLANG_AMD_TIER"])
def test_forcing_an_unavailable_tier_is_an_error(monkeypatch, var):
    monkeypatch.setenv(var, "aiter")
    with pytest.raises(TierUnavailableError, match=f"{var}=aiter"):
        select("attention.decode", "cpu")


def test_per_op_variable_wins_over_global(monkeypatch):
    monkeypatch.setenv("SGLANG_AMD_TIER", "aiter")
    monkeypatch.setenv("SGLANG_AMD_ATTENTION_TIER", "auto")
    with pytest.raises(TierUnavailableError):
        select("attention.decode", "cpu")  # auto on the op defers to the global
    monkeypatch.setenv("SGLANG_AMD_ATTENTION_TIER", "torch")
    assert select("attention.decode", "cpu").tier is Tier.TORCH


def test_unknown_tier_value_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv("SGLANG_AMD_ATTENTION_TIER", "cuda")
    with pytest.raises(TierError, match="auto\\|aiter\\|triton\\|torch"):
        select("attention.decode", "cpu")


def test_unknown_op():
    with pytest.raises(KeyError):
        select("nope", "cpu")


def test_device_probes(monkeypatch):
    assert not probe_aiter("cpu").ok
    assert not probe_triton("cpu").ok
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert probe_triton("cpu").ok and "interpreter" in probe_triton("cpu").reason


def test_fallback_logs_once_per_reason(caplog):
    tiers._fallbacks_logged.clear()
    with caplog.at_level(logging.WARNING, logger="sglang_amd.tiers"):
        for _ in range(3):
            tiers.fallback_once("attention", Tier.TRITON, "head_dim 96 unsupported")
        tiers.fallback_once("attention", Tier.TRITON, "head_dim 80 unsupported")
    assert len(caplog.records) == 2


def test_interpreter_makes_triton_the_cpu_tier(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    for op in ("attention.decode", "attention.extend"):
        assert select(op, "cpu").tier is Tier.TRITON


def test_op_variable_wins_over_family(monkeypatch):
    monkeypatch.setenv("SGLANG_AMD_ATTENTION_TIER", "aiter")
    monkeypatch.setenv("SGLANG_AMD_ATTENTION_DECODE_TIER", "torch")
    assert select("attention.decode", "cpu").tier is Tier.TORCH
    with pytest.raises(TierUnavailableError, match="SGLANG_AMD_ATTENTION_TIER=aiter"):
        select("attention.extend", "cpu")


def test_every_op_has_the_torch_tier():
    for spec in tiers.OPS.values():
        assert Tier.TORCH in spec.implemented
        assert spec.env_vars[-1] == "SGLANG_AMD_TIER"
