"""SGLang adapter: `--quantization amd_mxfp4`, MXFP4 (OCP) weights served by our kernels.

Three sources, one flag:

  float checkpoint (no quantization_config)      -> online: MoE experts quantized at load
  Quark MXFP4 export (quant/mxfp4_checkpoint.py) -> pre-quantized: packed uint8 + E8M0
                                                    scales loaded as stored
  gpt-oss MXFP4 checkpoint (quant_method mxfp4)  -> its experts' *_blocks / *_scales
                                                    loaded as our packed layout (a view),
                                                    every linear float

  FusedMoE layers -> `moe_method`, set by the MoE family when it registers
                     (moe/sglang_mxfp4_experts.py: our runner; quant/ never imports moe/)
  LinearBase      -> pre-quantized, or online with SGLANG_AMD_MXFP4_DENSE=1 (routers and
                     lm_head stay float): AmdMxfp4LinearMethod -> quant/mxfp4_linear.py
                     (quant.mxfp4_linear tier: the weight decoded inside the GEMM; A4W4
                     for A4W4 exports); otherwise SGLang's unquantized method

Dense weights: weight [N, K/2] uint8 + weight_scale [N, K/32] E8M0 (the reduction
dim blocked by 32). Scales are poisoned with the NaN scale before loading; one
left unwritten fails the load. Bad input fails while the model is built, naming
what to change. The launcher-side checks are in quant/support.py. Imports sglang.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import torch
from sglang.srt.layers.quantization.base_config import (
    FusedMoEMethodBase,
    LinearMethodBase,
    QuantizationConfig,
    QuantizeMethodBase,
)
from sglang.srt.utils import set_weight_attrs

from sglang_amd import trace
from sglang_amd.flags import QUANTIZATION
from sglang_amd.quant.mxfp4 import BLOCK, E8M0_NAN, ScaleRounding, dequantize_mxfp4
from sglang_amd.quant.mxfp4_checkpoint import (
    Mxfp4CheckpointLayout,
    gpt_oss_excluded,
    parse_mxfp4_checkpoint,
)
from sglang_amd.tiers import TieredOp

logger = logging.getLogger(__name__)

SCALE_ROUNDING_ENV = "SGLANG_AMD_MXFP4_SCALE_ROUNDING"
DENSE_ENV = "SGLANG_AMD_MXFP4_DENSE"
# Online dense quantization keeps these in float: routers (quantizing them moves
# expert choices) and the output head. Matched on the layer name's last part.
_DENSE_KEEP_FLOAT = ("gate", "lm_head")
# What SGLang's NextN draft models (deepseek_nextn, glm4_moe_nextn) call their MTP layer.
_NEXTN_LAYER = "model.decoder"
# Linears SGLang fuses that checkpoints store (and Quark excludes) per shard. Models
# declare only some of theirs (DeepSeek: fused_qkv_a only, not its MLPs' gate_up);
# SGLang adds these for its own "quark" method, which is what lets an export keep
# its dense MLPs in float (loader.py, _get_quantization_config).
_CHECKPOINT_FUSIONS = {
    "qkv_proj": ["q_proj", "k_proj", "v_proj"],
    "gate_up_proj": ["gate_proj", "up_proj"],
    "fused_qkv_a_proj_with_mqa": ["q_a_proj", "kv_a_proj_with_mqa"],
}
# Linears whose float weight the model itself reads inside load_weights, before
# process_weights_after_loading: DeepSeek-family MLA splits kv_b_proj.weight into
# the absorbed w_kc / w_vc there (deepseek_weight_loader.post_load_weights), which
# would split packed bytes. Served from a float weight decoded as soon as it loads.
_DECODE_AT_LOAD = ("kv_b_proj",)


def quantize_weight(w: torch.Tensor, rounding: ScaleRounding) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., K] float -> (packed uint8 [..., K/2], E8M0 uint8 [..., K/32]) on the
    quant.mxfp4 tier for the weight's device."""
    return TieredOp("quant.mxfp4", w.device)(w, rounding)


def _scale_rounding() -> ScaleRounding:
    raw = os.environ.get(SCALE_ROUNDING_ENV, "even").strip().lower()
    if raw not in ("even", "up", "down"):
        raise ValueError(f"{SCALE_ROUNDING_ENV}={raw!r}: use even (default), up or down")
    return raw  # type: ignore[return-value]


def _dense_requested() -> bool:
    raw = os.environ.get(DENSE_ENV, "0").strip().lower()
    if raw not in ("0", "1", "false", "true", ""):
        raise ValueError(f"{DENSE_ENV}={raw!r}: use 1 (quantize dense linears too) or 0")
    return raw in ("1", "true")


def check_blocked(name: str, size: int, where: str) -> None:
    if size % BLOCK:
        raise ValueError(
            f"--quantization {QUANTIZATION}: MXFP4 quantizes blocks of {BLOCK} along the "
            f"reduction dimension, but {where} {name}={size} is not a multiple of {BLOCK}. "
            "Serve this model without --quantization (or with a smaller --tp-size)."
        )


def check_scales_loaded(
    layer: torch.nn.Module, names: tuple[str, ...], where: str, source: str = "Quark MXFP4 export"
) -> None:
    for name in names:
        if bool((getattr(layer, name) == E8M0_NAN).any()):
            raise ValueError(
                f"--quantization {QUANTIZATION}: {where}.{name} was not (fully) in the checkpoint, "
                f"or holds NaN scales; the checkpoint is not a complete {source}"
            )


def uint8_param(layer, name, shape, attrs, fill: int | None = None) -> None:
    data = torch.empty(shape, dtype=torch.uint8)
    if fill is not None:
        data.fill_(fill)
    param = torch.nn.Parameter(data, requires_grad=False)
    layer.register_parameter(name, param)
    set_weight_attrs(param, attrs)


def _linear_weight_attrs(
    layer: torch.nn.Module, prefix: str, k: int, output_partition_sizes: list[int], extra: dict
) -> dict:
    """Check the per-rank reduction size and give the attrs SGLang's linear loaders
    shard by (weight [N, K...], N along dim 0)."""
    check_blocked("input size", k, f"layer {prefix}'s per-rank")
    layer.logical_widths = output_partition_sizes
    return {"input_dim": 1, "output_dim": 0, **extra}


def _packed_linear_params(
    layer: torch.nn.Module, k: int, n: int, attrs: dict, loaders: dict | None = None
) -> None:
    """A linear as a Quark export stores it: weight [N, K/2] uint8 and weight_scale
    [N, K/32] E8M0 (poisoned, so one left unloaded shows); `loaders` per name."""
    for name, shape, fill in (
        ("weight", (n, k // 2), None),
        ("weight_scale", (n, k // BLOCK), E8M0_NAN),
    ):
        extra = {"weight_loader": loaders[name]} if loaders else {}
        uint8_param(layer, name, shape, {**attrs, **extra}, fill=fill)


class AmdMxfp4Config(QuantizationConfig):
    """MXFP4 weights on our kernels; `layout` is None for online quantization.

    FusedMoE layers get `moe_method`, which the MoE family sets when it registers
    (moe/sglang_mxfp4_experts.py): the experts run on its runner."""

    moe_method: type[FusedMoEMethodBase] | None = None

    def __init__(
        self,
        layout: Mxfp4CheckpointLayout | None = None,
        rounding: ScaleRounding | None = None,
        dense: bool | None = None,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.rounding = rounding or _scale_rounding()
        # Online only: also quantize dense linears (SGLANG_AMD_MXFP4_DENSE=1).
        self.dense = layout is None and (_dense_requested() if dense is None else dense)
        # The checkpoint name of an MTP (NextN) layer, "model.layers.{num_hidden_layers}",
        # when the model declares one; see _excluded.
        self.nextn_layer: str | None = None

    def get_name(self) -> str:
        return QUANTIZATION

    def get_supported_act_dtypes(self) -> list[torch.dtype]:
        return [torch.bfloat16, torch.float16, torch.float32]

    @classmethod
    def get_min_capability(cls) -> int:
        return 0  # our kernels run on every device (torch tier on CPU)

    @staticmethod
    def get_config_filenames() -> list[str]:
        return []  # online needs no file; exports carry config.json's quantization_config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AmdMxfp4Config:
        hf_config = config.get("hf_config")  # SGLang passes the model's config here
        out = cls(parse_mxfp4_checkpoint(config, getattr(hf_config, "architectures", None)))
        out.packed_modules_mapping = dict(config.get("packed_modules_mapping") or {})
        if int(getattr(hf_config, "num_nextn_predict_layers", 0) or 0) > 0:
            out.nextn_layer = f"model.layers.{hf_config.num_hidden_layers}"
        return out

    @classmethod
    def override_quantization_method(cls, hf_quant_cfg, user_quant) -> str | None:
        # `--quantization amd_mxfp4` on a Quark export or a gpt-oss mxfp4 checkpoint:
        # ours reads it (from_config refuses layouts it does not know, and the start
        # checks before it: quant/support.py); without the flag SGLang keeps its own.
        method = str(hf_quant_cfg.get("quant_method", "")).lower()
        if user_quant == QUANTIZATION and method in ("quark", "mxfp4"):
            return QUANTIZATION
        return None

    @property
    def gpt_oss(self) -> bool:
        """A gpt-oss mxfp4 checkpoint (only the routed experts are MXFP4)."""
        return self.layout is not None and self.layout.source == "gpt_oss"

    def can_fuse_shared_expert(self) -> bool:
        """May SGLang fold the shared expert into the routed FusedMoE (DeepSeek)?

        Only when the checkpoint stores it quantized like the routed experts.
        A float shared expert (Quark exclude list) would be copied into an MXFP4
        slot; online quantization quantizes only the routed experts.
        """
        if self.layout is None or self.gpt_oss:
            return False
        return not any(
            "shared_expert" in e and "shared_expert_gate" not in e for e in self.layout.exclude
        )

    def _excluded(self, prefix: str) -> bool:
        """Is the layer `prefix` kept float by the export's exclude list? SGLang's NextN
        drafts (DeepSeek, GLM-4.5 MoE) name the MTP layer "model.decoder" while exports
        list it by its checkpoint name "model.layers.{N}" (a bf16 MTP layer beside MXFP4
        experts): both are matched, so that layer loads float instead of as MXFP4."""
        if self.gpt_oss:
            return gpt_oss_excluded(prefix, self.layout.exclude)
        from sglang.srt.layers.quantization.quark.utils import should_ignore_layer

        fused = {**_CHECKPOINT_FUSIONS, **(self.packed_modules_mapping or {})}
        names = [prefix]
        if self.nextn_layer and prefix.startswith(_NEXTN_LAYER + "."):
            names.append(self.nextn_layer + prefix[len(_NEXTN_LAYER) :])
        return any(
            should_ignore_layer(name, ignore=self.layout.exclude, fused_mapping=fused)
            for name in names
        )

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> QuantizeMethodBase | None:
        from sglang.srt.layers.linear import LinearBase
        from sglang.srt.layers.moe.fused_moe_triton import FusedMoE
        from sglang.srt.layers.quantization.unquant import (
            UnquantizedFusedMoEMethod,
            UnquantizedLinearMethod,
        )

        excluded = self.layout is not None and self._excluded(prefix)
        if isinstance(layer, FusedMoE):
            if excluded:
                return UnquantizedFusedMoEMethod()
            if self.moe_method is None:
                raise RuntimeError(
                    f"--quantization {QUANTIZATION} found no method for MoE layer {prefix}: "
                    "the MoE family registers it (sglang_amd.plugin.register())"
                )
            return self.moe_method(self)
        if isinstance(layer, LinearBase):
            if self.gpt_oss:  # gpt-oss quantizes its routed experts only
                return UnquantizedLinearMethod()
            if self.layout is not None and not excluded:
                if prefix.rsplit(".", 1)[-1] in _DECODE_AT_LOAD:
                    return Mxfp4DecodedAtLoadLinearMethod(prefix)
                return AmdMxfp4LinearMethod(self, prefix)
            if self.dense and prefix.rsplit(".", 1)[-1] not in _DENSE_KEEP_FLOAT:
                return AmdMxfp4LinearMethod(self, prefix)
            return UnquantizedLinearMethod()
        return None

    def get_scaled_act_names(self) -> list[str]:
        return []


class AmdMxfp4LinearMethod(LinearMethodBase):
    """A dense linear served as weight [N, K/2] uint8 + weight_scale [N, K/32]: loaded
    packed (pre-quantized) or loaded in float and quantized after loading (online)."""

    def __init__(self, config: AmdMxfp4Config, prefix: str) -> None:
        self.config = config
        self.prefix = prefix
        self.online = config.layout is None
        self.a4w4 = not self.online and config.layout.activations_mxfp4
        self._op = None  # Mxfp4LinearOp, on the first call's device

    def create_weights(
        self,
        layer: torch.nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs: Any,
    ) -> None:
        k, n = input_size_per_partition, sum(output_partition_sizes)
        attrs = _linear_weight_attrs(
            layer, self.prefix, k, output_partition_sizes, extra_weight_attrs
        )
        if self.online:
            param = torch.nn.Parameter(torch.empty(n, k, dtype=params_dtype), requires_grad=False)
            layer.register_parameter("weight", param)
            set_weight_attrs(param, attrs)
            return
        _packed_linear_params(layer, k, n, attrs)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if self.online:
            packed, scales = quantize_weight(layer.weight.data, self.config.rounding)
            layer.weight = torch.nn.Parameter(packed, requires_grad=False)
            layer.weight_scale = torch.nn.Parameter(scales, requires_grad=False)
            trace.record("mxfp4_linear_quantized", rounding=self.config.rounding)
            return
        check_scales_loaded(layer, ("weight_scale",), self.prefix)
        trace.record("mxfp4_linear_loaded", a4w4=self.a4w4)

    def apply(
        self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self._op is None:
            from sglang_amd.quant.mxfp4_linear import Mxfp4LinearOp

            self._op = Mxfp4LinearOp(x.device)
        return self._op(x, layer.weight, layer.weight_scale, bias, act_mxfp4=self.a4w4)


class Mxfp4DecodedAtLoadLinearMethod(LinearMethodBase):
    """A pre-quantized linear served in float: `weight` [N, K/2] and `weight_scale`
    [N, K/32] load packed through SGLang's own loaders (sharding unchanged), and
    the moment both are in, `weight` becomes the decoded [N, K] float tensor (the
    scales are dropped), so the model's load-time reads see float weights.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def create_weights(
        self,
        layer: torch.nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
        **extra_weight_attrs: Any,
    ) -> None:
        loader = extra_weight_attrs.pop("weight_loader")
        k, n = input_size_per_partition, sum(output_partition_sizes)
        attrs = _linear_weight_attrs(
            layer, self.prefix, k, output_partition_sizes, extra_weight_attrs
        )
        pending, lock = {"weight", "weight_scale"}, threading.Lock()
        layer.mxfp4_pending = pending  # names still to load; empty once decoded

        def load_then_decode(name: str):
            def load(param, loaded_weight, *args, **kwargs):
                loader(param, loaded_weight, *args, **kwargs)
                with lock:  # SGLang may load tensors from several threads
                    if name in pending:
                        pending.discard(name)
                        if not pending:
                            self._decode(layer, params_dtype)

            return load

        _packed_linear_params(layer, k, n, attrs, {m: load_then_decode(m) for m in pending})

    def _decode(self, layer: torch.nn.Module, dtype: torch.dtype) -> None:
        check_scales_loaded(layer, ("weight_scale",), self.prefix)
        weight = dequantize_mxfp4(layer.weight.data, layer.weight_scale.data, dtype)
        del layer.weight_scale
        layer.weight = torch.nn.Parameter(weight, requires_grad=False)
        logger.debug("sglang-amd: %s decoded to %s at load", self.prefix, dtype)

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if layer.mxfp4_pending:
            missing = ", ".join(f"{self.prefix}.{n}" for n in sorted(layer.mxfp4_pending))
            raise ValueError(
                f"--quantization {QUANTIZATION}: {missing} was not in the checkpoint; "
                "the checkpoint is not a complete Quark MXFP4 export"
            )
        trace.record("mxfp4_linear_decoded_at_load", layer=self.prefix)

    def apply(
        self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        return torch.nn.functional.linear(x, layer.weight, bias)
