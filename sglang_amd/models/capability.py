"""The model-coverage family as a capability: no flag of its own, on whenever any of
ours is.

Its start rule refuses, under any of our flags, an architecture that
`coverage.ROWS` lists as not served yet, with what is missing; its registration
(`sglang_registration.py`) adds the model-specific resolution SGLang lets a
package add (hybrid sliding-window models on one full KV pool under `amd`).
Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.capability import Capability
from sglang_amd.models.coverage import ROWS, refusal


def our_flags_used(server_args: Any) -> list[str]:
    """Every flag of ours these args select (attention, MoE runner, quantization, EP)."""
    from sglang_amd.attention.capability import CAPABILITY as ATTENTION
    from sglang_amd.ep.capability import CAPABILITY as EP
    from sglang_amd.moe.capability import CAPABILITY as MOE
    from sglang_amd.quant.capability import CAPABILITY as QUANT

    flags = [flag for cap in (ATTENTION, MOE, QUANT, EP) for flag in cap.used(server_args)]
    return list(dict.fromkeys(flags))  # the MoE family also reports --quantization amd_mxfp4


def _problems(server_args: Any, model_config: Any) -> list[str]:
    hf_config = getattr(model_config, "hf_config", None)
    archs = list(getattr(hf_config, "architectures", None) or ())
    why = refusal(archs, our_flags_used(server_args)) if archs else None
    problems = [why] if why else []
    if "GptOssForCausalLM" in archs:
        problems += _gpt_oss_dtype_problems(server_args, hf_config)
    return problems


def _gpt_oss_dtype_problems(server_args: Any, hf_config: Any) -> list[str]:
    """SGLang's GptOssForCausalLM builds its attention and router linears in the
    checkpoint's stored dtype (`params_dtype=config.dtype`) whatever --dtype says:
    any other --dtype feeds them activations of another dtype and the first
    forward dies ("mat1 and mat2 must have the same dtype"). Refused at start."""
    from sglang_amd.quant.support import stored_dtype

    asked = str(getattr(server_args, "dtype", None) or "auto")
    stored = stored_dtype(hf_config)
    if asked == "auto" or stored is None or asked == stored:
        return []
    return [
        f"--dtype {asked} on a gpt-oss checkpoint stored in {stored}: SGLang's "
        f"GptOssForCausalLM builds its attention and router in the stored dtype, so the "
        f"first forward would fail; use --dtype {stored} (or auto)"
    ]


def _env_lines() -> list[str]:
    served = ", ".join(r.name for r in ROWS if r.served)
    refused = ", ".join(r.name for r in ROWS if not r.served)
    return [f"models served (e2e vs HF): {served}", f"models refused at start: {refused}"]


CAPABILITY = Capability(
    name="models",
    flags=(),
    ops=(),
    used=our_flags_used,
    problems=_problems,
    registration="sglang_amd.models.sglang_registration:register",
    env_lines=_env_lines,
)
