"""Deliberate, named errors in one tiered op: how `eval compare` proves it catches a bad kernel.

Where it sits: `tiers.TieredOp` asks `for_op(name)` once per op it builds; when
`SGLANG_AMD_INJECT_FAULT` names that op, every call of it runs through the
fault instead of straight to the selected tier. Nothing else reads the
variable, and it is off unless set: a server started with it logs a warning
at the first layer that builds the op.

  SGLANG_AMD_INJECT_FAULT=<op>[@<tier>]:<fault>[:<arg>]

  attention.decode:drop_newest_key   decode attends to all keys but the newest
                                     (the token's own): an off-by-one in the
                                     KV length, the kind a decode kernel gets wrong
  <op>:scale:<factor>                multiplies the op's output by factor (1.01:
                                     one percent, below what greedy text shows);
                                     ops with a float tensor output only (not the
                                     indexer's positions or the EP pack's bytes)

`@<tier>` (aiter, triton, torch) confines the fault to calls that tier serves:
a bug in one kernel tier, which `eval compare --bisect` must narrow to by
forcing the op to another tier.

Never imports sglang.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

import torch

ENV = "SGLANG_AMD_INJECT_FAULT"

logger = logging.getLogger(__name__)

Fault = Callable[[Callable[..., Any], tuple, dict], Any]


class FaultSpecError(ValueError):
    pass


def _drop_newest_key(impl: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    # (q, k_cache, v_cache, req_to_token, meta, math, out): attention.attend's signature
    q, k, v, r2t, meta, math, out = args
    keep = [max(n - 1, 1) for n in meta.kv_lens_cpu]
    short = dataclasses.replace(
        meta,
        kv_lens=(meta.kv_lens - 1).clamp_(min=1),
        kv_lens_cpu=keep,
        _rows_cpu=None,
        _new_tokens=None,
        extend_plans={},
    )
    return impl(q, k, v, r2t, short, math, out, **kwargs)


def _scale(factor: float) -> Fault:
    def fault(impl: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        result = impl(*args, **kwargs)
        if not (isinstance(result, torch.Tensor) and result.is_floating_point()):
            # Token positions, packed bytes, tuples, in-place ops: nothing to scale.
            dtype = getattr(result, "dtype", None)
            what = type(result).__name__ + (f" {dtype}" if dtype is not None else "")
            raise FaultSpecError(
                f"{ENV}: scale needs an op whose output is a float tensor; this one returns {what}"
            )
        return result.mul_(factor)

    return fault


_TIERS = ("aiter", "triton", "torch")


def _only_on(tier: str, fault: Fault) -> Fault:
    def confined(impl: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if impl.tier.value != tier:
            return impl(*args, **kwargs)
        return fault(impl, args, kwargs)

    return confined


def parse(spec: str, known_ops: set[str] | None = None) -> tuple[str, Fault]:
    """`<op>[@<tier>]:<fault>[:<arg>]` as the op it targets and the fault to run."""
    head, _, rest = spec.partition(":")
    op, at, tier = head.partition("@")
    if at and tier not in _TIERS:
        raise FaultSpecError(f"{ENV}={spec!r}: unknown tier {tier!r}; tiers: {', '.join(_TIERS)}")
    op, fault = _parse_fault(spec, op, rest, known_ops)
    return op, (_only_on(tier, fault) if at else fault)


def _parse_fault(spec: str, op: str, rest: str, known_ops: set[str] | None) -> tuple[str, Fault]:
    kind, _, arg = rest.partition(":")
    if known_ops is not None and op not in known_ops:
        raise FaultSpecError(f"{ENV}={spec!r}: unknown op {op!r}; known: {sorted(known_ops)}")
    if kind == "drop_newest_key":
        if op != "attention.decode":
            raise FaultSpecError(
                f"{ENV}={spec!r}: drop_newest_key applies to attention.decode only"
            )
        return op, _drop_newest_key
    if kind == "scale":
        try:
            return op, _scale(float(arg))
        except ValueError:
            raise FaultSpecError(
                f"{ENV}={spec!r}: scale needs a number, e.g. {op}:scale:1.01"
            ) from None
    raise FaultSpecError(f"{ENV}={spec!r}: faults are drop_newest_key and scale:<factor>")


def for_op(op: str, known_ops: set[str] | None = None) -> Fault | None:
    """The fault to run for `op`, or None (the variable unset, or naming another op)."""
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return None
    target, fault = parse(spec, known_ops)
    if target != op:
        return None
    logger.warning("sglang-amd: %s=%s: %s gives deliberately wrong results", ENV, spec, op)
    return fault
