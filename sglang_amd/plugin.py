"""The one module that registers sglang-amd with SGLang.

SGLang calls `register()` (entry point group `sglang.srt.plugins`) in every
process it starts: launcher, engine, scheduler, detokenizer. It must therefore
be idempotent and cheap; heavy modules (the backend classes) import only when
SGLang builds them. Everything goes through SGLang's own extension points:
the flag-choice adders in `sglang.srt.arg_groups.choices`, the attention backend
registry, a named resolution hook for start-up validation, the MoE runner-core
registry, the quantization registry, and HookRegistry where there is no extension point
(patches/: unquantized MoE runner choice; torch_native's MLA prefill bug; the
draft-backend factory; SGLang's ROCm allow-list of quantization methods).

  --attention-backend amd        attention/backend.py
  --speculative-draft-attention-backend amd
                                 attention/draft_backend.py (+ patches/draft_backends.py)
  --moe-runner-backend amd       moe/sglang_runner.py (+ patches/unquantized_moe.py)
  --quantization amd_mxfp4       quant/sglang_mxfp4.py
"""

from __future__ import annotations

import logging
from typing import Any

from sglang_amd.attention.support import BACKEND_NAME

logger = logging.getLogger(__name__)

_registered = False


def _create_attention_backend(model_runner: Any):
    from sglang_amd.attention.backend import AmdAttnBackend

    return AmdAttnBackend(model_runner)


def _validate_flags(server_args: Any, previous) -> None:
    """Resolution-hook wrapper: SGLang's own step first, then our rules (attention, MoE).

    Also turns off, with one warning each, the CUDA-graph phases our kernels
    cannot be captured in (`attention.support.cuda_graph_refusals`,
    `moe.support.moe_graph_refusals`): full decode graphs (with speculative
    decoding: target verify and draft decode) run on the Triton attention tier;
    prefill graphs stay eager for our attention; a torch-tier MoE refuses both.
    """
    previous(server_args)
    from sglang.srt.arg_groups.model_override_base import model_config_of
    from sglang.srt.arg_groups.overrides import declare_resolution, resolved_view
    from sglang.srt.model_executor.cuda_graph_config import Backend, Phase, with_phase

    from sglang_amd.attention.support import (
        backend_flags_using_amd,
        check_server_args,
        cuda_graph_refusals,
    )
    from sglang_amd.moe.support import check_moe_flags, moe_flags_used, moe_graph_refusals
    from sglang_amd.tiers import select

    view = resolved_view(server_args)
    moe, attention = moe_flags_used(view), bool(backend_flags_using_amd(view))
    model_config = model_config_of(server_args) if moe or attention else None
    if moe:
        check_moe_flags(view, getattr(model_config, "hf_config", None))
    if attention:
        check_server_args(view, model_config)
    if not (moe or attention):
        return
    graphs = view.cuda_graph_config
    device = "cpu" if str(getattr(view, "device", "cuda")).startswith("cpu") else "cuda"
    refusals: dict[str, str] = {}
    if attention:
        tiers = [select(f"attention.{m}", device).tier.value for m in ("decode", "extend")]
        refusals.update(cuda_graph_refusals(view, graphs, *tiers, model_config=model_config))
    if moe:
        moe_tier = select("moe.fused", device).tier.value
        for phase, why in moe_graph_refusals(view, graphs, moe_tier).items():
            refusals.setdefault(phase, why)
    for phase, why in refusals.items():
        logger.warning("sglang-amd: %s runs without CUDA graphs: %s", phase, why)
        graphs = with_phase(graphs, getattr(Phase, phase.upper()), backend=Backend.DISABLED)
    if refusals:
        declare_resolution(server_args, "sglang_amd_attention", cuda_graph_config=graphs)


def register() -> None:
    """Add our flag values and backends to SGLang. Safe to call many times."""
    global _registered
    if _registered:
        return
    from sglang.srt.arg_groups.choices import (
        ATTENTION_BACKEND_CHOICES,
        DRAFT_ATTENTION_BACKEND_CHOICES,
        add_attention_backend_choices,
        add_draft_attention_backend_choices,
    )
    from sglang.srt.arg_groups.resolution_hooks import register_resolution_hook
    from sglang.srt.layers.attention.attention_registry import register_attention_backend

    if BACKEND_NAME not in ATTENTION_BACKEND_CHOICES:
        add_attention_backend_choices([BACKEND_NAME])
    if BACKEND_NAME not in DRAFT_ATTENTION_BACKEND_CHOICES:
        add_draft_attention_backend_choices([BACKEND_NAME])
    register_attention_backend(BACKEND_NAME)(_create_attention_backend)
    register_resolution_hook("handle_attention_backend_compatibility")(_validate_flags)
    from sglang_amd.patches import cpu_speculative, draft_backends, torch_native_mla

    torch_native_mla.register()
    draft_backends.register()
    cpu_speculative.register()
    _register_moe()
    _registered = True
    logger.debug("sglang-amd registered: --attention-backend %s", BACKEND_NAME)


def _register_moe() -> None:
    from sglang.srt.arg_groups.choices import QUANTIZATION_CHOICES, add_quantization_method_choices
    from sglang.srt.layers.quantization import QUANTIZATION_METHODS

    from sglang_amd.moe import sglang_runner
    from sglang_amd.patches import rocm_quantization, unquantized_moe
    from sglang_amd.quant.sglang_mxfp4 import QUANT_NAME, AmdMxfp4Config

    sglang_runner.register()
    unquantized_moe.register()
    rocm_quantization.register()
    if QUANT_NAME not in QUANTIZATION_CHOICES:
        add_quantization_method_choices([QUANT_NAME])
    QUANTIZATION_METHODS.setdefault(QUANT_NAME, AmdMxfp4Config)
