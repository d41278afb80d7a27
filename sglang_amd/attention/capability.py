"""The attention family as a capability: `--attention-backend amd` and its siblings.

Rules live in `support.py` (sglang-free); SGLang registration in
`sglang_registration.py`. `capability.py` at the package root loops over this
object; see there for the protocol. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.attention.support import (
    DSA_OPS,
    backend_flags_using_amd,
    cuda_graph_refusals,
    is_dsa_model,
    unsupported_reasons,
)
from sglang_amd.capability import Capability, TierOf
from sglang_amd.flags import ATTENTION_BACKEND


def _used(server_args: Any) -> list[str]:
    return [f"{flag} {ATTENTION_BACKEND}" for flag in backend_flags_using_amd(server_args)]


def _graph_refusals(
    server_args: Any, graphs: Any, model_config: Any, tier_of: TierOf
) -> dict[str, str]:
    return cuda_graph_refusals(
        server_args,
        graphs,
        tier_of("attention.decode"),
        tier_of("attention.extend"),
        model_config=model_config,
    )


def _model_ops(model_config: Any) -> tuple[str, ...]:
    dsa = DSA_OPS if is_dsa_model(model_config) else ()
    return ("attention.extend", "attention.decode", *dsa)


CAPABILITY = Capability(
    name="attention",
    flags=tuple(
        f"{flag} {ATTENTION_BACKEND}"
        for flag in (
            "--attention-backend",
            "--prefill-attention-backend",
            "--decode-attention-backend",
            "--speculative-draft-attention-backend",
        )
    ),
    ops=("attention.extend", "attention.decode", *DSA_OPS),
    used=_used,
    problems=unsupported_reasons,
    graph_refusals=_graph_refusals,
    registration="sglang_amd.attention.sglang_registration:register",
    model_ops=_model_ops,
    env_setups={
        f"--attention-backend {ATTENTION_BACKEND}": dict(attention_backend=ATTENTION_BACKEND),
        "  + --speculative-algorithm EAGLE": dict(
            attention_backend=ATTENTION_BACKEND, speculative_algorithm="EAGLE"
        ),
    },
)
