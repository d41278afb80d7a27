"""Triton fused MoE (bf16 and MXFP4 W4A16 experts) against the torch reference.

Under TRITON_INTERPRET=1 on CPU with small shapes; compiled on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.moe.fused import fused_moe
from sglang_amd.moe.reference import fused_moe_reference, quantize_experts
from sglang_amd.moe.routing import softmax_topk

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make(experts, k, tokens, hidden=64, inter=32, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=g) * 0.1
    w2 = torch.randn(experts, hidden, inter, generator=g) * 0.1
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    w, ids = softmax_topk(torch.randn(tokens, experts, generator=g), k)
    return x, w13, w2, w, ids


@pytest.mark.parametrize("experts,k,tokens", [(8, 1, 1), (8, 2, 33), (64, 8, 5), (64, 2, 130)])
@pytest.mark.parametrize("mxfp4", [False, True])
def test_fused_matches_reference_fp32(experts, k, tokens, mxfp4):
    x, w13, w2, w, ids = make(experts, k, tokens, seed=experts + k + tokens)
    if mxfp4:
        q = quantize_experts(w13, w2)
        want = fused_moe_reference(x, q, None, w, ids)
        dev = type(q)(*(t.to(DEVICE) for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
        got = fused_moe(x.to(DEVICE), dev, None, w.to(DEVICE), ids.to(DEVICE))
    else:
        want = fused_moe_reference(x, w13, w2, w, ids)
        got = fused_moe(x.to(DEVICE), w13.to(DEVICE), w2.to(DEVICE), w.to(DEVICE), ids.to(DEVICE))
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)


def test_fused_bf16_mxfp4_and_unrouted_slots():
    x, w13, w2, w, ids = make(8, 2, 20, dtype=torch.bfloat16, seed=5)
    ids[3, 1] = -1  # expert parallel: a slot whose expert lives elsewhere
    q = quantize_experts(w13, w2)
    want = fused_moe_reference(x, q, None, w, ids)
    dev = type(q)(*(t.to(DEVICE) for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    got = fused_moe(x.to(DEVICE), dev, None, w.to(DEVICE), ids.to(DEVICE))
    torch.testing.assert_close(got.cpu().float(), want.float(), atol=2e-2, rtol=2e-2)


def test_hidden_mismatch_is_an_error():
    x, w13, w2, w, ids = make(4, 1, 3)
    with pytest.raises(ValueError, match="hidden size"):
        fused_moe(x[:, :32], w13, w2, w, ids)
