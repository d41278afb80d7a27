"""SGLang registration of the MoE family (called by `plugin.register`).

  --moe-runner-backend amd       sglang_runner.register (SGLang's runner-core
                                 registry and choice list) and
                                 patches/unquantized_moe.py (the unquantized
                                 method picks runners from a closed list)
  --quantization amd_mxfp4       its FusedMoE layers: sglang_mxfp4_experts.py's
                                 method, plugged into the quant family's config

Imports sglang.
"""

from __future__ import annotations


def register() -> None:
    """Idempotent."""
    from sglang_amd.moe import sglang_runner
    from sglang_amd.moe.sglang_mxfp4_experts import AmdMxfp4MoEMethod
    from sglang_amd.patches import unquantized_moe
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    sglang_runner.register()
    unquantized_moe.register()
    AmdMxfp4Config.moe_method = AmdMxfp4MoEMethod
