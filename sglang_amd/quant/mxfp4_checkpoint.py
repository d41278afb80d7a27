"""Which pre-quantized MXFP4 checkpoints `--quantization amd_mxfp4` reads, and how.

Two formats, one OCP MX encoding (E2M1 codes, two per byte with the even element
in the low nibble, one E8M0 scale per 32 elements along the reduction dim):

1. The layout as AMD Quark exports it: config.json carries
`quantization_config = {"quant_method": "quark", "global_quant_config": {"weight":
{"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "scale_format": "e8m0",
...}, "input_tensors": null | {"dtype": "fp4", ...}}, "exclude": [...]}`, and every
quantized linear `X` is stored as `X.weight` (uint8 [out, in / 2], two E2M1 codes per
byte, even element in the low nibble) plus `X.weight_scale` (uint8 E8M0 [out, in / 32]).
Excluded layers keep their float weights.

2. gpt-oss's own (`GptOssForCausalLM`, as OpenAI ships it and transformers writes
it): `quantization_config = {"quant_method": "mxfp4", "modules_to_not_convert":
[...]}`, only the routed experts quantized, each layer's `mlp.experts.` holding
`gate_up_proj_blocks` uint8 [E, 2I, H / 32, 16] + `gate_up_proj_scales` uint8
E8M0 [E, 2I, H / 32] (gate and up rows interleaved: row 2i gate, 2i + 1 up),
`down_proj_blocks` [E, H, I / 32, 16] + `down_proj_scales` [E, H, I / 32], and
float `gate_up_proj_bias` [E, 2I], `down_proj_bias` [E, H]. The blocks are our
packed rows split in 16-byte groups (same nibble order and scale layout:
transformers' `convert_moe_packed_tensors` decodes the low nibble first), so they
load as a view; the interleaved rows are served as stored (the runner's
`GatedActivation(interleaved=True)`, as SGLang's own w13 for gpt-oss).

`parse_mxfp4_checkpoint` accepts exactly these and names the first field it does
not read; `parse_quark_mxfp4` / `parse_gpt_oss_mxfp4` are the two readers.
Never imports sglang.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from sglang_amd.quant.mxfp4 import BLOCK

_FLAG = "--quantization amd_mxfp4"
GPT_OSS_ARCHITECTURE = "GptOssForCausalLM"
# What a gpt-oss `quantization_config` may hold: transformers' Mxfp4Config.to_dict()
# writes the first two, `dequantize` is its load-time switch (the stored tensors are
# the same), and SGLang adds the last two before calling from_config.
_GPT_OSS_KEYS = frozenset(
    ("quant_method", "modules_to_not_convert", "dequantize", "packed_modules_mapping", "hf_config")
)


class CheckpointLayoutError(ValueError):
    """A pre-quantized checkpoint layout `--quantization amd_mxfp4` does not read."""


@dataclass(frozen=True)
class Mxfp4CheckpointLayout:
    # Layers kept in float: Quark's names or `re:` patterns; gpt-oss's
    # modules_to_not_convert, matched as transformers does (`gpt_oss_excluded`).
    exclude: tuple[str, ...]
    activations_mxfp4: bool  # the checkpoint asks for A4W4 (activations per 32)
    source: Literal["quark", "gpt_oss"] = "quark"


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


def _unread_method(method: str) -> CheckpointLayoutError:
    return CheckpointLayoutError(
        f"{_FLAG} quantizes float checkpoints at load and reads Quark MXFP4 exports and "
        f"gpt-oss's MXFP4 checkpoints; this checkpoint is quant_method={method!r}, a layout "
        "it does not read. Drop --quantization to use SGLang's own reader."
    )


def parse_mxfp4_checkpoint(
    config: dict[str, Any], architectures: list[str] | tuple[str, ...] | None = None
) -> Mxfp4CheckpointLayout:
    """config.json's `quantization_config` (and the model's architectures) -> layout,
    or `CheckpointLayoutError` naming what is not read."""
    method = str(config.get("quant_method", "")).lower()
    arch = next(iter(architectures or ()), None)
    if method == "mxfp4":
        return parse_gpt_oss_mxfp4(config, arch)
    if method == "quark" and arch == GPT_OSS_ARCHITECTURE:
        # SGLang reads gpt-oss Quark exports with its own loader (quark/weights.py), keyed
        # on its "quark" method; their expert tensors are not the names our method loads.
        raise CheckpointLayoutError(
            f"{_FLAG} does not read Quark exports of {GPT_OSS_ARCHITECTURE} yet (gpt-oss's own "
            "mxfp4 checkpoints, and its float checkpoints quantized at load, are read). Drop "
            f"--quantization {_FLAG.split()[-1]} to let SGLang's quark reader serve it."
        )
    return parse_quark_mxfp4(config)


def parse_gpt_oss_mxfp4(config: dict[str, Any], architecture: str | None) -> Mxfp4CheckpointLayout:
    """gpt-oss's `{"quant_method": "mxfp4", "modules_to_not_convert": [...]}` -> layout."""
    method = str(config.get("quant_method", "")).lower()
    if method != "mxfp4":
        raise _unread_method(method)
    if architecture != GPT_OSS_ARCHITECTURE:
        raise CheckpointLayoutError(
            f"{_FLAG} reads quant_method 'mxfp4' as gpt-oss writes it ({GPT_OSS_ARCHITECTURE}'s "
            f"mlp.experts.*_blocks / *_scales); this model is {architecture}, whose mxfp4 tensors "
            "it does not know. Drop --quantization to use SGLang's own reader."
        )
    unknown = sorted(set(config) - _GPT_OSS_KEYS)
    if unknown:
        raise CheckpointLayoutError(
            f"{_FLAG} reads gpt-oss's mxfp4 quantization_config (quant_method, "
            f"modules_to_not_convert); this one also sets {unknown}, which it does not read. "
            "Drop --quantization to use SGLang's own reader."
        )
    keep = config.get("modules_to_not_convert") or []
    if not isinstance(keep, list | tuple) or not all(isinstance(e, str) for e in keep):
        raise CheckpointLayoutError(
            f"{_FLAG}: modules_to_not_convert must list module names, got {keep!r}"
        )
    return Mxfp4CheckpointLayout(tuple(keep), activations_mxfp4=False, source="gpt_oss")


def gpt_oss_excluded(name: str, patterns: tuple[str, ...]) -> bool:
    """Does transformers keep module `name` unconverted under these
    modules_to_not_convert patterns? Its rule (quantizers_utils.should_convert_module):
    a pattern is a regex matching a prefix of the name (followed by a dot, or not),
    or a suffix of the name."""
    return any(re.match(f"{p}\\.", name) or re.match(p, name) or name.endswith(p) for p in patterns)


def parse_quark_mxfp4(config: dict[str, Any]) -> Mxfp4CheckpointLayout:
    """A Quark export's `quantization_config` -> layout, or `CheckpointLayoutError`."""
    method = str(config.get("quant_method", "")).lower()
    if method != "quark":
        raise _unread_method(method)
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
