"""The MoE family as a capability: our runner `--moe-runner-backend amd`, which also
serves the experts of `--quantization amd_mxfp4`.

Rules in `support.py` (sglang-free), SGLang registration in
`sglang_registration.py`; the protocol is `sglang_amd/capability.py`. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.capability import Capability, TierOf
from sglang_amd.flags import MOE_RUNNER_BACKEND
from sglang_amd.moe.support import moe_flag_problems, moe_flags_used, moe_graph_refusals


def _problems(server_args: Any, model_config: Any) -> list[str]:
    return moe_flag_problems(server_args, getattr(model_config, "hf_config", None))


def _graph_refusals(
    server_args: Any, graphs: Any, model_config: Any, tier_of: TierOf
) -> dict[str, str]:
    return moe_graph_refusals(server_args, graphs, tier_of("moe.fused"))


CAPABILITY = Capability(
    name="moe",
    flags=(f"--moe-runner-backend {MOE_RUNNER_BACKEND}",),
    ops=("moe.fused",),
    used=moe_flags_used,
    problems=_problems,
    graph_refusals=_graph_refusals,
    registration="sglang_amd.moe.sglang_registration:register",
    env_setups={
        f"--moe-runner-backend {MOE_RUNNER_BACKEND}": dict(moe_runner_backend=MOE_RUNNER_BACKEND)
    },
)
