"""The one place that decides which kernel tier serves each op.

Tiers, best first: aiter (ROCm, when importable) -> our Triton kernels (ROCm,
CUDA, or the CPU interpreter) -> the torch reference (any device, and the oracle
for tests). Each op lists the tiers this package implements for it; `select`
walks them in order and returns the first whose probe passes.

Forcing: `SGLANG_AMD_<OP>_TIER` (e.g. SGLANG_AMD_ATTENTION_DECODE_TIER), the
family's `SGLANG_AMD_ATTENTION_TIER`, or the global `SGLANG_AMD_TIER`, most
specific first, with values auto|aiter|triton|torch. A forced tier that cannot
serve raises `TierUnavailableError` naming the variable; it never falls back
silently. A tier that cannot serve one *request* (a shape it lacks) falls back
through `fallback_once`, which logs one line per distinct reason.

Never imports sglang: `sglang-amd env` and the GPU test image use it too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch

from sglang_amd.target_info import Probe, probe_aiter, probe_triton

logger = logging.getLogger(__name__)

GLOBAL_TIER_ENV = "SGLANG_AMD_TIER"


class Tier(str, Enum):
    AITER = "aiter"
    TRITON = "triton"
    TORCH = "torch"


TIER_ORDER: tuple[Tier, ...] = (Tier.AITER, Tier.TRITON, Tier.TORCH)

_DEVICE_PROBES: dict[Tier, Callable[[torch.device | None], Probe]] = {
    Tier.AITER: probe_aiter,
    Tier.TRITON: probe_triton,
    Tier.TORCH: lambda device: Probe(True, "torch reference runs on every device"),
}


class TierError(ValueError):
    """Bad tier configuration; the message names the variable to change."""


class TierUnavailableError(TierError):
    """A forced tier cannot serve this op on this machine."""


@dataclass(frozen=True)
class OpSpec:
    """An op and the tiers this package implements for it."""

    name: str
    description: str
    implemented: tuple[Tier, ...]

    @property
    def env_var(self) -> str:
        return _env_var(self.name)

    @property
    def env_vars(self) -> tuple[str, ...]:
        """Forcing variables, most specific first: op, family (attention.*), global."""
        family = self.name.split(".")[0]
        names = [self.env_var] + ([_env_var(family)] if family != self.name else [])
        return (*names, GLOBAL_TIER_ENV)


def _env_var(name: str) -> str:
    return f"SGLANG_AMD_{name.upper().replace('.', '_')}_TIER"


@dataclass(frozen=True)
class Selection:
    op: str
    tier: Tier
    reason: str
    forced_by: str | None
    considered: tuple[tuple[Tier, Probe], ...]


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            "attention.extend",
            "paged attention for extend: prefill over a cached radix prefix, chunked prefill",
            (Tier.TRITON, Tier.TORCH),
        ),
        OpSpec(
            "attention.decode",
            "paged attention for decode: split-KV flash decoding, GQA/MQA and MLA",
            (Tier.TRITON, Tier.TORCH),
        ),
        OpSpec(
            "moe.fused",
            "fused MoE experts (--moe-runner-backend amd), bf16 or MXFP4 (W4A16) weights",
            (Tier.TRITON, Tier.TORCH),
        ),
        OpSpec(
            "quant.mxfp4_linear",
            "dense linear with MXFP4 weights (W4A16, or A4W4 for Quark A4W4 exports)",
            (Tier.TRITON, Tier.TORCH),
        ),
        OpSpec(
            "quant.mxfp4",
            "MXFP4 quantize/dequantize (bit-exact across tiers)",
            (Tier.TRITON, Tier.TORCH),
        ),
    )
}


def _forced_tier(spec: OpSpec) -> tuple[Tier | None, str | None]:
    for var in spec.env_vars:
        raw = os.environ.get(var, "").strip().lower()
        if not raw or raw == "auto":
            continue
        try:
            return Tier(raw), var
        except ValueError:
            valid = "|".join(["auto", *(t.value for t in TIER_ORDER)])
            raise TierError(f"{var}={raw!r} is not a tier; use one of {valid}") from None
    return None, None


def probe(op: str, tier: Tier, device: torch.device | str | None = None) -> Probe:
    """Can `tier` serve `op` on `device`? Says why not when it cannot."""
    spec = OPS[op]
    if tier not in spec.implemented:
        have = ", ".join(t.value for t in spec.implemented)
        return Probe(False, f"sglang-amd has no {tier.value} kernel for {op} (has: {have})")
    return _DEVICE_PROBES[tier](torch.device(device) if device is not None else None)


def select(op: str, device: torch.device | str | None = None) -> Selection:
    """The tier that serves `op` on `device`, honouring the forcing variables."""
    if op not in OPS:
        raise KeyError(f"unknown op {op!r}; known: {sorted(OPS)}")
    spec = OPS[op]
    considered = tuple((tier, probe(op, tier, device)) for tier in TIER_ORDER)
    forced, var = _forced_tier(spec)
    if forced is not None:
        answer = dict(considered)[forced]
        if not answer.ok:
            raise TierUnavailableError(
                f"{var}={forced.value} cannot serve {op}: {answer.reason}. "
                f"Unset {var} (or set it to auto) to let sglang-amd choose."
            )
        return Selection(op, forced, f"forced by {var}: {answer.reason}", var, considered)
    for tier, answer in considered:
        if answer.ok:
            return Selection(op, tier, answer.reason, None, considered)
    raise AssertionError("the torch tier always serves")  # pragma: no cover


_fallbacks_logged: set[tuple[str, str, str]] = set()


def fallback_once(op: str, tier: Tier, reason: str, to: Tier = Tier.TORCH) -> None:
    """Log, once per distinct reason, that `tier` handed a request of `op` to `to`."""
    key = (op, tier.value, reason)
    if key in _fallbacks_logged:
        return
    _fallbacks_logged.add(key)
    logger.warning("sglang-amd: %s %s tier falls back to %s: %s", op, tier.value, to.value, reason)
