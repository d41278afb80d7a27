"""SGLang adapter: the experts of `--quantization amd_mxfp4`, on our MoE runner.

  FusedMoE layer -> AmdMxfp4Config.get_quant_method (quant/sglang_mxfp4.py)
    -> AmdMxfp4MoEMethod (this module; the MoE family plugs it into the config)
    -> MoeRunner("amd") (moe/sglang_runner.py) with `Mxfp4Experts` (+ expert biases)

Weights: w13 [E, 2I, H/2] + w13_weight_scale [E, 2I, H/32], w2 [E, H, I/2] +
w2_weight_scale [E, H, I/32] (uint8, the reduction dim blocked by 32), from one
of three sources:

  online     loaded in float through SGLang's loader, quantized after loading
  Quark      loaded packed as stored, through SGLang's loader
  gpt-oss    `mlp.experts.{gate_up,down}_proj_{blocks,scales}` through this module's
             loader (`_gpt_oss_loader`): SGLang's GptOss `_load_normal_weights`
             (taken for every quant method but its own "mxfp4") names them
             `w13_weight_blocks` ... and hands them over transposed on their last
             two dims; stored as [E, rows, K/32, 16] they become our [E, rows, K/2]
             by a view after loading (quant/mxfp4_checkpoint.py: same bytes)

Expert biases (gpt-oss: `with_bias`) are float `w13_weight_bias` [E, 2I] and
`w2_weight_bias` [E, H], handed to the runner with the weights; the gated
activation (SiLU, or gpt-oss's clamped SwiGLU) is the runner's, from the layer's
runner config. Scales and biases are poisoned (NaN) before loading, and the
gpt-oss tensors counted as they load: one left unwritten fails the load. Imports
sglang.
"""

from __future__ import annotations

from collections.abc import Callable
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

_BIASES = ("w13_weight_bias", "w2_weight_bias")
# gpt-oss checkpoint tensor -> (the parameter SGLang's GptOss loader looks up,
# the dim SGLang's tensor parallelism splits: w13's rows, w2's reduction blocks).
_GPT_OSS = {
    "gate_up_proj_blocks": ("w13_weight_blocks", 1),
    "gate_up_proj_scales": ("w13_weight_scales", 1),
    "down_proj_blocks": ("w2_weight_blocks", 2),
    "down_proj_scales": ("w2_weight_scales", 2),
}


def _local_part(
    loaded: torch.Tensor, local: torch.Size, layer: torch.nn.Module, tp_dim: int | None, what: str
) -> torch.Tensor:
    """This rank's part of a whole-checkpoint expert tensor: experts [ep_rank * E_local,
    ...) and, along `tp_dim`, slice tp_rank of the per-rank size (as SGLang's own
    gpt-oss mxfp4 loader splits them); every other dim must match."""
    ranks = {0: int(getattr(layer, "moe_ep_rank", 0) or 0)}
    if tp_dim is not None:
        ranks[tp_dim] = int(getattr(layer, "moe_tp_rank", 0) or 0)
    if loaded.dim() != len(local):
        raise ValueError(
            f"--quantization {QUANTIZATION}: checkpoint tensor {what} is "
            f"{tuple(loaded.shape)}, expected {len(local)} dims like {tuple(local)}"
        )
    for dim, size in enumerate(local):
        if loaded.shape[dim] == size:
            continue
        start = ranks.get(dim, 0) * size
        if dim not in ranks or start + size > loaded.shape[dim]:
            raise ValueError(
                f"--quantization {QUANTIZATION}: checkpoint tensor {what} is "
                f"{tuple(loaded.shape)}; this rank's part should be {tuple(local)}"
            )
        loaded = loaded.narrow(dim, start, size)
    return loaded


def _gpt_oss_loader(
    layer: torch.nn.Module, what: str, tp_dim: int | None, transposed: bool
) -> Callable[..., None]:
    """The weight_loader of one gpt-oss expert tensor (SGLang calls it as
    `loader(param, loaded_weight, name, shard_id=...)`)."""

    def load(param: torch.nn.Parameter, loaded_weight: torch.Tensor, *args, **kwargs) -> None:
        w = loaded_weight.transpose(-2, -1) if transposed else loaded_weight
        param.data.copy_(_local_part(w, param.shape, layer, tp_dim, what))
        layer.mxfp4_loaded.add(what)

    return load


class AmdMxfp4MoEMethod(FusedMoEMethodBase):
    """MXFP4 experts: loaded packed (Quark, gpt-oss) or float then quantized (online)."""

    def __init__(self, config: AmdMxfp4Config) -> None:
        super().__init__()
        self.config = config
        self.serialized = config.layout is not None
        self.gpt_oss = config.gpt_oss
        self.with_bias = False
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
        self.with_bias = with_bias
        shapes = {"w13_weight": (num_experts, 2 * inter, hidden_size)}
        shapes["w2_weight"] = (num_experts, hidden_size, inter)
        if with_bias:
            self._bias_params(
                layer, num_experts, hidden_size, inter, params_dtype, extra_weight_attrs
            )
        if self.gpt_oss:
            self._gpt_oss_params(layer, shapes, extra_weight_attrs)
        elif not self.serialized:
            for name, shape in shapes.items():
                param = torch.nn.Parameter(
                    torch.empty(shape, dtype=params_dtype), requires_grad=False
                )
                layer.register_parameter(name, param)
                set_weight_attrs(param, extra_weight_attrs)
        else:
            for name, (e, n, k) in shapes.items():
                uint8_param(layer, name, (e, n, k // 2), extra_weight_attrs)
                scale_attrs = self._scale_attrs(extra_weight_attrs)
                uint8_param(layer, f"{name}_scale", (e, n, k // BLOCK), scale_attrs, fill=E8M0_NAN)

    @staticmethod
    def _scale_attrs(extra_weight_attrs: dict) -> dict:
        from sglang.srt.layers.moe.fused_moe_triton import FusedMoeWeightScaleSupported

        return {**extra_weight_attrs, "quant_method": FusedMoeWeightScaleSupported.GROUP.value}

    def _bias_params(self, layer, num_experts, hidden, inter, dtype, attrs) -> None:
        """Float biases, NaN until loaded. gpt-oss's load through `_gpt_oss_loader`
        (expert-parallel ranks take their experts' rows); the others through SGLang's
        loader, as its unquantized method's do."""
        shapes = {
            "w13_weight_bias": (num_experts, 2 * inter),
            "w2_weight_bias": (num_experts, hidden),
        }
        for name, shape in shapes.items():
            param = torch.nn.Parameter(
                torch.full(shape, float("nan"), dtype=dtype), requires_grad=False
            )
            layer.register_parameter(name, param)
            loader = {}
            if self.gpt_oss:
                what = name.replace("w13_weight", "gate_up_proj").replace("w2_weight", "down_proj")
                tp_dim = 1 if name.startswith("w13") else None  # w2's bias: whole on each rank
                loader = {"weight_loader": _gpt_oss_loader(layer, what, tp_dim, transposed=False)}
            set_weight_attrs(param, {**attrs, **loader})

    def _gpt_oss_params(self, layer, shapes, attrs) -> None:
        """gpt-oss's blocks [E, rows, K/32, 16] and scales [E, rows, K/32], by the names
        SGLang's GptOss loader gives them."""
        layer.mxfp4_loaded = set()
        for what, (name, tp_dim) in _GPT_OSS.items():
            e, rows, k = shapes["w13_weight" if name.startswith("w13") else "w2_weight"]
            blocks = what.endswith("_blocks")
            shape = (e, rows, k // BLOCK, BLOCK // 2) if blocks else (e, rows, k // BLOCK)
            loader = _gpt_oss_loader(layer, what, tp_dim, transposed=True)
            fill = None if blocks else E8M0_NAN
            uint8_param(layer, name, shape, {**attrs, "weight_loader": loader}, fill=fill)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if self.with_bias:
            for name in _BIASES:
                if bool(getattr(layer, name).isnan().any()):
                    raise ValueError(
                        f"--quantization {QUANTIZATION}: experts.{name} was not (fully) in the "
                        "checkpoint, or holds NaN"
                    )
        if self.gpt_oss:
            self._gpt_oss_after_loading(layer)
            return
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

    def _gpt_oss_after_loading(self, layer: torch.nn.Module) -> None:
        wanted = set(_GPT_OSS) | (
            {"gate_up_proj_bias", "down_proj_bias"} if self.with_bias else set()
        )
        missing = sorted(wanted - layer.mxfp4_loaded)
        if missing:
            raise ValueError(
                f"--quantization {QUANTIZATION}: mlp.experts.{missing[0]} was not in the "
                f"checkpoint (missing: {missing}); it is not a complete gpt-oss mxfp4 checkpoint"
            )
        source = "gpt-oss mxfp4 checkpoint"
        check_scales_loaded(layer, ("w13_weight_scales", "w2_weight_scales"), "experts", source)
        for name in ("w13_weight", "w2_weight"):
            blocks = getattr(layer, f"{name}_blocks").data
            e, rows, groups, half = blocks.shape
            # Same bytes as our packed rows: group g's 16 bytes are elements 32g..32g+31.
            packed = blocks.view(e, rows, groups * half)
            scales = getattr(layer, f"{name}_scales").data
            delattr(layer, f"{name}_blocks")
            delattr(layer, f"{name}_scales")
            setattr(layer, name, torch.nn.Parameter(packed, requires_grad=False))
            setattr(layer, f"{name}_scale", torch.nn.Parameter(scales, requires_grad=False))
        trace.record("mxfp4_loaded", source="gpt_oss", a4w4=False)

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
        b13, b2 = (layer.w13_weight_bias, layer.w2_weight_bias) if self.with_bias else (None, None)
        info = AmdMoeQuantInfo(w13=experts, act_mxfp4=a4w4, b13=b13, b2=b2)
        return self.runner.run(dispatch_output, info)
