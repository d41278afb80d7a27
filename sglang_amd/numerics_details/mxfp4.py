"""@triton.jit MXFP4 encoder (E2M1 codes + E8M0 block scales), bit-exact with quant/mxfp4.py.

Where it sits: the torch oracle is `quant/mxfp4.py` (its docstring defines the
format and the three scale roundings); `quant/mxfp4_details/_convert.py`
quantizes whole tensors with `quantize_pairs`, and
`gemm/grouped_gemm_details/_grouped_gemm_a4w4.py` quantizes its float
activation tiles in registers (prologue) and its SiLU-and-mul output (epilogue)
with it, which is how the A4W4 MoE runs without separate quantizer launches.

Tiles are handed in as their even and odd elements ([rows, blocks * 16] each):
that is the packing (element 2i in the low nibble of byte i), so the bytes come
out with one OR and no shuffle.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def e2m1_code(v):
    """Nearest E2M1 code of float32 v (ties to even mantissa, saturating at 6), uint8."""
    a = tl.abs(v)
    code = (a > 0.25).to(tl.uint8)
    code += (a >= 0.75).to(tl.uint8)
    code += (a > 1.25).to(tl.uint8)
    code += (a >= 1.75).to(tl.uint8)
    code += (a > 2.5).to(tl.uint8)
    code += (a >= 3.5).to(tl.uint8)
    code += (a > 5.0).to(tl.uint8)
    sign = (v.to(tl.int32, bitcast=True) >> 31) & 1
    return code | (sign.to(tl.uint8) << 3)


@triton.jit
def e2m1_value(code):
    """float32 value of E2M1 codes (uint8 in [0, 16))."""
    exp = ((code >> 1) & 3).to(tl.float32)
    man = (code & 1).to(tl.float32)
    mag = tl.where(exp == 0.0, man * 0.5, tl.exp2(exp - 1.0) * (1.0 + 0.5 * man))
    return tl.where((code & 8) != 0, -mag, mag)


@triton.jit
def scale_exponent(amax, ROUNDING: tl.constexpr):
    """Unbiased E8M0 exponent (int32 in [-127, 127]) of blocks with float32 max |x| `amax`.

    ROUNDING: 0 "even", 1 "up", 2 "down" (quant/mxfp4.py); an all-zero block gets -127."""
    bits = amax.to(tl.int32, bitcast=True)
    floor_log2 = ((bits >> 23) & 0xFF) - 127
    if ROUNDING == 0:
        # one mantissa bit, nearest: [1.75, 2) x 2^k counts as 2^(k+1)
        e = floor_log2 + ((bits & 0x7FFFFF) >= 0x600000).to(tl.int32) - 2
    elif ROUNDING == 2:
        e = floor_log2 - 2
    else:
        e = floor_log2 - 2
        e = tl.where(amax / tl.exp2(e.to(tl.float32)) > 6.0, e + 1, e)
        e = tl.where(amax / tl.exp2(e.to(tl.float32)) > 6.0, e + 1, e)
    e = tl.where(amax > 0.0, e, -127)
    return tl.minimum(tl.maximum(e, -127), 127)


@triton.jit
def quantize_pairs(even, odd, ROWS: tl.constexpr, BLOCKS: tl.constexpr, ROUNDING: tl.constexpr):
    """even, odd [ROWS, BLOCKS * 16] float32: elements 2j and 2j + 1 of each row's
    BLOCKS 32-element blocks. Returns (bytes [ROWS, BLOCKS * 16] uint8, element 2j
    in the low nibble; scales [ROWS, BLOCKS] uint8 biased E8M0, 0xFF for a block
    holding NaN or inf, whose codes are 0)."""
    e3 = tl.reshape(even, (ROWS, BLOCKS, 16))
    o3 = tl.reshape(odd, (ROWS, BLOCKS, 16))
    finite = (tl.abs(e3) < float("inf")) & (tl.abs(o3) < float("inf"))
    bad = tl.min(finite.to(tl.int32), 2) == 0
    amax = tl.max(
        tl.maximum(tl.where(finite, tl.abs(e3), 0.0), tl.where(finite, tl.abs(o3), 0.0)), 2
    )
    e = scale_exponent(amax, ROUNDING)
    inv = tl.exp2(-e.to(tl.float32))[:, :, None]
    byte = e2m1_code(e3 * inv) | (e2m1_code(o3 * inv) << 4)
    byte = tl.where(bad[:, :, None], 0, byte).to(tl.uint8)
    scale = tl.where(bad, 255, e + 127).to(tl.uint8)
    return tl.reshape(byte, (ROWS, BLOCKS * 16)), scale


@triton.jit
def quantize_tile(x, ROWS: tl.constexpr, COLS: tl.constexpr, ROUNDING: tl.constexpr):
    """x [ROWS, COLS] float (COLS % 32 == 0) -> (bytes [ROWS, COLS // 2] uint8,
    scales [ROWS, COLS // 32] uint8), as `quantize_pairs`."""
    even, odd = tl.split(tl.reshape(x.to(tl.float32), (ROWS, COLS // 2, 2)))
    return quantize_pairs(even, odd, ROWS, COLS // 32, ROUNDING)
