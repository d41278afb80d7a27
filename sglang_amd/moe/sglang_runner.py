"""SGLang adapter: our fused MoE as the MoE runner `--moe-runner-backend amd`.

  FusedMoE layer -> quant method .apply(layer, dispatch_output)
    -> MoeRunner("amd").run(dispatch_output, AmdMoeQuantInfo)
    -> AmdMoeRunnerCore.run_from_dispatch -> ExpertsOp (moe/experts.py: Triton | torch)
    -> StandardCombineInput

Registered with SGLang's own extension points (`register_moe_runner_core`,
which also registers the name, and `add_moe_runner_backend_choices`). Which
quant methods hand their layers to this runner: our MXFP4 method
(quant/sglang_mxfp4.py) always, and SGLang's unquantized method when the flag
asks for it (patches/unquantized_moe.py; it has no hook of its own). The
layer's gated activation comes from its runner config (`support.runner_activation`:
SiLU, or gpt-oss's clamped SwiGLU), its expert biases from the quant info or the
layer (`layer_biases`).

Imports sglang: only plugin.py and the quant method import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sglang.srt.layers.moe.moe_runner.base import (
    DispatchMoeRunnerCore,
    MoeQuantInfo,
    MoeRunnerConfig,
)
from sglang.srt.layers.moe.utils import (
    MoeRunnerBackendLike,
    get_moe_a2a_backend,
    get_moe_runner_backend,
    resolve_moe_runner_backend,
)

from sglang_amd import trace
from sglang_amd.flags import EP_A2A_BACKEND, MOE_RUNNER_BACKEND, UnsupportedConfigError
from sglang_amd.gemm.activation import GatedActivation
from sglang_amd.moe.experts import ExpertsOp
from sglang_amd.moe.support import runner_activation, runner_applies_routed_scaling
from sglang_amd.moe.weights import Mxfp4Experts


class MoeConfigError(UnsupportedConfigError):
    """A MoE layer our runner cannot serve; raised while the model is built (server start)."""


@dataclass
class AmdMoeQuantInfo(MoeQuantInfo):
    """Expert weights as the runner reads them.

    w13: [E, 2I, H] float tensor, or `Mxfp4Experts` (then w2 is None).
    w2:  [E, H, I] float tensor.
    b13, b2: [E, 2I] / [E, H] expert biases (gpt-oss), or None; see `layer_biases`
    for layers whose method hands none over.
    """

    w13: torch.Tensor | Mxfp4Experts
    w2: torch.Tensor | None = None
    act_mxfp4: bool = False  # A4W4: round GEMM inputs to MXFP4 per 32
    b13: torch.Tensor | None = None
    b2: torch.Tensor | None = None


def runner_requested() -> bool:
    """Did the operator pass `--moe-runner-backend amd`?"""
    return get_moe_runner_backend().value == MOE_RUNNER_BACKEND


def check_runner_config(
    config: MoeRunnerConfig, *, with_bias: bool = False, flag: str | None = None
) -> GatedActivation:
    """Refuse, at model build, the MoE features our kernels do not compute; return
    the gated activation the layer asks for (`support.runner_activation`).

    `with_bias` (the layer has expert biases) refuses nothing any more: both tiers
    add them per selected expert, before the activation and before the router
    weight, as SGLang's Triton MoE does; callers still say it.
    `flag`: the flag that sent this layer to our runner (default the runner flag;
    the MXFP4 method passes `--quantization amd_mxfp4`), named in the error.
    """
    if flag is None:
        flag = f"--moe-runner-backend {MOE_RUNNER_BACKEND}"
        advice = "Use another --moe-runner-backend (e.g. auto) for this model."
    else:
        advice = f"Serve this model without {flag}."
    activation, problems = runner_activation(config)
    if config.apply_router_weight_on_input:
        problems.append("router weights applied on the input")
    if config.no_combine:
        problems.append("no_combine (per-choice outputs)")
    a2a = get_moe_a2a_backend()
    if not a2a.is_none() and a2a.value != EP_A2A_BACKEND:
        problems.append(
            f"--moe-a2a-backend {a2a.value} (the runner takes the standard dispatch; "
            f"--moe-a2a-backend {EP_A2A_BACKEND} is ours)"
        )
    if problems:
        raise MoeConfigError(
            f"{flag} cannot serve MoE layer {config.layer_id}: "
            + "; ".join(problems)
            + ". "
            + advice
        )
    return activation


def layer_biases(
    quant_info: AmdMoeQuantInfo, config: MoeRunnerConfig
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The expert biases of a call: the quant info's, else, for a FusedMoE built
    `with_bias` whose method hands none over (SGLang's unquantized method, which
    reaches us through patches/unquantized_moe.py with w13/w2 only), the layer's
    own `w13_weight_bias` / `w2_weight_bias` (FusedMoE's names). A biased layer
    without them is an error, never a silently bias-free result."""
    if quant_info.b13 is not None or quant_info.b2 is not None:
        return quant_info.b13, quant_info.b2
    layer = getattr(config, "layer", None)
    if not getattr(layer, "with_bias", False):
        return None, None
    b13, b2 = (getattr(layer, n, None) for n in ("w13_weight_bias", "w2_weight_bias"))
    if b13 is None or b2 is None:
        raise MoeConfigError(
            f"--moe-runner-backend {MOE_RUNNER_BACKEND}: MoE layer {config.layer_id} has expert "
            "biases but its quant method created no w13_weight_bias / w2_weight_bias"
        )
    return b13, b2


class AmdMoeRunnerCore(DispatchMoeRunnerCore):
    """Consumes the standard dispatch (local expert ids, -1 = elsewhere) directly."""

    def __init__(self, config: MoeRunnerConfig):
        super().__init__(config)
        self.activation = check_runner_config(config)
        # One op per device the activations arrive on: a --device cpu server on a
        # GPU machine must not pick the GPU's Triton tier for CPU tensors.
        self._ops: dict[torch.device, ExpertsOp] = {}
        self.scale = (
            config.routed_scaling_factor
            if config.routed_scaling_factor not in (None, 1.0) and runner_applies_routed_scaling()
            else None
        )
        trace.record("moe_runner_init", runner=type(self).__name__)

    def op(self, device: torch.device) -> ExpertsOp:
        """The experts op (tier chosen once) for activations on `device`."""
        if device not in self._ops:
            self._ops[device] = ExpertsOp(device)
        return self._ops[device]

    @property
    def runner_backend(self) -> MoeRunnerBackendLike:
        return resolve_moe_runner_backend(MOE_RUNNER_BACKEND)

    def run_from_dispatch(
        self,
        dispatch_output: Any,
        quant_info: AmdMoeQuantInfo,
        runner_config: MoeRunnerConfig,
        hooks: Any = None,
    ) -> Any:
        from sglang.srt.layers.moe.token_dispatcher import StandardCombineInput
        from sglang.srt.layers.moe.topk import TopKOutputChecker

        topk = dispatch_output.topk_output
        if not TopKOutputChecker.format_is_standard(topk):
            raise MoeConfigError(
                f"--moe-runner-backend {MOE_RUNNER_BACKEND} needs the standard top-k output, got "
                f"{type(topk).__name__}"
            )
        x = dispatch_output.hidden_states
        b13, b2 = layer_biases(quant_info, runner_config)
        out = self.op(x.device)(
            x,
            quant_info.w13,
            quant_info.w2,
            topk.topk_weights,
            topk.topk_ids,
            act_mxfp4=quant_info.act_mxfp4,
            activation=self.activation,
            b13=b13,
            b2=b2,
        )
        if self.scale is not None:
            out.mul_(self.scale)
        return StandardCombineInput(hidden_states=out)


_registered = False


def register() -> None:
    """Make `--moe-runner-backend amd` a valid flag value backed by our core. Idempotent."""
    global _registered
    if _registered:
        return
    from sglang.srt.arg_groups.choices import (
        MOE_RUNNER_BACKEND_CHOICES,
        add_moe_runner_backend_choices,
    )
    from sglang.srt.layers.moe.moe_runner import runner as runner_module

    if MOE_RUNNER_BACKEND not in MOE_RUNNER_BACKEND_CHOICES:
        add_moe_runner_backend_choices([MOE_RUNNER_BACKEND])
    if MOE_RUNNER_BACKEND not in runner_module._CUSTOM_RUNNER_CORE_FACTORIES:
        runner_module.register_moe_runner_core(MOE_RUNNER_BACKEND, AmdMoeRunnerCore)
    _registered = True
