"""Block-scaled float8 rounding, the one definition the package uses.

Each block of `block` values along the last dimension becomes float8 e4m3fn with
one float32 scale: scale = max(amax, 1e-4) * (1 / 448), as SGLang's `act_quant`
and per-token-group quantizers round it (a zero block gets 1e-4 / 448), or with
`round_scale` the power of two at or above it (DeepSeek's `ue8m0` scale format).
Users: DSA's FP8 index keys (attention/index_k_cache.py) and the expert-parallel
FP8 wire (ep/wire.py). Never imports sglang.
"""

from __future__ import annotations

import torch

QUANT_BLOCK = 128
FP8_MAX = 448.0  # float8 e4m3fn's largest finite value
AMAX_FLOOR = 1e-4  # SGLang's act_quant: a zero block gets scale 1e-4 / 448


def quantize_fp8(
    x: torch.Tensor, round_scale: bool = False, block: int = QUANT_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] float -> (x8 [..., D] float8 e4m3fn, scale [..., D / block] float32),
    x ~= x8 * scale per block."""
    if x.shape[-1] % block:
        raise ValueError(f"quantize_fp8: last dim {x.shape[-1]} is not a multiple of {block}")
    blocks = x.float().unflatten(-1, (-1, block))
    amax = blocks.abs().amax(-1).clamp_min(AMAX_FLOOR)
    scale = amax * (1.0 / FP8_MAX)  # times the reciprocal, as SGLang's act_quant rounds it
    if round_scale:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    y = (blocks / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX)
    return y.to(torch.float8_e4m3fn).flatten(-2), scale


def dequantize_fp8(x8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of `quantize_fp8`: x8 [..., D], scale [..., D / block] -> [..., D] in dtype."""
    block = x8.shape[-1] // scale.shape[-1]
    return (x8.float().unflatten(-1, (-1, block)) * scale.unsqueeze(-1)).flatten(-2).to(dtype)
