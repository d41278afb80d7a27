"""The quantization family as a capability: `--quantization amd_mxfp4`.

Its experts run on the MoE family's runner (whose capability owns their graph
rules); dense MXFP4 linears run on `quant.mxfp4_linear`, whose tiers are both
graph-safe, so this capability refuses no graph phase. Rules in `support.py`,
SGLang registration in `sglang_registration.py`. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.capability import Capability
from sglang_amd.flags import QUANTIZATION
from sglang_amd.quant.support import quant_flag_problems, quant_flags_used


def _problems(server_args: Any, model_config: Any) -> list[str]:
    return quant_flag_problems(server_args, getattr(model_config, "hf_config", None))


CAPABILITY = Capability(
    name="quant",
    flags=(f"--quantization {QUANTIZATION}",),
    ops=("quant.mxfp4", "quant.mxfp4_linear"),
    used=quant_flags_used,
    problems=_problems,
    registration="sglang_amd.quant.sglang_registration:register",
)
