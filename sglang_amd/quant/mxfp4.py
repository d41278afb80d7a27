"""OCP MXFP4 numerics in torch: the reference tier of every FP4 path.

Format (OCP Microscaling Formats v1.0): blocks of 32 elements share one E8M0
scale X = 2^(e - 127); each element is FP4 E2M1 (1 sign, 2 exponent bits with
bias 1, 1 mantissa bit) with magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}. Two
elements per byte, the even-index element in the low nibble. Code 8 is -0.

Quantize: the block scale exponent comes from the block's absolute max `amax`,
by one of three rounding modes; elements are x / X rounded to nearest, ties to
even (the code with mantissa bit 0), saturating at +-6.

- "down" (the OCP spec): e = floor(log2(amax)) - 2. Elements above 6 X saturate.
- "even": as "down" after rounding amax to E2M1's one mantissa bit, nearest,
  ties to even (so amax in [1.75, 2) * 2^k counts as 2^(k+1)); what AMD Quark
  calls even rounding. Less saturation than "down" at the top of a binade.
- "up": the smallest power of two with amax / X <= 6: e = ceil(log2(amax / 6)).
  Never saturates; can lose the low end of the block.

The exponent is clamped to [-127, 127]; an all-zero block gets e = -127.
NaN and inf: a block holding any NaN or +-inf gets the NaN scale (0xFF) and
dequantizes to all NaN (the spec's rule for a NaN scale); its element codes are 0.

Never imports sglang.
"""

from __future__ import annotations

from typing import Literal

import torch

BLOCK = 32
E8M0_BIAS = 127
E8M0_NAN = 0xFF
E2M1_MAX = 6.0
ScaleRounding = Literal["even", "up", "down"]

# Magnitude of each E2M1 code 0..7; codes 8..15 are the negatives (8 is -0).
E2M1_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
# Midpoints between neighbouring magnitudes, and whether a value exactly on one
# rounds up: ties go to the code whose mantissa bit is 0 (the even code).
_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
_TIE_ROUNDS_UP = tuple((i + 1) % 2 == 0 for i in range(7))


def e2m1_table(dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """[16] value of each E2M1 code."""
    mags = list(E2M1_MAGNITUDES)
    return torch.tensor(mags + [-m for m in mags], dtype=dtype, device=device)


def e2m1_encode(x: torch.Tensor) -> torch.Tensor:
    """Round float `x` (already divided by its scale) to E2M1 codes, uint8 in [0, 16).

    Nearest, ties to even, saturating at +-6. NaN encodes as 0 (callers mark
    the block through its scale).
    """
    a = x.abs().float().nan_to_num(nan=0.0)
    code = torch.zeros_like(a, dtype=torch.uint8)
    for mid, up in zip(_MIDPOINTS, _TIE_ROUNDS_UP, strict=True):
        code += (a >= mid if up else a > mid).to(torch.uint8)
    sign = torch.signbit(x) & ~torch.isnan(x)
    return code | (sign.to(torch.uint8) << 3)


def e2m1_decode(codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """E2M1 codes (uint8 in [0, 16)) to values."""
    return e2m1_table(dtype, codes.device)[codes.long()]


def _floor_log2(a: torch.Tensor) -> torch.Tensor:
    """floor(log2(a)) for a > 0, exact (from the float32 exponent field), int32."""
    mant, exp = torch.frexp(a.float())  # a = mant * 2^exp, mant in [0.5, 1)
    return exp - 1


def scale_exponents(amax: torch.Tensor, rounding: ScaleRounding = "even") -> torch.Tensor:
    """Unbiased block-scale exponents (int32, in [-127, 127]) from block amax (> 0 or 0)."""
    a = amax.float()
    positive = a > 0
    safe = torch.where(positive, a, torch.ones_like(a))
    if rounding == "down":
        e = _floor_log2(safe) - 2
    elif rounding == "even":
        mant, exp = torch.frexp(safe)  # safe = (2 * mant) * 2^(exp - 1), 2 * mant in [1, 2)
        bumps = 2 * mant >= 1.75  # one mantissa bit: [1.75, 2) rounds to 2 (a tie at 1.75 to even)
        e = exp - 1 + bumps.to(exp.dtype) - 2
    elif rounding == "up":
        e = torch.ceil(torch.log2(safe / E2M1_MAX)).to(torch.int32)
        # log2 rounding error: make sure amax / 2^e <= 6 and amax / 2^(e-1) > 6.
        e = e + (safe / torch.exp2(e.float()) > E2M1_MAX).to(torch.int32)
        e = e - (safe / torch.exp2(e.float() - 1) <= E2M1_MAX).to(torch.int32)
    else:
        raise ValueError(f"scale rounding {rounding!r}: use 'even', 'up' or 'down'")
    e = torch.where(positive, e.to(torch.int32), torch.full_like(e, -E8M0_BIAS, dtype=torch.int32))
    return e.clamp(-E8M0_BIAS, E8M0_BIAS)


def check_block_dim(k: int, what: str = "last dimension") -> None:
    if k % BLOCK:
        raise ValueError(f"MXFP4 needs the {what} to be a multiple of {BLOCK}, got {k}")


def quantize_mxfp4(
    x: torch.Tensor, rounding: ScaleRounding = "even"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize along the last dimension.

    Args:
        x: [..., K] float (K a multiple of 32).
        rounding: block-scale rounding, see the module docstring.

    Returns:
        packed: [..., K // 2] uint8, element 2i in the low nibble of byte i.
        scales: [..., K // 32] uint8 biased E8M0 exponents (0xFF: NaN block).
    """
    k = x.shape[-1]
    check_block_dim(k)
    blocks = x.float().reshape(*x.shape[:-1], k // BLOCK, BLOCK)
    bad = ~torch.isfinite(blocks).all(dim=-1)
    amax = blocks.abs().nan_to_num(nan=0.0, posinf=0.0).amax(dim=-1)
    e = scale_exponents(amax, rounding)
    codes = e2m1_encode(blocks / torch.exp2(e.float()).unsqueeze(-1))
    codes = torch.where(bad.unsqueeze(-1), torch.zeros_like(codes), codes)
    codes = codes.reshape(*x.shape[:-1], k)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    scales = (e + E8M0_BIAS).to(torch.uint8)
    scales = torch.where(bad, torch.full_like(scales, E8M0_NAN), scales)
    return packed, scales


def unpack_codes(packed: torch.Tensor) -> torch.Tensor:
    """[..., K // 2] uint8 -> [..., K] E2M1 codes."""
    lo, hi = packed & 0xF, packed >> 4
    return torch.stack((lo, hi), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def e8m0_to_float(scales: torch.Tensor) -> torch.Tensor:
    """Biased E8M0 exponents -> float32 scale values (0xFF -> NaN)."""
    value = torch.exp2(scales.float() - E8M0_BIAS)
    return torch.where(scales == E8M0_NAN, torch.full_like(value, float("nan")), value)


def dequantize_mxfp4(
    packed: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Inverse of `quantize_mxfp4`: [..., K // 2] + [..., K // 32] -> [..., K] in `dtype`."""
    codes = unpack_codes(packed)
    k = codes.shape[-1]
    if scales.shape[-1] * BLOCK != k:
        raise ValueError(f"{scales.shape[-1]} scales for {k} elements; need one per {BLOCK}")
    values = e2m1_decode(codes).reshape(*codes.shape[:-1], k // BLOCK, BLOCK)
    values = values * e8m0_to_float(scales).unsqueeze(-1)
    return values.reshape(*codes.shape[:-1], k).to(dtype)


def fake_quantize_mxfp4(x: torch.Tensor, rounding: ScaleRounding = "even") -> torch.Tensor:
    """dequantize(quantize(x)) in x's dtype: what an MXFP4 weight computes with."""
    return dequantize_mxfp4(*quantize_mxfp4(x, rounding), dtype=x.dtype)
