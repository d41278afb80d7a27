"""Dense MXFP4 linear (quant/mxfp4_linear.py): Triton tier against the torch reference.

The Triton tier decodes the weight inside the GEMM (W4A16) or takes MXFP4
activations too (A4W4, tl.dot_scaled); under TRITON_INTERPRET=1 on CPU, compiled
on a GPU. The A4W4 oracle is written here from the definition: round x to MXFP4
per 32, decode the weight, multiply in float64.
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.quant.mxfp4 import dequantize_mxfp4, fake_quantize_mxfp4, quantize_mxfp4
from sglang_amd.quant.mxfp4_linear import (
    Mxfp4LinearOp,
    mxfp4_linear,
    mxfp4_linear_reference,
)
from sglang_amd.testing import tolerance
from sglang_amd.tiers import Tier

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make(rows, n, k, dtype=torch.float32, seed=0, lead=()):
    g = torch.Generator().manual_seed(seed)
    # Rows of very different magnitude: each 32-block gets its own scale.
    w = torch.randn(n, k, generator=g) * torch.logspace(-3, 0, n)[:, None]
    wq, ws = quantize_mxfp4(w)
    x = torch.randn(*lead, rows, k, generator=g).to(dtype)
    bias = torch.randn(n, generator=g).to(dtype)
    return x, wq, ws, bias


@pytest.mark.parametrize("rows", [1, 5, 70])
@pytest.mark.parametrize("n,k", [(16, 32), (48, 96), (100, 256)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_w4a16_matches_reference(rows, n, k, dtype):
    x, wq, ws, bias = make(rows, n, k, dtype, seed=rows + n)
    want = mxfp4_linear_reference(x.float(), wq, ws, bias.float())
    dev = [t.to(DEVICE) for t in (x, wq, ws, bias)]
    got = mxfp4_linear(*dev)
    assert got.dtype == dtype and got.shape == (rows, n)
    torch.testing.assert_close(got.cpu().float(), want, **tolerance(dtype))


@pytest.mark.parametrize("rows,n,k", [(3, 16, 64), (40, 48, 160)])
def test_a4w4_matches_definition(rows, n, k):
    x, wq, ws, _ = make(rows, n, k, seed=k)
    want = (fake_quantize_mxfp4(x).double() @ dequantize_mxfp4(wq, ws, torch.float64).T).float()
    got = mxfp4_linear(x.to(DEVICE), wq.to(DEVICE), ws.to(DEVICE), act_mxfp4=True).cpu()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mxfp4_linear_reference(x, wq, ws, act_mxfp4=True), want)
    assert (got - mxfp4_linear(x.to(DEVICE), wq.to(DEVICE), ws.to(DEVICE)).cpu()).abs().max() > 1e-3


def test_leading_dims_and_empty_batches():
    x, wq, ws, bias = make(4, 16, 64, lead=(2,))
    dev = [t.to(DEVICE) for t in (x, wq, ws, bias)]
    got = mxfp4_linear(*dev)
    assert got.shape == (2, 4, 16)
    torch.testing.assert_close(got.cpu(), mxfp4_linear_reference(x, wq, ws, bias))
    empty = mxfp4_linear(dev[0][:0], *dev[1:])
    assert empty.shape == (0, 4, 16)


def test_shape_mismatch_is_an_error():
    x, wq, ws, _ = make(2, 16, 64)
    with pytest.raises(ValueError, match="MXFP4 weight"):
        mxfp4_linear(x[:, :32], wq, ws)


def test_op_dispatch_and_fallback(monkeypatch):
    x, wq, ws, bias = make(3, 16, 64)
    want = mxfp4_linear_reference(x, wq, ws, bias)
    # On DEVICE, not "cpu": a GPU machine has no interpreter, so forcing the Triton
    # tier for a CPU device would be refused there (TierUnavailableError).
    dev = [t.to(DEVICE) for t in (x, wq, ws, bias)]
    monkeypatch.setenv("SGLANG_AMD_QUANT_MXFP4_LINEAR_TIER", "torch")
    op = Mxfp4LinearOp(DEVICE)
    assert op.tier is Tier.TORCH
    torch.testing.assert_close(op(*dev).cpu(), want, **tolerance(torch.float32))
    monkeypatch.setenv("SGLANG_AMD_QUANT_MXFP4_LINEAR_TIER", "triton")
    op = Mxfp4LinearOp(DEVICE)  # compiled on a GPU, the interpreter on CPU
    assert op.tier is Tier.TRITON
    torch.testing.assert_close(op(*dev).cpu(), want, **tolerance(torch.float32))
    x64 = x.double()  # no float64 kernel: one log line, then the torch tier
    got = op(x64.to(DEVICE), dev[1], dev[2]).cpu()
    torch.testing.assert_close(got, mxfp4_linear_reference(x64, wq, ws))


@pytest.mark.gpu
@pytest.mark.parametrize("rows", [1, 16, 64, 1024])
@pytest.mark.parametrize("act_mxfp4", [False, True])
def test_gpu_real_widths(rows, act_mxfp4):
    x, wq, ws, bias = make(rows, 4096, 7168, torch.bfloat16, seed=rows)
    want = mxfp4_linear_reference(x.float(), wq, ws, bias.float(), act_mxfp4=act_mxfp4)
    got = mxfp4_linear(*(t.cuda() for t in (x, wq, ws, bias)), act_mxfp4=act_mxfp4)
    torch.testing.assert_close(got.cpu().float(), want, atol=5e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nan_scale_decodes_to_nan_as_in_the_oracle(dtype):
    """E8M0 0xFF is NaN: the W4A16 GEMM once decoded it as 2^128, so a block of
    positive codes times positive activations gave +inf where the oracle has NaN.
    Every output of that weight row must be NaN, the other rows unchanged."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(16, 64, generator=g)
    w[7, 32:] = torch.rand(32, generator=g) + 0.5  # no zero code: the old decode gave inf
    wq, ws = quantize_mxfp4(w)
    ws[7, 1] = 0xFF
    x = (torch.rand(5, 64, generator=g) + 0.1).to(dtype)
    bias = torch.zeros(16, dtype=dtype)
    want = mxfp4_linear_reference(x.float(), wq, ws, bias.float())
    assert want[:, 7].isnan().all() and not want[:, :7].isnan().any()
    dev = [t.to(DEVICE) for t in (x, wq, ws, bias)]
    got = mxfp4_linear(*dev).cpu().float()
    assert got[:, 7].isnan().all(), got[:, 7]
    torch.testing.assert_close(got, want, equal_nan=True, **tolerance(dtype))
