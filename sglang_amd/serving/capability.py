"""The serving family as a capability: always on, owns no flag.

Its registration installs the request checks (`validation.py`, through
`patches/request_validation.py`) in every process that loads the plugin, so a
server that loads sglang-amd refuses a request that would kill it whatever
backends it runs. It selects no flag, so it has no start rule and refuses no
CUDA-graph phase. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.capability import Capability


def _used(server_args: Any) -> list[str]:
    return []


def _problems(server_args: Any, model_config: Any) -> list[str]:
    return []


CAPABILITY = Capability(
    name="serving",
    flags=(),
    ops=(),
    used=_used,
    problems=_problems,
    registration="sglang_amd.serving.sglang_registration:register",
)
