"""What `--moe-runner-backend amd` and `--quantization amd_mxfp4` serve, checked at start.

Called from the resolution hook in plugin.py (the launcher, while ServerArgs
resolve, before any process starts or weight loads), so a bad combination fails
with one message naming the flag. The model-build checks in
moe/sglang_runner.py and quant/sglang_mxfp4.py repeat the per-layer rules for
engines built without the launcher. Imports sglang only inside
`runner_applies_routed_scaling` (the device rule SGLang's models follow).
"""

from __future__ import annotations

from typing import Any

from sglang_amd.attention.support import UnsupportedConfigError
from sglang_amd.quant.mxfp4 import BLOCK

RUNNER_NAME = "amd"
QUANT_NAME = "amd_mxfp4"

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
    runner (SELF_SCALING_OFF_CUDA) scale their own output."""
    from sglang.srt.utils import is_cuda, is_musa

    return is_cuda() or is_musa()


def _moe_sizes(hf_config: Any) -> tuple[int | None, int | None]:
    """(hidden_size, moe_intermediate_size) of a MoE config; (None, None) if dense."""
    text = getattr(hf_config, "text_config", None) or hf_config
    experts = next(
        (
            getattr(text, n)
            for n in ("num_experts", "n_routed_experts", "num_local_experts")
            if getattr(text, n, None)
        ),
        None,
    )
    if not experts:
        return None, None
    inter = getattr(text, "moe_intermediate_size", None) or getattr(text, "intermediate_size", None)
    return getattr(text, "hidden_size", None), inter


def moe_flags_used(server_args: Any) -> bool:
    return (
        getattr(server_args, "moe_runner_backend", None) == RUNNER_NAME
        or getattr(server_args, "quantization", None) == QUANT_NAME
    )


def moe_flag_problems(
    server_args: Any, hf_config: Any | None, *, runner_scales: bool | None = None
) -> list[str]:
    """Why these flags cannot serve this model; empty when they can.

    `runner_scales`: whether our runner applies routed_scaling_factor on this
    machine (default: `runner_applies_routed_scaling()`).
    """
    problems = []
    runner = getattr(server_args, "moe_runner_backend", None)
    quant = getattr(server_args, "quantization", None)
    a2a = getattr(server_args, "moe_a2a_backend", None) or "none"
    ours = [f"--moe-runner-backend {RUNNER_NAME}"] * (runner == RUNNER_NAME)
    ours += [f"--quantization {QUANT_NAME}"] * (quant == QUANT_NAME)
    if ours and a2a != "none":
        problems.append(f"{ours[0]} takes the standard dispatch; drop --moe-a2a-backend {a2a}")
    if ours and hf_config is not None:
        problems.extend(_routed_scaling_problems(ours[0], hf_config, runner_scales))
    if quant == QUANT_NAME:
        if runner not in (None, "auto", RUNNER_NAME):
            problems.append(
                f"--quantization {QUANT_NAME} experts run on --moe-runner-backend {RUNNER_NAME} "
                f"(or auto), not {runner}"
            )
        hidden, inter = _moe_sizes(hf_config) if hf_config is not None else (None, None)
        tp = int(getattr(server_args, "tp_size", 1) or 1)
        ep = int(getattr(server_args, "ep_size", 1) or 1)
        moe_dp = int(getattr(server_args, "moe_dp_size", 1) or 1)
        # SGLang splits the experts' intermediate over tp / ep / moe_dp ranks.
        moe_tp = max(tp // ep // moe_dp, 1)
        per_rank = inter // moe_tp if inter else None
        for name, size in (("hidden_size", hidden), ("moe_intermediate_size per rank", per_rank)):
            if size is not None and size % BLOCK:
                problems.append(
                    f"--quantization {QUANT_NAME} quantizes blocks of {BLOCK} along the reduction "
                    f"dimension, but this model's {name} is {size}; serve it without "
                    "--quantization (or with a smaller --tp-size)"
                )
    return problems


def _routed_scaling_problems(flag: str, hf_config: Any, runner_scales: bool | None) -> list[str]:
    text = getattr(hf_config, "text_config", None) or hf_config
    factor = getattr(text, "routed_scaling_factor", None)
    if factor in (None, 1, 1.0) or _moe_sizes(hf_config)[0] is None:
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


def check_moe_flags(server_args: Any, hf_config: Any | None) -> None:
    """Raise one `UnsupportedConfigError` listing every problem, or return.

    Also resolves the MoE / MXFP4 kernel tiers for the server's device, so a forced
    tier that cannot run here (SGLANG_AMD_MOE_TIER=triton on a CPU) fails now with
    `TierUnavailableError` rather than in the scheduler process.
    """
    problems = moe_flag_problems(server_args, hf_config)
    if problems:
        raise UnsupportedConfigError("sglang-amd: " + "; ".join(problems))
    if moe_flags_used(server_args):
        from sglang_amd.tiers import select

        device = "cpu" if getattr(server_args, "device", None) == "cpu" else "cuda"
        for op in ("moe.fused", "quant.mxfp4", "quant.mxfp4_linear"):
            select(op, device)


def moe_graph_refusals(server_args: Any, graphs: Any, moe_tier: str) -> dict[str, str]:
    """Graph phases our MoE cannot be captured in, each with why (SGLang then runs eager).

    The Triton tier reads nothing back to the host (moe/align.py sizes every launch
    from the shapes), so it is captured like any kernel; the torch tier reads expert
    ids on the host. `graphs` is SGLang's resolved cuda_graph_config.
    """
    device = str(getattr(server_args, "device", None) or "cuda")
    if not moe_flags_used(server_args) or device.startswith("cpu") or moe_tier == "triton":
        return {}
    refusals = {}
    for phase in ("decode", "prefill"):
        if str(getattr(getattr(graphs, phase), "backend", "disabled")) != "disabled":
            refusals[phase] = (
                f"the MoE tier is {moe_tier}, which reads expert ids on the host "
                "(set SGLANG_AMD_MOE_FUSED_TIER=triton)"
            )
    return refusals
