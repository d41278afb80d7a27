"""What `--quantization amd_mxfp4` serves, checked at start.

Called through `quant/capability.py` from the resolution hook, before any
process starts or weight loads. The rules our MoE runner adds for the experts
(a2a, routed scaling) are the MoE family's (moe/support.py); the per-layer
checks at model build are in quant/sglang_mxfp4.py. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.flags import MOE_RUNNER_BACKEND, QUANTIZATION
from sglang_amd.model_info import moe_sizes
from sglang_amd.quant.mxfp4 import BLOCK


def quant_flags_used(server_args: Any) -> list[str]:
    if getattr(server_args, "quantization", None) == QUANTIZATION:
        return [f"--quantization {QUANTIZATION}"]
    return []


def quant_flag_problems(server_args: Any, hf_config: Any | None) -> list[str]:
    """Why `--quantization amd_mxfp4` cannot serve this model; empty when it can."""
    if not quant_flags_used(server_args):
        return []
    problems = []
    runner = getattr(server_args, "moe_runner_backend", None)
    if runner not in (None, "auto", MOE_RUNNER_BACKEND):
        problems.append(
            f"--quantization {QUANTIZATION} experts run on --moe-runner-backend "
            f"{MOE_RUNNER_BACKEND} (or auto), not {runner}"
        )
    hidden, inter = moe_sizes(hf_config) if hf_config is not None else (None, None)
    tp = int(getattr(server_args, "tp_size", 1) or 1)
    ep = int(getattr(server_args, "ep_size", 1) or 1)
    moe_dp = int(getattr(server_args, "moe_dp_size", 1) or 1)
    # SGLang splits the experts' intermediate over tp / ep / moe_dp ranks.
    moe_tp = max(tp // ep // moe_dp, 1)
    per_rank = inter // moe_tp if inter else None
    for name, size in (("hidden_size", hidden), ("moe_intermediate_size per rank", per_rank)):
        if size is not None and size % BLOCK:
            problems.append(
                f"--quantization {QUANTIZATION} quantizes blocks of {BLOCK} along the reduction "
                f"dimension, but this model's {name} is {size}; serve it without "
                "--quantization (or with a smaller --tp-size)"
            )
    return problems
