"""Which pre-quantized MXFP4 checkpoints `--quantization amd_mxfp4` reads, and how.

The OCP MX layout as AMD Quark exports it: config.json carries
`quantization_config = {"quant_method": "quark", "global_quant_config": {"weight":
{"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "scale_format": "e8m0",
...}, "input_tensors": null | {"dtype": "fp4", ...}}, "exclude": [...]}`, and every
quantized linear `X` is stored as `X.weight` (uint8 [out, in / 2], two E2M1 codes per
byte, even element in the low nibble) plus `X.weight_scale` (uint8 E8M0 [out, in / 32]).
Excluded layers keep their float weights.

`parse_quark_mxfp4` accepts exactly that and names the first field it does not
read. Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sglang_amd.quant.mxfp4 import BLOCK

_FLAG = "--quantization amd_mxfp4"


class CheckpointLayoutError(ValueError):
    """A pre-quantized checkpoint layout `--quantization amd_mxfp4` does not read."""


@dataclass(frozen=True)
class Mxfp4CheckpointLayout:
    exclude: tuple[str, ...]  # layer names or `re:` patterns kept in float
    activations_mxfp4: bool  # the checkpoint asks for A4W4 (activations per 32)


def _check_mx_fp4(spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise CheckpointLayoutError(f"{_FLAG}: {where} is {spec!r}, expected an OCP MXFP4 spec")
    wanted = {"dtype": "fp4", "qscheme": "per_group", "group_size": BLOCK}
    for key, value in wanted.items():
        if spec.get(key) != value:
            raise CheckpointLayoutError(
                f"{_FLAG} reads OCP MXFP4 ({wanted}); this checkpoint's {where}.{key} is "
                f"{spec.get(key)!r}. Drop --quantization {_FLAG.split()[-1]} to let SGLang "
                "pick its own reader."
            )
    scale = spec.get("scale_format", "e8m0")
    if scale != "e8m0":
        raise CheckpointLayoutError(f"{_FLAG}: {where}.scale_format is {scale!r}, expected e8m0")
    if spec.get("ch_axis", -1) not in (-1, 1):
        raise CheckpointLayoutError(
            f"{_FLAG}: {where}.ch_axis={spec['ch_axis']}; MXFP4 blocks run along the input dim"
        )


def parse_quark_mxfp4(config: dict[str, Any]) -> Mxfp4CheckpointLayout:
    """config.json's `quantization_config` -> layout, or `CheckpointLayoutError`."""
    method = str(config.get("quant_method", "")).lower()
    if method != "quark":
        raise CheckpointLayoutError(
            f"{_FLAG} quantizes float checkpoints at load and reads Quark MXFP4 exports; this "
            f"checkpoint is quant_method={method!r}, a layout it does not read. Drop "
            "--quantization to use SGLang's own reader."
        )
    for key in ("layer_quant_config", "layer_type_quant_config"):
        if config.get(key):
            raise CheckpointLayoutError(
                f"{_FLAG}: per-layer overrides ({key}) are not read; only a global MXFP4 config"
            )
    glob = config.get("global_quant_config") or {}
    _check_mx_fp4(glob.get("weight"), "global_quant_config.weight")
    acts = glob.get("input_tensors")
    if acts is not None:
        _check_mx_fp4(acts, "global_quant_config.input_tensors")
    if glob.get("output_tensors") is not None:
        raise CheckpointLayoutError(f"{_FLAG}: quantized output tensors are not read")
    exclude = config.get("exclude") or []
    if not all(isinstance(e, str) for e in exclude):
        raise CheckpointLayoutError(f"{_FLAG}: `exclude` must list layer names, got {exclude!r}")
    return Mxfp4CheckpointLayout(tuple(exclude), activations_mxfp4=acts is not None)


def quark_config(exclude: list[str], activations_mxfp4: bool = False) -> dict[str, Any]:
    """The `quantization_config` a Quark MXFP4 export writes (for tools and tests)."""
    spec = {
        "dtype": "fp4",
        "qscheme": "per_group",
        "group_size": BLOCK,
        "ch_axis": -1,
        "scale_format": "e8m0",
        "round_method": "half_even",
        "is_dynamic": False,
    }
    return {
        "quant_method": "quark",
        "global_quant_config": {
            "weight": spec,
            "input_tensors": {**spec, "is_dynamic": True} if activations_mxfp4 else None,
            "output_tensors": None,
            "bias": None,
        },
        "layer_quant_config": {},
        "layer_type_quant_config": {},
        "exclude": list(exclude),
        "export": {"pack_method": "reorder", "weight_format": "real_quantized"},
    }
