"""MXFP4 numerics against an independent reference written from the OCP spec.

The reference below works element by element in Python floats: it decodes a
code from its bit fields, and rounds by searching the whole E2M1 grid for the
nearest value, breaking ties towards the code whose mantissa bit is 0.
"""

from __future__ import annotations

import math

import pytest
import torch

from sglang_amd.quant.mxfp4 import (
    E8M0_NAN,
    dequantize_mxfp4,
    e2m1_decode,
    e2m1_encode,
    quantize_mxfp4,
    unpack_codes,
)
from tests.hypothesis_compat import given, settings, st


def spec_decode(code: int) -> float:
    sign = -1.0 if code & 0b1000 else 1.0
    exp, man = (code >> 1) & 0b11, code & 1
    mag = man * 0.5 if exp == 0 else 2.0 ** (exp - 1) * (1 + man / 2)
    return math.copysign(mag, sign)


def spec_round(v: float) -> int:
    best = None
    for code in range(8):
        dist = abs(abs(v) - spec_decode(code))
        key = (dist, code & 1)  # nearest, then the even mantissa
        if best is None or key < best[0]:
            best = (key, code)
    return best[1] | (0b1000 if math.copysign(1.0, v) < 0 else 0)


def spec_exponent(amax: float, mode: str) -> int:
    if amax == 0:
        return -127
    m, e = math.frexp(amax)  # amax = m * 2^e, m in [0.5, 1)
    floor_log2 = e - 1
    if mode == "down":
        x = floor_log2 - 2
    elif mode == "even":
        x = floor_log2 + (1 if 2 * m >= 1.75 else 0) - 2
    else:
        x = floor_log2 - 2
        while amax / 2.0**x > 6:
            x += 1
        while amax / 2.0 ** (x - 1) <= 6:
            x -= 1
    return max(-127, min(127, x))


def spec_quantize(row: list[float], mode: str) -> tuple[list[int], list[int]]:
    codes, scales = [], []
    for b in range(0, len(row), 32):
        block = row[b : b + 32]
        x = spec_exponent(max(abs(v) for v in block), mode)
        scales.append(x + 127)
        codes += [spec_round(v / 2.0**x) for v in block]
    return codes, scales


def test_all_256_bytes_decode():
    packed = torch.arange(256, dtype=torch.uint8)
    scales = torch.full((16,), 127, dtype=torch.uint8)  # 512 elements, scale 1.0
    values = dequantize_mxfp4(packed, scales)
    for byte in range(256):
        lo, hi = values[2 * byte].item(), values[2 * byte + 1].item()
        assert lo == spec_decode(byte & 0xF) and hi == spec_decode(byte >> 4), byte
        assert math.copysign(1, lo) == math.copysign(1, spec_decode(byte & 0xF))


@pytest.mark.parametrize(
    "value,code",
    [
        (0.25, 0),
        (0.75, 2),
        (1.25, 2),
        (1.75, 4),
        (2.5, 4),
        (3.5, 6),
        (5.0, 6),
        (0.2501, 1),
        (4.9999, 6),
        (5.0001, 7),
        (7.0, 7),
        (1e9, 7),
        (-0.25, 8),
        (-5.0, 14),
    ],
)
def test_rounding_ties_and_saturation(value, code):
    assert e2m1_encode(torch.tensor([value])).item() == code == spec_round(value)


def test_signed_zero_and_subnormals():
    codes = e2m1_encode(torch.tensor([0.0, -0.0, 0.5, -0.5, 0.3, -0.3]))
    assert codes.tolist() == [0, 8, 1, 9, 1, 9]
    decoded = e2m1_decode(codes)
    assert torch.signbit(decoded).tolist() == [False, True, False, True, False, True]


@pytest.mark.parametrize("mode", ["even", "up", "down"])
def test_scale_range_ends(mode):
    x = torch.zeros(3, 32)
    x[0] = 2.0**-140  # below the smallest scale: exponent clamps to -127, values flush
    x[1] = 2.0**126 * 1.5  # top of float32 range
    x[2] = 0.0
    packed, scales = quantize_mxfp4(x, mode)
    assert scales[0].item() == 0 and scales[2].item() == 0
    assert scales[1].item() == spec_exponent(2.0**126 * 1.5, mode) + 127
    back = dequantize_mxfp4(packed, scales)
    assert torch.equal(back[0], torch.zeros(32)) and torch.equal(back[2], torch.zeros(32))
    torch.testing.assert_close(back[1], x[1], rtol=0.34, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    log_scale=st.integers(-60, 60),
    mode=st.sampled_from(["even", "up", "down"]),
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 3),
)
def test_matches_spec_reference(log_scale, mode, seed, rows):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 64, generator=g) * 2.0**log_scale
    x[0, 3] = 0.0
    x[0, 5] = -0.0
    packed, scales = quantize_mxfp4(x, mode)
    for r in range(rows):
        codes, sc = spec_quantize(x[r].tolist(), mode)
        assert unpack_codes(packed[r]).tolist() == codes
        assert scales[r].tolist() == sc


@pytest.mark.parametrize("mode", ["even", "up", "down"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_error_within_format_bound(mode, dtype):
    g = torch.Generator().manual_seed(7)
    mags = torch.exp2(torch.randint(-20, 20, (64, 1), generator=g).float())
    x = (torch.randn(64, 256, generator=g) * mags).to(dtype)
    packed, scales = quantize_mxfp4(x, mode)
    back = dequantize_mxfp4(packed, scales, torch.float32)
    xs = x.float().reshape(64, 8, 32)
    X = torch.exp2(scales.float() - 127).unsqueeze(-1)
    err = (back.reshape(64, 8, 32) - xs).abs()
    in_range = xs.abs() <= 6 * X
    # The widest E2M1 gap is 4 -> 6: an in-range element is off by at most X.
    assert (err[in_range] <= X.expand_as(err)[in_range]).all()
    if mode == "up":
        assert in_range.all()
    # Saturated elements come back as +-6 X exactly.
    sat = ~in_range
    assert torch.equal(back.reshape(64, 8, 32)[sat].abs(), (6 * X.expand_as(err))[sat])


def test_nan_and_inf_mark_their_block():
    x = torch.randn(2, 64)
    x[0, 40] = float("nan")
    x[1, 2] = float("inf")
    packed, scales = quantize_mxfp4(x)
    assert scales[0, 1].item() == E8M0_NAN and scales[1, 0].item() == E8M0_NAN
    assert scales[0, 0].item() != E8M0_NAN and scales[1, 1].item() != E8M0_NAN
    back = dequantize_mxfp4(packed, scales)
    assert torch.isnan(back[0, 32:]).all() and torch.isnan(back[1, :32]).all()
    assert torch.isfinite(back[0, :32]).all() and torch.isfinite(back[1, 32:]).all()


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="multiple of 32, got 48"):
        quantize_mxfp4(torch.randn(4, 48))
    with pytest.raises(ValueError, match="scale rounding"):
        quantize_mxfp4(torch.randn(4, 32), "nearest")
    packed, scales = quantize_mxfp4(torch.randn(2, 64))
    with pytest.raises(ValueError, match="one per 32"):
        dequantize_mxfp4(packed, scales[:, :1])


# ------------------------------------------------ Triton tier: bit-exact with torch
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("mode", ["even", "up", "down"])
@pytest.mark.parametrize("shape", [(1, 32), (3, 96), (5, 544)])
def test_triton_quantize_is_bit_exact(mode, shape):
    from sglang_amd.quant.mxfp4_triton import quantize_mxfp4_triton

    g = torch.Generator().manual_seed(shape[1])
    mags = torch.exp2(torch.randint(-30, 30, (shape[0], 1), generator=g).float())
    x = torch.randn(*shape, generator=g) * mags
    x[0, 0] = -0.0
    x[0, 1:3] = torch.tensor([0.25, 1.75]) * 2.0**-127 if shape[1] > 32 else x[0, 1:3]
    if shape[0] > 2:
        x[2, 5] = float("nan")
    want_p, want_s = quantize_mxfp4(x, mode)
    got_p, got_s = quantize_mxfp4_triton(x.to(DEVICE), mode)
    assert torch.equal(got_s.cpu(), want_s)
    assert torch.equal(got_p.cpu(), want_p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_dequantize_matches_torch(dtype):
    from sglang_amd.quant.mxfp4_triton import dequantize_mxfp4_triton

    packed = torch.randint(0, 256, (4, 48), dtype=torch.uint8)
    scales = torch.randint(100, 150, (4, 3), dtype=torch.uint8)
    scales[1, 2] = E8M0_NAN
    want = dequantize_mxfp4(packed, scales, dtype)
    got = dequantize_mxfp4_triton(packed.to(DEVICE), scales.to(DEVICE), dtype).cpu()
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
