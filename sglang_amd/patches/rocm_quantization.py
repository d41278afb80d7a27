"""Let `--quantization amd_mxfp4` pass SGLang's ROCm gate.

`ModelConfig._verify_quantization` (SGLang 0.5.23, configs/model_config.py)
keeps a local list of the methods it allows on ROCm and raises "<name>
quantization is currently not supported in ROCm" for any other, out-of-tree
methods included: the registry (`QUANTIZATION_METHODS`) and the flag choices we
extend have no say. Without this, ROCm -- the platform this package is for --
refuses our method before a weight is read.

One AROUND hook: for our method only, the check runs with the module's `is_hip`
answering False, so every other rule of the check (unknown method, checkpoint
vs flag mismatch) still applies. Every other method runs SGLang's code untouched.
"""

from __future__ import annotations

import sys

_MODULE = "sglang.srt.configs.model_config"
TARGET = f"{_MODULE}.ModelConfig._verify_quantization"
TARGETS = {TARGET: ("self",)}


def _verify_quantization(original, self, *args, **kwargs):
    from sglang_amd.flags import QUANTIZATION

    if getattr(self, "quantization", None) != QUANTIZATION:
        return original(self, *args, **kwargs)
    module = sys.modules[_MODULE]
    is_hip = module.is_hip
    module.is_hip = lambda: False
    try:
        return original(self, *args, **kwargs)
    finally:
        module.is_hip = is_hip


def register() -> None:
    """Register the hook with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(__name__, {TARGET: _verify_quantization})
