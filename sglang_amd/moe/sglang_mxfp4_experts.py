"""SGLang adapter: the experts of `--quantization amd_mxfp4`, on our MoE runner.

  FusedMoE layer -> AmdMxfp4Config.get_quant_method (quant/sglang_mxfp4.py)
    -> AmdMxfp4MoEMethod (this module; the MoE family plugs it into the config)
    -> MoeRunner("amd") (moe/sglang_runner.py) with `Mxfp4Experts`

Weights: w13 [E, 2I, H/2] + w13_weight_scale [E, 2I, H/32], w2 [E, H, I/2] +
w2_weight_scale [E, H, I/32] (uint8, the reduction dim blocked by 32): loaded
packed from a Quark export, or loaded in float and quantized after loading
(online). Scales are poisoned with the NaN scale before loading; one left
unwritten fails the load. Imports sglang.
"""

from __future__ import annotations

from typing import Any

import torch
from sglang.srt.layers.quantization.base_config import FusedMoEMethodBase
from sglang.srt.utils import set_weight_attrs

from sglang_amd import trace
from sglang_amd.flags import MOE_RUNNER_BACKEND, QUANTIZATION
from sglang_amd.moe.sglang_runner import AmdMoeQuantInfo, check_runner_config
from sglang_amd.moe.weights import Mxfp4Experts
from sglang_amd.quant.mxfp4 import BLOCK, E8M0_NAN
from sglang_amd.quant.sglang_mxfp4 import (
    AmdMxfp4Config,
    check_blocked,
    check_scales_loaded,
    quantize_weight,
    uint8_param,
)


class AmdMxfp4MoEMethod(FusedMoEMethodBase):
    """MXFP4 experts: loaded packed (pre-quantized) or float then quantized (online)."""

    def __init__(self, config: AmdMxfp4Config) -> None:
        super().__init__()
        self.config = config
        self.serialized = config.layout is not None
        self.runner = None

    def create_weights(
        self,
        layer: torch.nn.Module,
        num_experts: int,
        hidden_size: int,
        intermediate_size_per_partition: int,
        params_dtype: torch.dtype,
        with_bias: bool = False,
        **extra_weight_attrs: Any,
    ) -> None:
        inter = intermediate_size_per_partition
        check_blocked("hidden_size", hidden_size, "this model's")
        check_blocked("moe_intermediate_size", inter, "the per-rank")
        check_runner_config(
            layer.moe_runner_config, with_bias=with_bias, flag=f"--quantization {QUANTIZATION}"
        )
        shapes = {"w13_weight": (num_experts, 2 * inter, hidden_size)}
        shapes["w2_weight"] = (num_experts, hidden_size, inter)
        if not self.serialized:
            for name, shape in shapes.items():
                param = torch.nn.Parameter(
                    torch.empty(shape, dtype=params_dtype), requires_grad=False
                )
                layer.register_parameter(name, param)
                set_weight_attrs(param, extra_weight_attrs)
            return
        from sglang.srt.layers.moe.fused_moe_triton import FusedMoeWeightScaleSupported

        scale_attrs = {
            **extra_weight_attrs,
            "quant_method": FusedMoeWeightScaleSupported.GROUP.value,
        }
        for name, (e, n, k) in shapes.items():
            uint8_param(layer, name, (e, n, k // 2), extra_weight_attrs)
            uint8_param(layer, f"{name}_scale", (e, n, k // BLOCK), scale_attrs, fill=E8M0_NAN)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if self.serialized:
            check_scales_loaded(layer, ("w13_weight_scale", "w2_weight_scale"), "experts")
            trace.record(
                "mxfp4_loaded", source="checkpoint", a4w4=self.config.layout.activations_mxfp4
            )
            return
        rounding = self.config.rounding
        for name in ("w13_weight", "w2_weight"):
            packed, scales = quantize_weight(getattr(layer, name).data, rounding)
            # Replace (not copy into) the float parameter so its memory is released.
            setattr(layer, name, torch.nn.Parameter(packed, requires_grad=False))
            setattr(layer, f"{name}_scale", torch.nn.Parameter(scales, requires_grad=False))
        trace.record("mxfp4_quantized", rounding=rounding)

    def create_moe_runner(self, layer: torch.nn.Module, moe_runner_config: Any) -> None:
        from sglang.srt.layers.moe.moe_runner import MoeRunner
        from sglang.srt.layers.moe.utils import get_moe_runner_backend, resolve_moe_runner_backend

        requested = get_moe_runner_backend()
        if not (requested.is_auto() or requested.value == MOE_RUNNER_BACKEND):
            raise ValueError(
                f"--quantization {QUANTIZATION} experts run on --moe-runner-backend {MOE_RUNNER_BACKEND} "
                f"(or auto), not {requested.value!r}"
            )
        self.moe_runner_config = moe_runner_config
        self.runner = MoeRunner(resolve_moe_runner_backend(MOE_RUNNER_BACKEND), moe_runner_config)

    def apply(self, layer: torch.nn.Module, dispatch_output: Any) -> Any:
        experts = Mxfp4Experts(
            layer.w13_weight, layer.w13_weight_scale, layer.w2_weight, layer.w2_weight_scale
        )
        a4w4 = self.serialized and self.config.layout.activations_mxfp4
        return self.runner.run(dispatch_output, AmdMoeQuantInfo(w13=experts, act_mxfp4=a4w4))
