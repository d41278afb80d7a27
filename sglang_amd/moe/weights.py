"""MoE expert weights as the fused-MoE tiers read them.

Float experts are plain tensors in SGLang's layout (w13 [E, 2I, H], w2 [E, H, I]);
MXFP4 experts travel as one `Mxfp4Experts`. Expert biases (gpt-oss) travel beside
either as float b13 [E, 2I] / b2 [E, H], and w13's gate/up row order (halves or
interleaved) is the `GatedActivation`'s (gemm/activation.py). The SGLang adapters build these from
a layer's parameters; `moe/reference.py` (torch tier) and `moe/fused.py` (Triton
tier) consume them. Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_amd.quant.mxfp4 import dequantize_mxfp4


@dataclass
class Mxfp4Experts:
    """MXFP4 expert weights: packed uint8 + E8M0 scales along the reduction dim."""

    w13: torch.Tensor  # [E, 2I, H // 2] uint8
    w13_scale: torch.Tensor  # [E, 2I, H // 32] uint8
    w2: torch.Tensor  # [E, H, I // 2] uint8
    w2_scale: torch.Tensor  # [E, H, I // 32] uint8

    def dequantize(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            dequantize_mxfp4(self.w13, self.w13_scale, dtype),
            dequantize_mxfp4(self.w2, self.w2_scale, dtype),
        )
