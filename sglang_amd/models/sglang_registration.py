"""SGLang registration of the model-coverage family (called by `plugin.register`).

  a model-override provider   hybrid sliding-window models (gpt-oss, Gemma 3, ...)
  (SGLang's registry)         under --attention-backend amd: one full KV pool

The gpt-oss attention-backend assertion is passed in `plugin._around_model_hooks`
(`patches/gpt_oss_backend_check.py`): SGLang has no extension point there.
Imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.flags import ATTENTION_BACKEND

_registered = False


def full_pool_for_amd(server_args: Any, hf_config: Any) -> dict:
    """SGLang's model-override provider for hybrid sliding-window models (gpt-oss,
    Gemma 3, ...): under `amd`, one full-size KV pool for every layer.

    SGLang gives such models a second, window-sized pool for their sliding
    layers, addressed through a slot translation our kernels do not read yet;
    with one pool the sliding layers read the same slots as the full ones and
    the window is applied in the kernels (the same math, more KV memory).
    """
    import logging

    from sglang.srt.arg_groups.model_override_base import resolving_view

    from sglang_amd.attention.support import backend_flags_using_amd

    view = resolving_view(server_args)
    if not backend_flags_using_amd(view) or view.disable_hybrid_swa_memory:
        return {}
    logging.getLogger(__name__).warning(
        "sglang-amd: --attention-backend %s keeps this hybrid sliding-window model's KV "
        "cache in one full pool (SGLang's separate window pool is not read by our "
        "kernels yet): the same attention, more KV memory",
        ATTENTION_BACKEND,
    )
    return {"disable_hybrid_swa_memory": True}


def _hybrid_swa_architecture(architecture: str) -> bool:
    from sglang.srt.configs.model_config import is_hybrid_swa_model

    return is_hybrid_swa_model([architecture])


def register() -> None:
    """Add our model-override provider to SGLang's registry. Idempotent."""
    global _registered
    if _registered:
        return
    from sglang.srt.arg_groups.model_override_base import register_model_override_predicate

    register_model_override_predicate(_hybrid_swa_architecture)(full_pool_for_amd)
    _registered = True
