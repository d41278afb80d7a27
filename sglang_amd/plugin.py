"""The one module that registers sglang-amd with SGLang.

SGLang calls `register()` (entry point group `sglang.srt.plugins`) in every
process it starts: launcher, engine, scheduler, detokenizer. It must therefore
be idempotent and cheap; heavy modules (the backend classes) import only when
SGLang builds them. It names no family: it runs every capability's registration
(`capability.capabilities()`: attention, moe, quant; each family's
`sglang_registration.py` uses SGLang's own extension points, and HookRegistry
patches in `patches/` where there are none) and installs two resolution hooks:
every capability's start-time checks and CUDA-graph refusals, and before SGLang's
per-model hooks the refusals those would preempt.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_registered = False
# The named step of SGLang's ServerArgs resolution our checks run after.
RESOLUTION_STEP = "handle_attention_backend_compatibility"
# The earlier step whose per-model hooks some refusals must precede.
MODEL_STEP = "handle_model_specific_adjustments"
# The name our graph edits are declared under in SGLang's resolution record.
RESOLUTION_NAME = "sglang_amd_attention"


def _validate_flags(server_args: Any, previous) -> None:
    """Resolution-hook wrapper: SGLang's own step first, then every capability in use.

    Raises at start (in the launcher, before any process or weight) for a flag
    combination a capability cannot serve or a forced tier that cannot run here,
    and turns off, with one warning each, the CUDA-graph phases a capability
    cannot be captured in (`capability.graph_refusals`).
    """
    previous(server_args)
    from sglang.srt.arg_groups.model_override_base import model_config_of
    from sglang.srt.arg_groups.overrides import declare_resolution, resolved_view
    from sglang.srt.model_executor.cuda_graph_config import Backend, Phase, with_phase

    from sglang_amd import capability

    view = resolved_view(server_args)
    if not capability.active(view):
        return
    model_config = model_config_of(server_args)
    capability.check_start(view, model_config)
    capability.prepare_all(view)
    graphs = view.cuda_graph_config
    refusals = capability.graph_refusals(view, graphs, model_config)
    for phase, why in refusals.items():
        logger.warning("sglang-amd: %s runs without CUDA graphs: %s", phase, why)
        graphs = with_phase(graphs, getattr(Phase, phase.upper()), backend=Backend.DISABLED)
    if refusals:
        declare_resolution(server_args, RESOLUTION_NAME, cuda_graph_config=graphs)


def _around_model_hooks(server_args: Any, previous) -> None:
    """Resolution-hook wrapper around SGLang's per-model step, when any flag of ours
    is in use: first the refusals that step would otherwise preempt (an
    architecture our backends do not serve yet, `models.coverage`; for our
    attention backend `attention.support.refusals_before_model_hooks`); then,
    under our attention backend, for a DSA model the step run where no CUDA device
    exists (`patches.cpu_dsa_resolution`) and the KV-cache dtype it imposes for its
    own DSA kernels given back to the user's choice, and for gpt-oss the step's
    closed list of attention backends with ours on it
    (`patches.gpt_oss_backend_check`); under `--quantization amd_mxfp4`, the
    --dtype SGLang replaces with bfloat16 for a gpt-oss mxfp4 checkpoint given
    back when ours serve it (`quant.support.gpt_oss_dtype`)."""
    from sglang.srt.arg_groups.model_override_base import model_config_of

    from sglang_amd.attention import support
    from sglang_amd.flags import UnsupportedConfigError
    from sglang_amd.models.capability import CAPABILITY as MODELS

    if not MODELS.used(server_args):
        previous(server_args)
        return
    model_config = model_config_of(server_args)
    reasons = MODELS.problems(server_args, model_config)
    reasons += support.refusals_before_model_hooks(server_args, model_config)
    if reasons:
        raise UnsupportedConfigError("sglang-amd: " + "; ".join(reasons))
    from sglang.srt.arg_groups.overrides import declare_resolution, resolved_view

    from sglang_amd.patches import cpu_dsa_resolution, gpt_oss_backend_check

    amd_attention = bool(support.backend_flags_using_amd(server_args))
    dsa = amd_attention and support.is_dsa_model(model_config)
    if dsa:
        with cpu_dsa_resolution.no_cuda_capability():
            previous(server_args)
    elif amd_attention and gpt_oss_backend_check.applies(model_config):
        with gpt_oss_backend_check.amd_listed():
            previous(server_args)
    else:
        previous(server_args)
    declared = {}
    if dsa:
        kv = support.dsa_kv_cache_dtype(server_args, resolved_view(server_args).kv_cache_dtype)
        if kv is not None:
            declared["kv_cache_dtype"] = kv
    from sglang_amd.quant.support import gpt_oss_dtype

    dtype = gpt_oss_dtype(server_args, getattr(model_config, "hf_config", None))
    if dtype is not None:
        declared["dtype"] = dtype
    if declared:
        declare_resolution(server_args, RESOLUTION_NAME, **declared)


def register() -> None:
    """Add every capability's flag values and backends to SGLang. Safe to call many times."""
    global _registered
    if _registered:
        return
    from sglang.srt.arg_groups.resolution_hooks import register_resolution_hook

    from sglang_amd import capability

    capability.register_all()
    register_resolution_hook(RESOLUTION_STEP)(_validate_flags)
    register_resolution_hook(MODEL_STEP)(_around_model_hooks)
    _registered = True
    logger.debug("sglang-amd registered: %s", [c.name for c in capability.capabilities()])
