"""Let `--moe-runner-backend amd` reach bf16/fp16/fp32 (unquantized) MoE layers.

SGLang's `UnquantizedFusedMoEMethod.create_moe_runner` picks its runner from a
closed list (triton, deep_gemm, flashinfer, ...; on CPU it bypasses runners and
calls its native loop), so a registered out-of-tree runner name is never built
for unquantized experts. Two AROUND hooks close that gap, and only when the flag
names our runner; every other configuration runs SGLang's code untouched:

  create_moe_runner(layer, config) -> MoeRunner("amd") instead of SGLang's choice
  apply(layer, dispatch_output)     -> that runner with the layer's w13/w2

Registered with `HookRegistry` from plugin.py; SGLang applies hooks once per process.
"""

from __future__ import annotations

from typing import Any

_CLASS = "sglang.srt.layers.quantization.unquant.UnquantizedFusedMoEMethod"
TARGETS = {
    f"{_CLASS}.create_moe_runner": ("self", "layer", "moe_runner_config"),
    f"{_CLASS}.apply": ("self", "layer", "dispatch_output"),
}


def _create_moe_runner(original, self, layer, moe_runner_config, *args, **kwargs) -> Any:
    from sglang_amd.flags import MOE_RUNNER_BACKEND
    from sglang_amd.moe.sglang_runner import check_runner_config, runner_requested

    if not runner_requested():
        return original(self, layer, moe_runner_config, *args, **kwargs)
    from sglang.srt.layers.moe.moe_runner import MoeRunner
    from sglang.srt.layers.moe.utils import resolve_moe_runner_backend

    check_runner_config(moe_runner_config, with_bias=self.with_bias)
    if self.use_triton_kernels:
        raise ValueError(
            f"--moe-runner-backend {MOE_RUNNER_BACKEND} reads experts in SGLang's standard layout; "
            "this model asked for the triton_kernels layout"
        )
    self.moe_runner_config = moe_runner_config
    self.runner = MoeRunner(resolve_moe_runner_backend(MOE_RUNNER_BACKEND), moe_runner_config)
    self._aiter_runner = None
    return None


def _apply(original, self, layer, dispatch_output, *args, **kwargs) -> Any:
    from sglang_amd.flags import MOE_RUNNER_BACKEND
    from sglang_amd.moe.sglang_runner import AmdMoeQuantInfo

    runner = getattr(self, "runner", None)
    if runner is None or runner.runner_backend.value != MOE_RUNNER_BACKEND:
        return original(self, layer, dispatch_output, *args, **kwargs)
    return runner.run(dispatch_output, AmdMoeQuantInfo(w13=layer.w13_weight, w2=layer.w2_weight))


def register() -> None:
    """Register the hooks with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(
        __name__, {f"{_CLASS}.create_moe_runner": _create_moe_runner, f"{_CLASS}.apply": _apply}
    )
