"""What our MoE runner serves, checked at start: `--moe-runner-backend amd`, and the
experts of `--quantization amd_mxfp4` (which always run on it).

Called through `moe/capability.py` from the resolution hook (the launcher, while
ServerArgs resolve, before any process starts or weight loads), so a bad
combination fails with one message naming the flag. The model-build checks in
moe/sglang_runner.py repeat the per-layer rules for engines built without the
launcher. The MXFP4-specific rules are in quant/support.py. Never imports sglang.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from sglang_amd.flags import EP_A2A_BACKEND, MOE_RUNNER_BACKEND, QUANTIZATION, server_device
from sglang_amd.gemm.activation import SILU, GatedActivation
from sglang_amd.model_info import moe_sizes, text_config

# Where a MoE model's routed_scaling_factor is applied is decided per model in
# SGLang 0.5.23: on CUDA/MUSA the runner scales the expert sum; elsewhere (ROCm,
# CPU) these models' MoE blocks scale their own output (`not _is_cuda and not
# _is_musa`), and the rest leave it to the runner on every device, which on ROCm
# only some of SGLang's runners do. Architecture -> the MoE block that scales
# itself off CUDA (pinned by tests/test_moe_sglang.py).
SELF_SCALING_OFF_CUDA = {
    **dict.fromkeys(
        (
            "DeepseekV2ForCausalLM",
            "DeepseekV3ForCausalLM",
            "DeepseekV32ForCausalLM",
            "DeepseekV3ForCausalLMNextN",
        ),
        "sglang.srt.models.deepseek_v2.DeepseekV2MoE",
    ),
    **dict.fromkeys(
        ("Glm4MoeForCausalLM", "Glm4MoeForCausalLMNextN"),
        "sglang.srt.models.glm4_moe.Glm4MoeSparseMoeBlock",
    ),
    "Glm4MoeLiteForCausalLM": "sglang.srt.models.glm4_moe_lite.Glm4MoeLiteSparseMoeBlock",
}


def runner_applies_routed_scaling() -> bool:
    """Does our runner multiply by routed_scaling_factor on this machine? As SGLang's
    CUDA runners do on CUDA/MUSA; elsewhere the models that use a factor with our
    runner (SELF_SCALING_OFF_CUDA) scale their own output. The same test as SGLang's
    `is_cuda() or is_musa()` (pinned by tests/test_sglang_contract.py)."""
    if torch.cuda.is_available() and torch.version.cuda is not None:
        return True
    musa = getattr(torch.version, "musa", None) is not None
    return musa and importlib.util.find_spec("torchada") is not None


def runner_activation(config: Any) -> tuple[GatedActivation | None, list[str]]:
    """The gated activation an SGLang `MoeRunnerConfig` (duck-typed) asks for, as
    SGLang's Triton runner computes it, or why our kernels do not compute it.

    Served: gated SiLU (SiLU(gate) * up over halves), and gpt-oss's clamped
    SwiGLU (activation "silu" with gemm1_alpha and gemm1_clamp_limit: SGLang's
    `swiglu_gpt_oss_sigmoid_alpha` over interleaved gate/up rows when
    gate_up_interleaved, its halves variant otherwise). Refused, each named:
    other activations, ungated experts, gemm1_clamp_limit alone (SGLang then
    clamps *after* SiLU), gemm1_beta, and swiglu_limit (DeepSeek-V4's clamp)."""
    problems = []
    activation, gated = getattr(config, "activation", "silu"), getattr(config, "is_gated", True)
    alpha = getattr(config, "gemm1_alpha", None)
    limit = getattr(config, "gemm1_clamp_limit", None)
    if activation != "silu" or not gated:
        problems.append(
            f"activation {activation!r} (gated={gated}); only gated SiLU and gpt-oss's "
            "clamped SwiGLU (silu with gemm1_alpha and gemm1_clamp_limit)"
        )
    if alpha is not None and limit is None:
        problems.append(f"gemm1_alpha={alpha} without gemm1_clamp_limit")
    if alpha is None and limit is not None:
        problems.append(
            f"gemm1_clamp_limit={limit} without gemm1_alpha (SiLU, then clamped: not "
            "gpt-oss's SwiGLU)"
        )
    if getattr(config, "gemm1_beta", None) is not None:
        problems.append(f"gemm1_beta={config.gemm1_beta}")
    swiglu_limit = getattr(config, "swiglu_limit", None)
    if swiglu_limit is not None:
        problems.append(f"swiglu_limit={swiglu_limit} (DeepSeek-V4's clamped SwiGLU)")
    if problems:
        return None, problems
    if alpha is None:
        return SILU, []
    interleaved = bool(getattr(config, "gate_up_interleaved", True))
    return GatedActivation("gpt_oss", float(alpha), float(limit), interleaved), []


def moe_flags_used(server_args: Any) -> list[str]:
    """The flags that send MoE experts to our runner."""
    used = []
    if getattr(server_args, "moe_runner_backend", None) == MOE_RUNNER_BACKEND:
        used.append(f"--moe-runner-backend {MOE_RUNNER_BACKEND}")
    if getattr(server_args, "quantization", None) == QUANTIZATION:
        used.append(f"--quantization {QUANTIZATION}")
    return used


def moe_flag_problems(
    server_args: Any, hf_config: Any | None, *, runner_scales: bool | None = None
) -> list[str]:
    """Why our runner cannot serve this model's experts with these flags; empty when it can.

    `runner_scales`: whether our runner applies routed_scaling_factor on this
    machine (default: `runner_applies_routed_scaling()`).
    """
    ours = moe_flags_used(server_args)
    if not ours:
        return []
    problems = []
    a2a = getattr(server_args, "moe_a2a_backend", None) or "none"
    if a2a not in ("none", EP_A2A_BACKEND):
        problems.append(
            f"{ours[0]} takes the standard dispatch; drop --moe-a2a-backend {a2a} "
            f"(or use --moe-a2a-backend {EP_A2A_BACKEND}, our communicator)"
        )
    if hf_config is not None:
        problems.extend(_routed_scaling_problems(ours[0], hf_config, runner_scales))
    return problems


def _routed_scaling_problems(flag: str, hf_config: Any, runner_scales: bool | None) -> list[str]:
    factor = getattr(text_config(hf_config), "routed_scaling_factor", None)
    if factor in (None, 1, 1.0) or moe_sizes(hf_config)[0] is None:
        return []
    if runner_scales is None:
        runner_scales = runner_applies_routed_scaling()
    arch = next(iter(getattr(hf_config, "architectures", None) or []), "?")
    if runner_scales or arch in SELF_SCALING_OFF_CUDA:
        return []
    return [
        f"{flag} on this device leaves routed_scaling_factor={factor} to the model, and "
        f"{arch} is not known to apply it itself off CUDA; serve it with "
        "--moe-runner-backend auto"
    ]


def moe_graph_refusals(server_args: Any, graphs: Any, moe_tier: str) -> dict[str, str]:
    """Graph phases our MoE cannot be captured in, each with why (SGLang then runs eager).

    The Triton tier reads nothing back to the host (moe/align.py sizes every launch
    from the shapes), so it is captured like any kernel; the torch tier reads expert
    ids on the host. `graphs` is SGLang's resolved cuda_graph_config.
    """
    if not moe_flags_used(server_args) or server_device(server_args) == "cpu":
        return {}
    if moe_tier == "triton":
        return {}
    refusals = {}
    for phase in ("decode", "prefill"):
        if str(getattr(getattr(graphs, phase), "backend", "disabled")) != "disabled":
            refusals[phase] = (
                f"the MoE tier is {moe_tier}, which reads expert ids on the host "
                "(set SGLANG_AMD_MOE_FUSED_TIER=triton)"
            )
    return refusals
