"""Which pre-quantized MXFP4 checkpoints `--quantization amd_mxfp4` reads (Quark's OCP
MX export) and the one-line errors for the layouts it does not."""

from __future__ import annotations

import copy

import pytest

from sglang_amd.quant.mxfp4_checkpoint import (
    CheckpointLayoutError,
    parse_quark_mxfp4,
    quark_config,
)


def test_quark_w4a16_and_a4w4_exports_are_read():
    layout = parse_quark_mxfp4(quark_config(["lm_head", "model.layers.0.mlp.gate"]))
    assert layout.exclude == ("lm_head", "model.layers.0.mlp.gate")
    assert not layout.activations_mxfp4
    assert parse_quark_mxfp4(quark_config([], activations_mxfp4=True)).activations_mxfp4


def _broken(path: tuple[str, ...], value):
    config = quark_config(["lm_head"])
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


@pytest.mark.parametrize(
    "config,needle",
    [
        ({"quant_method": "fp8"}, "quant_method='fp8'"),
        ({"quant_method": "gptq", "bits": 4}, "Drop --quantization"),
        (
            _broken(("global_quant_config", "weight", "dtype"), "fp8_e4m3"),
            "weight.dtype is 'fp8_e4m3'",
        ),
        (_broken(("global_quant_config", "weight", "group_size"), 16), "weight.group_size is 16"),
        (_broken(("global_quant_config", "weight", "qscheme"), "per_channel"), "qscheme"),
        (
            _broken(("global_quant_config", "weight", "scale_format"), "fp8"),
            "scale_format is 'fp8'",
        ),
        (_broken(("global_quant_config", "weight"), None), "expected an OCP MXFP4 spec"),
        (_broken(("global_quant_config", "input_tensors"), {"dtype": "fp8_e4m3"}), "input_tensors"),
        (_broken(("global_quant_config", "output_tensors"), {"dtype": "fp4"}), "output tensors"),
        (_broken(("layer_quant_config",), {"*down_proj": {}}), "layer_quant_config"),
        (_broken(("exclude",), [{"name": "lm_head"}]), "must list layer names"),
    ],
)
def test_unknown_layouts_are_named(config, needle):
    with pytest.raises(CheckpointLayoutError, match="--quantization amd_mxfp4") as err:
        parse_quark_mxfp4(copy.deepcopy(config))
    assert needle in str(err.value)
