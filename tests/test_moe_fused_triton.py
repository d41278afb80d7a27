"""Triton fused MoE (bf16 and MXFP4 W4A16 experts) against the torch reference.

Under TRITON_INTERPRET=1 on CPU with small shapes; compiled on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.moe.fused import fused_moe
from sglang_amd.moe.reference import fused_moe_reference, quantize_experts
from sglang_amd.moe.routing import softmax_topk
from sglang_amd.testing import capture_cuda_graph

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make(experts, k, tokens, hidden=64, inter=32, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=g) * 0.1
    w2 = torch.randn(experts, hidden, inter, generator=g) * 0.1
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    w, ids = softmax_topk(torch.randn(tokens, experts, generator=g), k)
    return x, w13, w2, w, ids


@pytest.mark.parametrize("tokens", [1, 33, 512])
@pytest.mark.parametrize("k", [1, 2, 8])
@pytest.mark.parametrize("experts", [8, 64])
@pytest.mark.parametrize("mxfp4", [False, True])
def test_fused_matches_reference_fp32(experts, k, tokens, mxfp4):
    """The issue's grid; with 1 or 33 tokens over 64 experts most experts get no token."""
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


def test_a4w4_needs_mxfp4_experts():
    x, w13, w2, w, ids = make(4, 1, 3)
    with pytest.raises(ValueError, match="A4W4"):
        fused_moe(x, w13, w2, w, ids, act_mxfp4=True)


def test_hidden_mismatch_is_an_error():
    x, w13, w2, w, ids = make(4, 1, 3)
    with pytest.raises(ValueError, match="hidden size"):
        fused_moe(x[:, :32], w13, w2, w, ids)


def _a4w4_by_token(x, q, w, ids):
    """A4W4 written token by token from the definition (independent of both tiers)."""
    from sglang_amd.quant.mxfp4 import fake_quantize_mxfp4

    w13, w2 = q.dequantize(torch.float32)
    xq = fake_quantize_mxfp4(x.float())
    out = torch.zeros(x.shape, dtype=torch.float32)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            if e < 0:  # routed to another rank: contributes nothing here
                continue
            gate, up = (w13[e] @ xq[t]).chunk(2)
            h = fake_quantize_mxfp4((torch.nn.functional.silu(gate) * up)[None])[0]
            out[t] += w[t, j] * (w2[e] @ h)
    return out


@pytest.mark.parametrize(
    "experts,k,tokens,hidden,inter",
    # K of 96 / 160: the last 64-wide K tile of the dot_scaled kernel is partial.
    [(8, 2, 9, 64, 32), (64, 8, 3, 96, 96), (8, 1, 40, 160, 64)],
)
def test_a4w4_matches_definition(experts, k, tokens, hidden, inter):
    x, w13, w2, w, ids = make(experts, k, tokens, hidden, inter, seed=11 + tokens)
    ids[0, 0] = -1  # a slot routed to another rank
    q = quantize_experts(w13, w2)
    want = _a4w4_by_token(x, q, w, ids)
    ref = fused_moe_reference(x, q, None, w, ids, act_mxfp4=True)
    dev = type(q)(*(t.to(DEVICE) for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    got = fused_moe(x.to(DEVICE), dev, None, w.to(DEVICE), ids.to(DEVICE), act_mxfp4=True)
    torch.testing.assert_close(ref, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)
    # Really A4: rounding the activations moves the result off W4A16.
    w4a16 = fused_moe_reference(x, q, None, w, ids)
    assert (w4a16 - want).abs().max() > 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 7, 64, 512, 2048])
@pytest.mark.parametrize("experts,k", [(8, 2), (64, 8), (256, 8)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_gpu_grid(experts, k, tokens, dtype):
    """Compiled kernels at real widths (hidden 1024, intermediate 512), both weight kinds."""
    x, w13, w2, w, ids = make(experts, k, tokens, hidden=1024, inter=512, dtype=dtype, seed=tokens)
    q = quantize_experts(w13, w2)
    dev = type(q)(*(t.cuda() for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    out = fused_moe(x.cuda(), dev, None, w.cuda(), ids.cuda())
    want = fused_moe_reference(x, q, None, w, ids)
    torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)
    out = fused_moe(x.cuda(), dev, None, w.cuda(), ids.cuda(), act_mxfp4=True)  # A4W4
    want = fused_moe_reference(x, q, None, w, ids, act_mxfp4=True)
    torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)
    out = fused_moe(x.cuda(), w13.to(dtype).cuda(), w2.to(dtype).cuda(), w.cuda(), ids.cuda())
    want = fused_moe_reference(x, w13.to(dtype), w2.to(dtype), w, ids)
    torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)


def test_torch_tier_under_graph_capture_is_a_clear_error(monkeypatch):
    """The torch tier reads expert ids on the host; inside a CUDA-graph capture it
    must say so (the plugin turns graphs off at start when that tier serves)."""
    from dataclasses import replace

    from sglang_amd.moe.experts import ExpertsOp
    from sglang_amd.tiers import Tier

    op = ExpertsOp("cpu")
    op.selection = replace(op.selection, tier=Tier.TORCH)
    x, w13, w2, w, ids = make(4, 2, 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="--disable-cuda-graph"):
        op(x, w13, w2, w, ids)


@pytest.mark.gpu
@pytest.mark.parametrize("act_mxfp4", [False, True])
def test_gpu_fused_moe_replays_in_a_cuda_graph(act_mxfp4):
    """What serving a MoE layer under SGLang's CUDA graphs needs: captured once,
    replayed with other tokens and other routings (experts that go from many
    tokens to none) into the same buffers."""
    experts, k, tokens = 64, 8, 16
    x, w13, w2, w, ids = make(experts, k, tokens, hidden=1024, inter=512, dtype=torch.bfloat16)
    q = quantize_experts(w13, w2)
    dev = type(q)(*(t.cuda() for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    x_s, w_s, ids_s = x.cuda(), w.cuda(), ids.cuda()
    out = torch.empty_like(x_s)

    def launch():
        out.copy_(fused_moe(x_s, dev, None, w_s, ids_s, act_mxfp4=act_mxfp4))

    graph = capture_cuda_graph(launch)

    for seed in (1, 2, 3):
        x2, _, _, w2_, ids2 = make(experts, k, tokens, hidden=1024, inter=512, seed=seed)
        if seed == 3:  # every token on the same 8 experts: the rest get none
            ids2 = torch.arange(k).expand(tokens, k).contiguous()
        x_s.copy_(x2.to(torch.bfloat16))
        w_s.copy_(w2_)
        ids_s.copy_(ids2)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        want = fused_moe_reference(x2.to(torch.bfloat16), q, None, w2_, ids2, act_mxfp4=act_mxfp4)
        torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)
