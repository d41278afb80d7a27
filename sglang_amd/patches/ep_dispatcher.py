"""`--moe-a2a-backend customized` builds our expert-parallel dispatcher.

SGLang 0.5.23 knows the value (`MoeA2ABackend.CUSTOMIZED`) and lets it through
resolution, but has no registry for dispatchers: `create_moe_dispatcher` raises
NotImplementedError for it, and the CLI's choice list leaves it out. Two changes,
both only for that value:

  create_moe_dispatcher(moe_runner_config, quant_method)  AROUND hook: our
      `ep.sglang_dispatcher.AmdEpDispatcher` when the backend is customized,
      SGLang's own choice otherwise
  post_experts_output_is_complete(is_tp_path)  AROUND hook: True when the
      backend is customized. Our combine returns each token's full sum to its
      rank (as SGLang says of its flashinfer and pplx combines), so no MoE-TP or
      EP sum is owed afterwards; SGLang's answer (False for any other backend)
      would have a stage boundary add replicated shared-expert output on rank 0 only
  the `--moe-a2a-backend` Arg's choices gain "customized" (the Literal already
      admits it for ServerArgs built in Python)

Registered from ep/sglang_registration.py in every process.
"""

from __future__ import annotations

import typing
from typing import Any

from sglang_amd.flags import EP_A2A_BACKEND

_LAYER = "sglang.srt.layers.moe.fused_moe_triton.layer"
_UTILS = "sglang.srt.layers.moe.utils"
TARGETS = {
    f"{_LAYER}.create_moe_dispatcher": ("moe_runner_config", "quant_method"),
    f"{_UTILS}.post_experts_output_is_complete": ("is_tp_path",),
}


def _create_moe_dispatcher(original, moe_runner_config, quant_method, *args, **kwargs) -> Any:
    from sglang.srt.layers.moe.utils import get_moe_a2a_backend

    if not get_moe_a2a_backend().is_customized():
        return original(moe_runner_config, quant_method, *args, **kwargs)
    from sglang_amd.ep.sglang_dispatcher import AmdEpDispatcher

    return AmdEpDispatcher(moe_runner_config)


def _post_experts_output_is_complete(original, *args, **kwargs) -> bool:
    from sglang.srt.layers.moe.utils import get_moe_a2a_backend

    if get_moe_a2a_backend().is_customized():
        return True
    return original(*args, **kwargs)


def a2a_arg() -> Any:
    """The `Arg` annotation of ServerArgs.moe_a2a_backend (its CLI choices)."""
    from sglang.srt.server_args import ServerArgs

    hint = typing.get_type_hints(ServerArgs, include_extras=True)["moe_a2a_backend"]
    return next(m for m in hint.__metadata__ if hasattr(m, "choices"))


def register() -> None:
    """Idempotent."""
    from sglang_amd.patches import register_around_hooks

    choices = a2a_arg().choices
    if EP_A2A_BACKEND not in choices:
        choices.append(EP_A2A_BACKEND)
    register_around_hooks(
        __name__,
        {
            f"{_LAYER}.create_moe_dispatcher": _create_moe_dispatcher,
            f"{_UTILS}.post_experts_output_is_complete": _post_experts_output_is_complete,
        },
    )
