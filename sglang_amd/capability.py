"""The capability protocol: one object per family, looped over by the plugin and the CLI.

A capability is what one family (attention, moe, quant now; ep, sparse
attention, mtp next) offers SGLang's users: the flags it owns, the tiered ops it
runs, its start-time checks, the CUDA-graph phases it cannot be captured in, and
the function that registers it with SGLang. `plugin.py` (the resolution hook and
`register`) and `sglang-amd env` only loop over `capabilities()`, so a new family
is one `Capability` in its own folder plus one line in `BUILTIN`; nothing in
`plugin.py` or `cli.py` names a family.

Every callable takes SGLang's objects duck-typed (`server_args`: resolved
ServerArgs or any object with the same attributes; `model_config`: SGLang's
ModelConfig or None), so the checks run without SGLang (`env`, the coming
`doctor`, tests). Never imports sglang; `registration` names the one function
per family that does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sglang_amd.flags import UnsupportedConfigError, server_device

# The families shipped with sglang-amd, in the order their checks and graph
# refusals are reported (the first refusal of a phase is the one logged).
BUILTIN: tuple[str, ...] = (
    "sglang_amd.attention.capability",
    "sglang_amd.moe.capability",
    "sglang_amd.quant.capability",
    "sglang_amd.serving.capability",
    "sglang_amd.ep.capability",
    "sglang_amd.models.capability",
    "sglang_amd.linear_attention.capability",
)

TierOf = Callable[[str], str]

# What users ask for that no capability serves yet (README, `sglang-amd env`).
NOT_YET: tuple[str, ...] = (
    "expert parallelism: the MoRI transport tier, DP attention and batch overlap with"
    " --moe-a2a-backend customized, --ep-size other than --tp-size",
    "DeepSeek-V3.2 / GLM-5 sparse attention (DSA) on a GPU (served on the CPU platform; refused"
    " at start on a GPU, where SGLang's indexer has no forward of ours yet), tree drafts over"
    " DSA (SGLang 0.5.23 refuses top-k > 1 over its 64-token pages)",
    "MTP: any MTP figure on a GPU, sglang-amd mtp train beyond one CPU run on SmolLM2 (no"
    " GPU training run)",
    "day-0 models: Qwen3.5, Kimi-K2.5, DeepSeek-V4 and GLM-5 (refused at start:"
    " models/coverage.py says what each misses); a Triton or aiter tier of Qwen3-Next's Gated"
    " DeltaNet (SGLang's own fla kernels serve it on GPUs; ours is the CPU platform's torch"
    " tier); SGLang's separate sliding-window KV pool (gpt-oss gets one full pool under"
    " --attention-backend amd); any day-0 model figure on a GPU",
    "the aiter tier: no op has an aiter implementation yet (TIER_ORDER keeps its place)",
    "quantized (fp8/fp4) KV caches under --attention-backend amd",
    "any AMD GPU measurement: our Triton kernels have run and been timed on one NVIDIA H200"
    " (BENCHMARKS.md); on MI300X/MI355X only compiled ahead of time (sglang-amd audit)",
)


def _no_refusals(server_args: Any, graphs: Any, model_config: Any, tier_of: TierOf) -> dict:
    return {}


@dataclass(frozen=True)
class Capability:
    """What one family adds to SGLang.

    name:            the family ("attention")
    flags:           the flag values it owns, as users type them
    ops:             tiered ops it runs (`tiers.OPS` names); resolved at start so a
                     forced tier that cannot run here fails before any process starts
    used:            server_args -> the flags of this family these args select
                     (empty: the family is not in use and is asked nothing else)
    problems:        (server_args, model_config) -> why it cannot serve, each naming
                     the flag or value to change; empty when it can
    graph_refusals:  (server_args, graphs, model_config, tier_of) -> {phase: why}
                     for the CUDA-graph phases ("decode", "prefill") it cannot be
                     captured in; `graphs` is SGLang's resolved cuda_graph_config,
                     `tier_of(op)` the tier value serving an op
    registration:    "module:function" that registers it with SGLang (idempotent)
    env_setups:      label -> server-arg values, the setups `sglang-amd env`
                     reports graph phases for
    model_ops:       model_config -> the ops of `ops` a model runs (default: all);
                     what `sglang-amd doctor` reports tiers for
    env_lines:       () -> extra lines `sglang-amd env` prints for this family
                     (choices outside tiers.OPS, e.g. the EP transport)
    prepare:         "module:function" (server_args) run in the launcher once the
                     checks pass: settings SGLang's processes must inherit (its
                     own environment switches); imports sglang
    """

    name: str
    flags: tuple[str, ...]
    ops: tuple[str, ...]
    used: Callable[[Any], list[str]]
    problems: Callable[[Any, Any], list[str]]
    registration: str
    graph_refusals: Callable[[Any, Any, Any, TierOf], dict[str, str]] = _no_refusals
    env_setups: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_ops: Callable[[Any], tuple[str, ...]] | None = None
    env_lines: Callable[[], list[str]] | None = None
    prepare: str | None = None

    def ops_for(self, model_config: Any | None) -> tuple[str, ...]:
        return self.ops if self.model_ops is None else self.model_ops(model_config)


_extra: list[Capability] = []


def capabilities() -> tuple[Capability, ...]:
    """The built-in capabilities, then any added with `add_capability`."""
    built = tuple(importlib.import_module(path).CAPABILITY for path in BUILTIN)
    return (*built, *_extra)


def add_capability(cap: Capability) -> None:
    """Add a capability after the built-ins (a plugin of ours, or a test)."""
    if all(c.name != cap.name for c in capabilities()):
        _extra.append(cap)


def remove_capability(name: str) -> None:
    _extra[:] = [c for c in _extra if c.name != name]


def active(server_args: Any) -> list[Capability]:
    """The capabilities whose flags these server args select."""
    return [cap for cap in capabilities() if cap.used(server_args)]


def check_start(server_args: Any, model_config: Any | None) -> list[Capability]:
    """Every start-time rule of every capability in use; returns those capabilities.

    Raises one `UnsupportedConfigError` listing every problem, then resolves each
    op's tier for the server's device, so a forced tier that cannot run here
    (`TierUnavailableError`) fails in the launcher, not in the scheduler.
    """
    from sglang_amd.tiers import select

    caps = active(server_args)
    problems = [p for cap in caps for p in cap.problems(server_args, model_config)]
    if problems:
        raise UnsupportedConfigError("sglang-amd: " + "; ".join(problems))
    device = server_device(server_args)
    for cap in caps:
        for op in cap.ops_for(model_config):
            select(op, device)
    return caps


def graph_refusals(
    server_args: Any,
    graphs: Any,
    model_config: Any | None = None,
    tier_of: TierOf | None = None,
) -> dict[str, str]:
    """{phase: why} over every capability in use; the first to refuse a phase wins.

    `tier_of` defaults to the tier `tiers.select` picks for the server's device."""
    if tier_of is None:
        from sglang_amd.tiers import select

        device = server_device(server_args)

        def tier_of(op: str) -> str:
            return select(op, device).tier.value

    refusals: dict[str, str] = {}
    for cap in active(server_args):
        for phase, why in cap.graph_refusals(server_args, graphs, model_config, tier_of).items():
            refusals.setdefault(phase, why)
    return refusals


def prepare_all(server_args: Any) -> None:
    """Run the `prepare` step of every capability these server args use."""
    for cap in active(server_args):
        if cap.prepare is not None:
            module, _, name = cap.prepare.partition(":")
            getattr(importlib.import_module(module), name)(server_args)


def register_all() -> None:
    """Run every capability's SGLang registration (each is idempotent)."""
    for cap in capabilities():
        module, _, name = cap.registration.partition(":")
        getattr(importlib.import_module(module), name)()
