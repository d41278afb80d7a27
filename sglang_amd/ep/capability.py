"""Expert parallelism as a capability: our communicator under `--moe-a2a-backend customized`.

Rules in `support.py` (sglang-free), SGLang registration in
`sglang_registration.py`; the protocol is `sglang_amd/capability.py`. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.capability import Capability, TierOf
from sglang_amd.ep.support import (
    A2A_BACKEND,
    FLAG,
    PERMUTE_OPS,
    env_lines,
    ep_flags_used,
    ep_graph_refusals,
    ep_problems,
)


def _graph_refusals(
    server_args: Any, graphs: Any, model_config: Any, tier_of: TierOf
) -> dict[str, str]:
    return ep_graph_refusals(server_args, graphs)


CAPABILITY = Capability(
    name="ep",
    flags=(FLAG,),
    ops=PERMUTE_OPS,
    used=ep_flags_used,
    problems=ep_problems,
    graph_refusals=_graph_refusals,
    registration="sglang_amd.ep.sglang_registration:register",
    env_setups={
        f"{FLAG} (auto)": dict(moe_a2a_backend=A2A_BACKEND, deepep_mode="auto"),
        f"{FLAG} (low_latency)": dict(moe_a2a_backend=A2A_BACKEND, deepep_mode="low_latency"),
    },
    env_lines=env_lines,
    prepare="sglang_amd.ep.sglang_registration:prepare",
)
