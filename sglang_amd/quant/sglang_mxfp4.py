"""SGLang adapter: `--quantization amd_mxfp4`, MXFP4 (OCP) MoE experts served by our runner.

  bf16/fp32 checkpoint + --quantization amd_mxfp4
    -> AmdMxfp4Config (no config file needed: online)
    -> FusedMoE layers: AmdMxfp4MoEMethod
         create_weights: checkpoint-dtype w13 [E, 2I, H], w2 [E, H, I] (SGLang's loaders)
         process_weights_after_loading: quantize_mxfp4 (quant.mxfp4 tier, "even" scale
           rounding) -> uint8 w13 [E, 2I, H/2] + E8M0 w13_weight_scale [E, 2I, H/32], same for w2;
           the float copies are freed
         apply: MoeRunner("amd") (moe/sglang_runner.py), W4A16
    -> every other layer: SGLang's unquantized methods

Bad input fails while the model is built (server start), naming what to change:
a hidden or moe_intermediate size that is not a multiple of 32, a MoE feature the
runner does not compute, or a pre-quantized checkpoint layout we do not read.

Imports sglang: only plugin.py imports this module.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from sglang.srt.layers.quantization.base_config import (
    FusedMoEMethodBase,
    QuantizationConfig,
    QuantizeMethodBase,
)
from sglang.srt.utils import set_weight_attrs

from sglang_amd import trace
from sglang_amd.moe.reference import Mxfp4Experts
from sglang_amd.moe.sglang_runner import AmdMoeQuantInfo, check_runner_config
from sglang_amd.moe.support import QUANT_NAME, RUNNER_NAME
from sglang_amd.quant.mxfp4 import BLOCK, ScaleRounding
from sglang_amd.tiers import Tier, select

logger = logging.getLogger(__name__)

SCALE_ROUNDING_ENV = "SGLANG_AMD_MXFP4_SCALE_ROUNDING"


def quantize_weight(w: torch.Tensor, rounding: ScaleRounding) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., K] float -> (packed uint8 [..., K/2], E8M0 uint8 [..., K/32]) on the quant tier."""
    if select("quant.mxfp4", w.device).tier is Tier.TRITON:
        from sglang_amd.quant.mxfp4_triton import quantize_mxfp4_triton

        return quantize_mxfp4_triton(w.contiguous(), rounding)
    from sglang_amd.quant.mxfp4 import quantize_mxfp4

    return quantize_mxfp4(w, rounding)


def _scale_rounding() -> ScaleRounding:
    import os

    raw = os.environ.get(SCALE_ROUNDING_ENV, "even").strip().lower()
    if raw not in ("even", "up", "down"):
        raise ValueError(f"{SCALE_ROUNDING_ENV}={raw!r}: use even (default), up or down")
    return raw  # type: ignore[return-value]


class AmdMxfp4Config(QuantizationConfig):
    """MXFP4 MoE experts (online from a float checkpoint); dense layers stay as loaded."""

    def __init__(self, rounding: ScaleRounding | None = None) -> None:
        super().__init__()
        self.rounding = rounding or _scale_rounding()

    def get_name(self) -> str:
        return QUANT_NAME

    def get_supported_act_dtypes(self) -> list[torch.dtype]:
        return [torch.bfloat16, torch.float16, torch.float32]

    @classmethod
    def get_min_capability(cls) -> int:
        return 0  # our kernels run on every device (torch tier on CPU)

    @staticmethod
    def get_config_filenames() -> list[str]:
        return []  # online: a float checkpoint needs no quantization file

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AmdMxfp4Config:
        method = str(config.get("quant_method", "")).lower()
        raise ValueError(
            f"--quantization {QUANT_NAME} quantizes a float checkpoint's MoE experts at load; "
            f"this checkpoint is already quantized (quant_method={method!r}), a layout "
            f"{QUANT_NAME} does not read. Drop --quantization to use SGLang's own reader."
        )

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> QuantizeMethodBase | None:
        from sglang.srt.layers.linear import LinearBase
        from sglang.srt.layers.moe.fused_moe_triton import FusedMoE
        from sglang.srt.layers.quantization.unquant import UnquantizedLinearMethod

        if isinstance(layer, FusedMoE):
            return AmdMxfp4MoEMethod(self)
        if isinstance(layer, LinearBase):
            return UnquantizedLinearMethod()
        return None

    def get_scaled_act_names(self) -> list[str]:
        return []


class AmdMxfp4MoEMethod(FusedMoEMethodBase):
    """Float experts loaded as SGLang lays them out, then quantized to MXFP4 in place."""

    def __init__(self, config: AmdMxfp4Config) -> None:
        super().__init__()
        self.config = config
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
        for name, size in (
            ("hidden_size", hidden_size),
            ("moe_intermediate_size (per tensor-parallel rank)", intermediate_size_per_partition),
        ):
            if size % BLOCK:
                raise ValueError(
                    f"--quantization {QUANT_NAME}: MXFP4 quantizes blocks of {BLOCK} along the "
                    f"reduction dimension, but {name}={size} is not a multiple of {BLOCK}. "
                    "Serve this model without --quantization (or with a smaller --tp-size)."
                )
        check_runner_config(layer.moe_runner_config, with_bias=with_bias)
        shapes = {
            "w13_weight": (num_experts, 2 * intermediate_size_per_partition, hidden_size),
            "w2_weight": (num_experts, hidden_size, intermediate_size_per_partition),
        }
        for name, shape in shapes.items():
            param = torch.nn.Parameter(torch.empty(shape, dtype=params_dtype), requires_grad=False)
            layer.register_parameter(name, param)
            set_weight_attrs(param, extra_weight_attrs)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
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
        if not (requested.is_auto() or requested.value == RUNNER_NAME):
            raise ValueError(
                f"--quantization {QUANT_NAME} experts run on --moe-runner-backend {RUNNER_NAME} "
                f"(or auto), not {requested.value!r}"
            )
        self.moe_runner_config = moe_runner_config
        self.runner = MoeRunner(resolve_moe_runner_backend(RUNNER_NAME), moe_runner_config)

    def apply(self, layer: torch.nn.Module, dispatch_output: Any) -> Any:
        experts = Mxfp4Experts(
            layer.w13_weight, layer.w13_weight_scale, layer.w2_weight, layer.w2_weight_scale
        )
        return self.runner.run(dispatch_output, AmdMoeQuantInfo(w13=experts))
