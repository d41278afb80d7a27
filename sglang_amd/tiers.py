"""The one registry of tiered ops: which implementations each op has, which serves.

Tiers, best first: aiter (ROCm, when importable) -> our Triton kernels (ROCm,
CUDA, or the CPU interpreter) -> the torch reference (any device, and the oracle
for tests). `OPS` lists, per op, the implementations this package has, each as a
lazily imported function with its own per-call refusal ("why this call cannot
run here"). Adding a tier to an op (aiter next) is one `Impl` entry.

  select(op, device)       the tier for a device, probed once (honours forcing)
  TieredOp(op, device)     an op bound to a device: each call runs the selected
                           tier's implementation, or, when it refuses the call,
                           the next tier down that accepts it (one log line per
                           distinct reason); when none accepts, one error that
                           lists every tier's reason

Forcing: `SGLANG_AMD_<OP>_TIER` (e.g. SGLANG_AMD_ATTENTION_DECODE_TIER), the
family's `SGLANG_AMD_ATTENTION_TIER`, or the global `SGLANG_AMD_TIER`, most
specific first, with values auto|aiter|triton|torch. A forced tier that cannot
serve raises `TierUnavailableError` naming the variable; it never falls back
silently. Never imports sglang: `sglang-amd env` and the GPU test image use it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

from sglang_amd import fault_injection, trace
from sglang_amd.flags import TierError, TierUnavailableError
from sglang_amd.target_info import Probe, probe_aiter, probe_triton

__all__ = [
    "GLOBAL_TIER_ENV",
    "OPS",
    "TIER_ORDER",
    "Impl",
    "OpSpec",
    "Selection",
    "Tier",
    "TierError",
    "TierRefusedError",
    "TierUnavailableError",
    "TieredOp",
    "fallback_once",
    "probe",
    "select",
]

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


class TierRefusedError(RuntimeError):
    """Every tier left for this op refused one call (e.g. the only tier that takes
    it reads the host, inside a CUDA-graph capture); the message says each why."""


@functools.cache
def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Impl:
    """One tier's implementation of an op.

    `fn` and `refusal` are "module:function" paths, imported on first use (so
    selecting a tier never imports Triton kernels it does not run). Both take the
    op's call arguments; `refusal` returns why this call cannot run on this tier
    (None: it can), and None means the tier takes every call.
    """

    tier: Tier
    fn: str
    refusal: str | None = None

    def refuse(self, *args: Any, **kwargs: Any) -> str | None:
        return None if self.refusal is None else _resolve(self.refusal)(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _resolve(self.fn)(*args, **kwargs)


@dataclass(frozen=True)
class OpSpec:
    """An op, the implementations this package has for it, and its trace event.

    `trace_fields` ("module:function" or None) turns a call's arguments into the
    fields of the `trace_event` line (SGLANG_AMD_TRACE) recorded with the tier."""

    name: str
    description: str
    impls: tuple[Impl, ...]
    trace_event: str | None = None
    trace_fields: str | None = None

    @property
    def implemented(self) -> tuple[Tier, ...]:
        return tuple(i.tier for i in self.impls)

    def impl(self, tier: Tier) -> Impl:
        return next(i for i in self.impls if i.tier is tier)

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


_ATTN = "sglang_amd.attention.attend"
_DSA = "sglang_amd.attention.dsa"
_MOE = "sglang_amd.moe.experts"
_LINEAR = "sglang_amd.quant.mxfp4_linear"
_MXFP4 = "sglang_amd.quant.mxfp4"
# Gated DeltaNet (Qwen3-Next's linear attention): torch tier only; no Triton tier yet
# (on GPUs SGLang's own fla kernels serve these layers).
_GDN = "sglang_amd.linear_attention.gdn"
# The expert-parallel communicator's local permutes around its all-to-alls (the
# family is not "ep": SGLANG_AMD_EP_TIER already picks its transport).
_EP = "sglang_amd.ep.permute"
_EP_REF = "sglang_amd.ep.permute_reference"

OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            "attention.extend",
            "paged attention for extend: prefill over a cached radix prefix, chunked prefill",
            (
                Impl(Tier.TRITON, f"{_ATTN}:extend_triton", f"{_ATTN}:triton_refusal"),
                Impl(Tier.TORCH, f"{_ATTN}:attend_torch", f"{_ATTN}:torch_refusal"),
            ),
            trace_event="forward_extend",
        ),
        OpSpec(
            "attention.decode",
            "paged attention for decode: split-KV flash decoding, GQA/MQA and MLA",
            (
                Impl(Tier.TRITON, f"{_ATTN}:decode_triton", f"{_ATTN}:triton_refusal"),
                Impl(Tier.TORCH, f"{_ATTN}:attend_torch", f"{_ATTN}:torch_refusal"),
            ),
            trace_event="forward_decode",
        ),
        OpSpec(
            "attention.indexer",
            "DSA lightning indexer scores (DeepSeek-V3.2), float or FP8 index keys",
            (
                Impl(Tier.TRITON, f"{_DSA}:indexer_triton", f"{_DSA}:indexer_triton_refusal"),
                Impl(Tier.TORCH, f"{_DSA}:indexer_torch", f"{_DSA}:indexer_torch_refusal"),
            ),
            trace_event="forward_indexer",
        ),
        OpSpec(
            "attention.sparse",
            "DSA top-k sparse attention over the indexer's tokens (absorbed MLA)",
            (
                Impl(Tier.TRITON, f"{_DSA}:sparse_triton", f"{_DSA}:sparse_triton_refusal"),
                Impl(Tier.TORCH, f"{_DSA}:sparse_torch", f"{_DSA}:sparse_torch_refusal"),
            ),
            trace_event="forward_sparse",
        ),
        OpSpec(
            "moe.fused",
            "fused MoE experts (--moe-runner-backend amd), bf16 or MXFP4 (W4A16) weights",
            (
                Impl(Tier.TRITON, "sglang_amd.moe.fused:fused_moe", f"{_MOE}:triton_refusal"),
                Impl(
                    Tier.TORCH,
                    "sglang_amd.moe.reference:fused_moe_reference",
                    f"{_MOE}:torch_refusal",
                ),
            ),
            trace_event="forward_moe",
            trace_fields=f"{_MOE}:trace_fields",
        ),
        OpSpec(
            "quant.mxfp4_linear",
            "dense linear with MXFP4 weights (W4A16, or A4W4 for Quark A4W4 exports)",
            (
                Impl(Tier.TRITON, f"{_LINEAR}:mxfp4_linear", f"{_LINEAR}:triton_refusal"),
                Impl(Tier.TORCH, f"{_LINEAR}:mxfp4_linear_reference"),
            ),
            trace_event="forward_mxfp4_linear",
            trace_fields=f"{_LINEAR}:trace_fields",
        ),
        OpSpec(
            "quant.mxfp4",
            "MXFP4 quantize (bit-exact across tiers): weights quantized at load",
            (
                Impl(Tier.TRITON, "sglang_amd.quant.mxfp4_triton:quantize_mxfp4_triton"),
                Impl(Tier.TORCH, f"{_MXFP4}:quantize_mxfp4"),
            ),
        ),
        OpSpec(
            "ep_permute.pack",
            "expert-parallel dispatch: each token's wire record into every destination's row",
            (
                Impl(Tier.TRITON, f"{_EP}:pack_triton", f"{_EP}:pack_refusal"),
                Impl(Tier.TORCH, f"{_EP_REF}:pack_torch"),
            ),
            trace_event="ep_pack",
        ),
        OpSpec(
            "ep_permute.combine",
            "expert-parallel combine: each token's returned rows summed in rank order",
            (
                Impl(Tier.TRITON, f"{_EP}:combine_triton", f"{_EP}:combine_refusal"),
                Impl(Tier.TORCH, f"{_EP_REF}:combine_torch"),
            ),
            trace_event="ep_combine",
        ),
        OpSpec(
            "linear_attention.gdn_chunked",
            "Gated DeltaNet, chunked form (extend, prefill) over the state pool",
            (Impl(Tier.TORCH, f"{_GDN}:gdn_chunked_torch"),),
            trace_event="forward_gdn_chunked",
        ),
        OpSpec(
            "linear_attention.gdn_recurrent",
            "Gated DeltaNet, recurrent form (decode, verify) over the state pool",
            (Impl(Tier.TORCH, f"{_GDN}:gdn_recurrent_torch"),),
            trace_event="forward_gdn_recurrent",
        ),
        OpSpec(
            "linear_attention.gating",
            "Gated DeltaNet decay and write strength from the a/b projections",
            (Impl(Tier.TORCH, f"{_GDN}:gating_torch"),),
        ),
        OpSpec(
            "linear_attention.conv1d",
            "causal depthwise conv over a varlen batch, from each slot's window",
            (Impl(Tier.TORCH, f"{_GDN}:conv1d_torch"),),
            trace_event="forward_gdn_conv1d",
        ),
        OpSpec(
            "linear_attention.conv1d_update",
            "causal depthwise conv for a few new tokens a sequence, window updated",
            (Impl(Tier.TORCH, f"{_GDN}:conv1d_update_torch"),),
        ),
        OpSpec(
            "linear_attention.gated_rmsnorm",
            "RMSNorm times an activated gate (each GDN head's output norm)",
            (Impl(Tier.TORCH, f"{_GDN}:gated_rmsnorm_torch"),),
        ),
        OpSpec(
            "linear_attention.split_qkvzba",
            "Qwen3-Next's interleaved qkvz/ba projections into conv input and gates",
            (Impl(Tier.TORCH, f"{_GDN}:split_qkvzba_torch"),),
        ),
        OpSpec(
            "linear_attention.copy_slots",
            "copy state-pool slots (the radix cache's state snapshots)",
            (Impl(Tier.TORCH, f"{_GDN}:copy_state_slots_torch"),),
        ),
        OpSpec(
            "linear_attention.commit_steps",
            "keep each request's state at its last accepted draft (speculative verify)",
            (Impl(Tier.TORCH, f"{_GDN}:commit_steps_torch"),),
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


class TieredOp:
    """An op on one device: the tier chosen once, every call dispatched through it.

    A call the selected tier refuses goes to the next implemented tier below it
    that runs on this device and accepts the call (`fallback_once` logs it);
    `TierRefusedError` when none does. `selection` may be replaced (tests do).
    """

    def __init__(
        self, op: str, device: torch.device | str | None = None, selection: Selection | None = None
    ):
        self.spec = OPS[op]
        self.selection = selection or select(op, device)
        self._chain_of: tuple[Selection, list[Impl]] | None = None
        # SGLANG_AMD_INJECT_FAULT (eval compare's own tests): None unless set for this op.
        self.fault = fault_injection.for_op(op, set(OPS))

    @property
    def tier(self) -> Tier:
        return self.selection.tier

    def _chain(self) -> list[Impl]:
        """The implementations a call may run on, best first; derived from the
        selection once (every layer call asks), again only if it is replaced."""
        if self._chain_of is None or self._chain_of[0] is not self.selection:
            sel = self.selection
            ok = {tier for tier, answer in sel.considered if answer.ok}
            start = TIER_ORDER.index(sel.tier)
            chain = [
                self.spec.impl(tier)
                for tier in TIER_ORDER[start:]
                if tier in self.spec.implemented and (tier is sel.tier or tier in ok)
            ]
            self._chain_of = (sel, chain)
        return self._chain_of[1]

    def pick(self, *args: Any, **kwargs: Any) -> Impl:
        """The implementation that serves this call."""
        refused: list[tuple[Tier, str]] = []
        for impl in self._chain():
            reason = impl.refuse(*args, **kwargs)
            if reason is None:
                if refused:
                    fallback_once(self.spec.name, refused[0][0], refused[0][1], to=impl.tier)
                return impl
            refused.append((impl.tier, reason))
        raise TierRefusedError(
            f"sglang-amd: no tier of {self.spec.name} can run this call: "
            + "; ".join(f"{tier.value}: {why}" for tier, why in refused)
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        impl = self.pick(*args, **kwargs)
        if self.spec.trace_event is not None:
            fields = (
                _resolve(self.spec.trace_fields)(*args, **kwargs) if self.spec.trace_fields else {}
            )
            trace.record(self.spec.trace_event, tier=impl.tier.value, **fields)
        if self.fault is not None:
            return self.fault(impl, args, kwargs)
        return impl(*args, **kwargs)


_fallbacks_logged: set[tuple[str, str, str]] = set()


def fallback_once(op: str, tier: Tier, reason: str, to: Tier = Tier.TORCH) -> None:
    """Log, once per distinct reason, that `tier` handed a request of `op` to `to`."""
    key = (op, tier.value, reason)
    if key in _fallbacks_logged:
        return
    _fallbacks_logged.add(key)
    logger.warning("sglang-amd: %s %s tier falls back to %s: %s", op, tier.value, to.value, reason)
