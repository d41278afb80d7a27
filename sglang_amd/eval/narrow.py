"""After `--bisect` names one of our backend flags, narrow the fault to an op's tier,
to CUDA graphs, or to the backend's SGLang adapter.

Where it sits: `eval/compare.run` calls `narrow()` with the change bisection
blamed and the first configuration that fails. When that change selects one of
our backends (`--attention-backend amd`, `--moe-runner-backend amd`,
`--quantization amd_mxfp4`), the flag alone says little: the backend serves
several tiered ops (`tiers.OPS`), each on aiter, Triton or torch, under CUDA
graphs or eagerly. Each try below is one more server compared with A, in order:

1. each op of the family with its tier forced to the torch reference
   (`SGLANG_AMD_<OP>_TIER=torch`): the first that passes names that op's
   faster tier (whatever served it without the variable);
2. every op of the family at torch together (two tiers wrong at once);
3. `--disable-cuda-graph` (capture or replay in our adapter);
4. none passes: the adapter itself (metadata, layouts), not a kernel tier.

Never imports sglang; `trial` (serve a configuration, compare it with A) is
passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from sglang_amd import tiers
from sglang_amd.eval.configs import Change, Config

# Per family of `configs.FAMILIES`: the flag values that select ours, and the
# tiered ops that serve under them, in the order they are tried.
OURS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "attention": (("amd",), ("attention.decode", "attention.extend")),
    "moe runner": (("amd",), ("moe.fused",)),
    "quantization": (("amd_mxfp4",), ("quant.mxfp4_linear", "moe.fused", "quant.mxfp4")),
}
EAGER = "--disable-cuda-graph"
TORCH = tiers.Tier.TORCH.value


class StepLike(Protocol):
    passed: bool


def selects_ours(change: Change, cfg: Config) -> bool:
    """Whether `change` is a family flag that, in `cfg`, selects one of our backends."""
    if change.name not in OURS:
        return False
    values, _ = OURS[change.name]
    return any(cfg.flag(name) in values for name, _ in change.flags)


def narrow(
    culprit: Change, failing: Config, trial: Callable[[Config, str], StepLike]
) -> dict[str, Any] | None:
    """The tries and what they blame, or None when `culprit` is not one of ours."""
    if not selects_ours(culprit, failing):
        return None
    _, ops = OURS[culprit.name]
    tried: list[dict[str, Any]] = []

    def attempt(cfg: Config, label: str) -> bool:
        step = trial(cfg, label)
        tried.append({"label": label, **asdict(step)})
        return step.passed

    def result(at_fault: str) -> dict[str, Any]:
        return {"family": culprit.name, "tried": tried, "at_fault": at_fault}

    variables = {op: tiers.OPS[op].env_var for op in ops}
    free = [op for op in ops if failing.env.get(variables[op]) != TORCH]
    for op in free:
        var = variables[op]
        if attempt(Change(op, env=((var, TORCH),)).apply(failing), f"failing + {var}={TORCH}"):
            return result(
                f"{op}: its faster tier (what serves it without {var}); the torch reference passes"
            )
    if len(free) > 1:
        forced = tuple((variables[op], TORCH) for op in free)
        names = ", ".join(var for var, _ in forced)
        if attempt(Change("all", env=forced).apply(failing), f"failing + {names}={TORCH}"):
            return result(f"the tiers of {', '.join(free)} together (each alone at torch fails)")
    if EAGER not in failing.flags:
        if attempt(Change(EAGER, flags=((EAGER, ()),)).apply(failing), f"failing + {EAGER}"):
            return result(
                f"CUDA graphs: eager passes (capture or replay in our {culprit.name} adapter)"
            )
    return result(
        f"our {culprit.name} adapter (metadata, layouts), not a kernel tier: "
        "every op at torch" + ("" if EAGER in failing.flags else " and eager") + " still fail"
    )
