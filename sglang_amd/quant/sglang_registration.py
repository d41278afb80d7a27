"""SGLang registration of `--quantization amd_mxfp4` (called by `plugin.register`).

The flag choice, SGLang's quantization registry (`QUANTIZATION_METHODS`), and
patches/rocm_quantization.py for SGLang's ROCm allow-list. The MoE family plugs
the method that serves FusedMoE layers into `AmdMxfp4Config` from its own
registration (quant/ never imports moe/). Imports sglang.
"""

from __future__ import annotations

from sglang_amd.flags import QUANTIZATION


def register() -> None:
    """Make `--quantization amd_mxfp4` a valid value backed by our config. Idempotent."""
    from sglang.srt.arg_groups.choices import QUANTIZATION_CHOICES, add_quantization_method_choices
    from sglang.srt.layers.quantization import QUANTIZATION_METHODS

    from sglang_amd.patches import rocm_quantization
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    rocm_quantization.register()
    if QUANTIZATION not in QUANTIZATION_CHOICES:
        add_quantization_method_choices([QUANTIZATION])
    QUANTIZATION_METHODS.setdefault(QUANTIZATION, AmdMxfp4Config)
