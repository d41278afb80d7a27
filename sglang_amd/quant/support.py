"""What `--quantization amd_mxfp4` serves, checked at start.

Called through `quant/capability.py` from the resolution hook, before any
process starts or weight loads: sizes, the MoE runner, and whether a
pre-quantized checkpoint's format is one we read (`checkpoint_problems`). Also
`gpt_oss_dtype`, the --dtype SGLang's gpt-oss defaults would replace.
The rules our MoE runner adds for the experts (a2a, routed scaling) are the MoE
family's (moe/support.py); the per-layer checks at model build are in
quant/sglang_mxfp4.py. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.flags import MOE_RUNNER_BACKEND, QUANTIZATION
from sglang_amd.model_info import moe_sizes
from sglang_amd.quant.mxfp4 import BLOCK
from sglang_amd.quant.mxfp4_checkpoint import CheckpointLayoutError, parse_mxfp4_checkpoint


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
        # SGLang's per-model defaults pick a runner where the flag says auto (gpt-oss
        # with an mxfp4 checkpoint: flashinfer_mxfp4 on SM100/SM120).
        problems.append(
            f"--quantization {QUANTIZATION} experts run on --moe-runner-backend "
            f"{MOE_RUNNER_BACKEND} (or auto), not {runner}; if you did not ask for "
            f"{runner}, SGLang's defaults for this model did: pass --moe-runner-backend "
            f"{MOE_RUNNER_BACKEND}"
        )
    problems.extend(checkpoint_problems(hf_config))
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


def _quantization_config(hf_config: Any | None) -> dict | None:
    """config.json's quantization_config as a dict (transformers keeps a dict, or an
    object with to_dict()), None for a float checkpoint."""
    quant = getattr(hf_config, "quantization_config", None) if hf_config is not None else None
    if quant is not None and not isinstance(quant, dict):
        quant = quant.to_dict() if hasattr(quant, "to_dict") else vars(quant)
    return quant or None


def checkpoint_problems(hf_config: Any | None) -> list[str]:
    """Why `--quantization amd_mxfp4` cannot read this pre-quantized checkpoint (its
    config.json `quantization_config`), before any process starts; empty for a float
    checkpoint or one it reads (a Quark MXFP4 export, gpt-oss's mxfp4)."""
    quant = _quantization_config(hf_config)
    if not quant:
        return []
    try:
        parse_mxfp4_checkpoint(quant, getattr(hf_config, "architectures", None))
    except CheckpointLayoutError as err:
        return [str(err)]
    return []


def stored_dtype(hf_config: Any | None) -> str | None:
    """The dtype config.json says the checkpoint's tensors are stored in ("bfloat16"),
    or None when it does not say."""
    stored = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None)
    return str(stored).removeprefix("torch.") if stored is not None else None


def gpt_oss_dtype(server_args: Any, hf_config: Any | None) -> str | None:
    """The --dtype to declare back after SGLang's gpt-oss defaults, or None.

    For a checkpoint whose quantization_config says quant_method "mxfp4", SGLang's
    `_gpt_oss_overrides` (arg_groups/model_overrides/gpt_oss.py) declares dtype
    bfloat16 whatever --dtype says ("use bf16 for mxfp4 triton kernels": its own
    kernels). Under `--quantization amd_mxfp4` our kernels serve those experts for
    float32 and float16 activations too (W4A16: the weights are decoded in the
    GEMM), so an explicit --dtype stands when it is the checkpoint's own. Any other
    --dtype is refused at start by the models capability, for every gpt-oss
    (`models.capability`: SGLang builds its attention and router linears in the
    stored dtype). `server_args`: the raw record (the user's flags, before
    declarations)."""
    if getattr(server_args, "quantization", None) != QUANTIZATION:
        return None
    dtype = getattr(server_args, "dtype", None)
    quant = _quantization_config(hf_config)
    if dtype in (None, "auto", "bfloat16") or not quant:
        return None
    if str(quant.get("quant_method", "")).lower() != "mxfp4":
        return None
    return dtype if dtype == stored_dtype(hf_config) else None
