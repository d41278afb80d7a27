"""gpt-oss's experts on our MoE: expert biases and the clamped SwiGLU, both tiers.

gpt-oss (transformers' GptOssExperts, SGLang's `swiglu_gpt_oss_sigmoid_alpha`):
gate_up = x @ W13^T + b13 with gate and up rows interleaved, g = min(gate, limit),
u = clamp(up, -limit, limit), act = g * sigmoid(alpha g) * (u + 1), out = act @ W2^T +
b2, each selected expert's out times its router weight. Checked here: the torch
tier (moe/reference.py) against that math written out token by token from
transformers' own layout (`_hf_experts`, no code of ours), the Triton tier
(moe/fused.py, under TRITON_INTERPRET=1 on CPU) against the torch tier, float and
MXFP4 experts, interleaved and halves gate/up, with and without biases, on fresh
random shapes, with outputs poisoned; then the SGLang side: which runner configs
our runner now serves and which it still refuses, naming the flag.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sglang_amd.gemm.activation import SILU, GatedActivation, gpt_oss_swiglu
from sglang_amd.moe.fused import fused_moe
from sglang_amd.moe.reference import fused_moe_reference, quantize_experts
from sglang_amd.moe.routing import softmax_topk
from tests.test_moe_fused_triton import _CountLaunches, _poisoned_empty, _to

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ALPHA = 1.702
# Small enough that both clamps cut a good share of these random pre-activations
# (gpt-oss's 7.0 would never bind on them); `test_the_clamps_bind` checks it does.
LIMIT = 0.75


def make(experts, k, tokens, hidden, inter, dtype=torch.float32, seed=0):
    """gpt-oss experts in transformers' layout: gate_up_proj [E, H, 2I] (gate and up
    columns interleaved), down_proj [E, I, H], biases; x; a routing."""
    g = torch.Generator().manual_seed(seed)
    gate_up = torch.randn(experts, hidden, 2 * inter, generator=g) * 0.12
    gate_up_bias = torch.randn(experts, 2 * inter, generator=g) * 0.5
    down = torch.randn(experts, inter, hidden, generator=g) * 0.12
    down_bias = torch.randn(experts, hidden, generator=g) * 0.2
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    w, ids = softmax_topk(torch.randn(tokens, experts, generator=g), k)
    return x, (gate_up, gate_up_bias, down, down_bias), w, ids


def _hf_experts(x, hf, w, ids, alpha=ALPHA, limit=LIMIT):
    """transformers' GptOssExperts math, slot by slot, in float32, from its own layout."""
    gate_up_proj, gate_up_bias, down_proj, down_bias = (t.float() for t in hf)
    out = torch.zeros(x.shape, dtype=torch.float32)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            if e < 0:
                continue
            gate_up = x[t].float() @ gate_up_proj[e] + gate_up_bias[e]
            gate, up = gate_up[::2], gate_up[1::2]
            gate = gate.clamp(min=None, max=limit)
            up = up.clamp(min=-limit, max=limit)
            glu = gate * torch.sigmoid(gate * alpha)
            out[t] += (((up + 1) * glu) @ down_proj[e] + down_bias[e]) * w[t, j]
    return out


def ours(hf, interleaved=True):
    """transformers' tensors in our layout: w13 [E, 2I, H] (rows interleaved as stored,
    or regrouped into gate then up halves), b13 [E, 2I], w2 [E, H, I], b2 [E, H]."""
    gate_up, gate_up_bias, down, down_bias = hf
    w13, b13 = gate_up.transpose(1, 2).contiguous(), gate_up_bias
    if not interleaved:
        order = torch.cat([torch.arange(0, w13.shape[1], 2), torch.arange(1, w13.shape[1], 2)])
        w13, b13 = w13[:, order].contiguous(), b13[:, order].contiguous()
    return w13, b13, down.transpose(1, 2).contiguous(), down_bias


def act(interleaved=True):
    return gpt_oss_swiglu(ALPHA, LIMIT, interleaved)


def test_reference_is_transformers_math():
    """The torch tier, both gate/up layouts, against transformers' math (fp32)."""
    x, hf, w, ids = make(8, 4, 11, 64, 32, seed=1)
    ids[2, 3] = -1  # a slot routed to another rank
    want = _hf_experts(x, hf, w, ids)
    for interleaved in (True, False):
        w13, b13, w2, b2 = ours(hf, interleaved)
        got = fused_moe_reference(x, w13, w2, w, ids, activation=act(interleaved), b13=b13, b2=b2)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_the_clamps_bind():
    """The data of these tests exercise what is new: both clamps cut, and dropping
    them, alpha or either bias moves the result far beyond the tolerances."""
    x, hf, w, ids = make(8, 2, 16, 64, 32, seed=2)
    gate_up = torch.einsum("th,ehn->ten", x, hf[0]) + hf[1]
    gate, up = gate_up[..., ::2], gate_up[..., 1::2]
    assert (gate > LIMIT).float().mean() > 0.1 and (up.abs() > LIMIT).float().mean() > 0.2
    want = _hf_experts(x, hf, w, ids)
    w13, b13, w2, b2 = ours(hf)
    variants = {
        "no clamp": dict(activation=gpt_oss_swiglu(ALPHA, 1e9), b13=b13, b2=b2),
        "silu": dict(activation=replace(SILU, interleaved=True), b13=b13, b2=b2),
        "alpha 1": dict(activation=gpt_oss_swiglu(1.0, LIMIT), b13=b13, b2=b2),
        "no b13": dict(activation=act(), b2=b2),
        "no b2": dict(activation=act(), b13=b13),
        "halves": dict(activation=act(False), b13=b13, b2=b2),
    }
    for name, kw in variants.items():
        got = fused_moe_reference(x, w13, w2, w, ids, **kw)
        assert (got - want).abs().max() > 1e-2, name


@pytest.mark.parametrize(
    "experts,k,tokens,hidden,inter",
    # hidden 40 / inter 24: partial K and N tiles (float weights only; MXFP4 needs % 32).
    [(8, 4, 13, 64, 32), (4, 2, 1, 96, 64), (16, 4, 7, 64, 96), (8, 3, 5, 40, 24)],
)
@pytest.mark.parametrize("weights", ["float", "mxfp4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference(experts, k, tokens, hidden, inter, weights, dtype):
    if weights == "mxfp4" and (hidden % 32 or inter % 32):
        pytest.skip("MXFP4 needs hidden and intermediate % 32")
    x, hf, w, ids = make(experts, k, tokens, hidden, inter, dtype, seed=tokens * k + hidden)
    w13, b13, w2, b2 = ours(hf)
    kw = dict(activation=act(), b13=b13.to(dtype), b2=b2.to(dtype))
    if weights == "mxfp4":
        q = quantize_experts(w13, w2)
        want = fused_moe_reference(x, q, None, w, ids, **kw)
        args = (_to(q, DEVICE), None)
    else:
        w13, w2 = w13.to(dtype), w2.to(dtype)
        want = fused_moe_reference(x, w13, w2, w, ids, **kw)
        args = (w13.to(DEVICE), w2.to(DEVICE))
        if dtype == torch.float32:  # and the reference is transformers' math
            torch.testing.assert_close(want, _hf_experts(x, hf, w, ids), atol=1e-5, rtol=1e-5)
    dev = {key: t.to(DEVICE) if torch.is_tensor(t) else t for key, t in kw.items()}
    got = fused_moe(x.to(DEVICE), *args, w.to(DEVICE), ids.to(DEVICE), **dev)
    assert got.dtype == dtype and got.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.cpu().float(), want.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("biases", ["both", "b13", "b2", "none"])
def test_triton_layouts_and_bias_combinations(interleaved, biases):
    """Each bias alone (the kernels take them independently) over both gate/up layouts."""
    x, hf, w, ids = make(8, 2, 9, 64, 32, seed=7)
    w13, b13, w2, b2 = ours(hf, interleaved)
    kw = dict(activation=act(interleaved))
    kw |= {"b13": b13} if biases in ("both", "b13") else {}
    kw |= {"b2": b2} if biases in ("both", "b2") else {}
    want = fused_moe_reference(x, w13, w2, w, ids, **kw)
    dev = {key: t.to(DEVICE) if torch.is_tensor(t) else t for key, t in kw.items()}
    got = fused_moe(*(t.to(DEVICE) for t in (x, w13, w2, w, ids)), **dev)
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)
    if biases == "both" and interleaved:
        torch.testing.assert_close(got.cpu(), _hf_experts(x, hf, w, ids), atol=1e-5, rtol=1e-5)


def test_silu_experts_take_biases_too():
    """Biases are independent of the activation: SiLU experts with biases, halves."""
    x, hf, w, ids = make(8, 2, 6, 64, 32, seed=9)
    w13, b13, w2, b2 = ours(hf, interleaved=False)
    want = fused_moe_reference(x, w13, w2, w, ids, b13=b13, b2=b2)
    got = fused_moe(*(t.to(DEVICE) for t in (x, w13, w2, w, ids)), b13=b13.to(DEVICE),
                    b2=b2.to(DEVICE))  # fmt: skip
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)
    no_bias = fused_moe_reference(x, w13, w2, w, ids)
    assert (want - no_bias).abs().max() > 1e-2


@pytest.mark.parametrize("mode", ["float", "mxfp4", "a4w4"])
def test_outputs_prefilled_with_nan_are_fully_written(monkeypatch, mode):
    """Every buffer fused_moe allocates starts as NaN; a token routed nowhere gets
    zero (not its biases: b2 belongs to a selected expert)."""
    x, hf, w, ids = make(8, 4, 9, 64, 32, dtype=torch.bfloat16, seed=21)
    ids[2, 1] = -1
    ids[4] = -1
    w13, b13, w2, b2 = ours(hf)
    kw = dict(activation=act(), b13=b13, b2=b2)
    if mode == "float":
        args = (w13.bfloat16(), w2.bfloat16())
        want = fused_moe_reference(x, *args, w, ids, **kw)
        args = tuple(t.to(DEVICE) for t in args)
    else:
        q = quantize_experts(w13, w2)
        want = fused_moe_reference(x, q, None, w, ids, act_mxfp4=mode == "a4w4", **kw)
        args = (_to(q, DEVICE), None)
    dev = {key: t.to(DEVICE) if torch.is_tensor(t) else t for key, t in kw.items()}
    monkeypatch.setattr(torch, "empty", _poisoned_empty(torch.empty))
    got = fused_moe(x.to(DEVICE), *args, w.to(DEVICE), ids.to(DEVICE), act_mxfp4=mode == "a4w4",
                    **dev)  # fmt: skip
    monkeypatch.undo()
    assert not got.isnan().any()
    assert (got[4] == 0).all()
    torch.testing.assert_close(got.cpu().float(), want.float(), atol=2e-2, rtol=2e-2)


def test_a4w4_with_gpt_oss_activation_and_biases():
    """A4W4 (Quark-style activations per 32) composes with both: x rounded before
    GEMM1, the clamped SwiGLU (after b13) rounded before GEMM2."""
    x, hf, w, ids = make(8, 2, 9, 64, 32, seed=11)
    w13, b13, w2, b2 = ours(hf)
    q = quantize_experts(w13, w2)
    kw = dict(activation=act(), b13=b13, b2=b2)
    want = fused_moe_reference(x, q, None, w, ids, act_mxfp4=True, **kw)
    got = fused_moe(x.to(DEVICE), _to(q, DEVICE), None, w.to(DEVICE), ids.to(DEVICE),
                    act_mxfp4=True, **{k: v.to(DEVICE) if torch.is_tensor(v) else v
                                       for k, v in kw.items()})  # fmt: skip
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)
    assert (want - fused_moe_reference(x, q, None, w, ids, **kw)).abs().max() > 1e-3


def test_nan_scale_survives_the_clamps():
    """An E8M0 NaN scale in an expert's gate rows reaches the output through
    min(gate, limit) in both tiers (a clamp that drops NaN would hide it)."""
    x, hf, w, ids = make(4, 1, 6, 64, 32, seed=13)
    ids[:] = torch.tensor([[0], [1], [0], [2], [3], [1]])
    w13, b13, w2, b2 = ours(hf)
    q = quantize_experts(w13, w2)
    q.w13_scale[1, 0, 0] = 0xFF  # expert 1, gate row 0 (interleaved), first block
    kw = dict(activation=act(), b13=b13, b2=b2)
    want = fused_moe_reference(x, q, None, w, ids, **kw)
    dev = {key: t.to(DEVICE) if torch.is_tensor(t) else t for key, t in kw.items()}
    got = fused_moe(x.to(DEVICE), _to(q, DEVICE), None, w.to(DEVICE), ids.to(DEVICE), **dev).cpu()
    hit = (ids[:, 0] == 1).tolist()
    for out in (want, got):
        assert [bool(out[t].isnan().all()) for t in range(6)] == hit
    torch.testing.assert_close(got[~ids[:, 0].eq(1)], want[~ids[:, 0].eq(1)], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["bf16", "mxfp4"])
def test_gpt_oss_layer_still_takes_four_launches(mode):
    """Biases and the clamped SwiGLU live in the GEMMs' epilogues: align, GEMM1,
    GEMM2, combine, and no torch kernel between them."""
    x, hf, w, ids = make(8, 4, 5, 64, 32, dtype=torch.bfloat16, seed=2)
    w13, b13, w2, b2 = ours(hf)
    if mode == "bf16":
        args = (w13.bfloat16().to(DEVICE), w2.bfloat16().to(DEVICE))
    else:
        args = (_to(quantize_experts(w13, w2), DEVICE), None)
    x, w, ids, b13, b2 = (t.to(DEVICE) for t in (x, w, ids, b13, b2))
    counter = _CountLaunches()
    with counter.counting_triton():
        fused_moe(x, *args, w, ids, activation=act(), b13=b13, b2=b2)
    gemm = "triton._grouped_gemm_kernel"
    assert counter.launches == ["triton._align_kernel", gemm, gemm, "triton._combine_kernel"]


def test_activation_definitions():
    """The dataclass refuses what it cannot mean; its torch definition is gpt-oss's."""
    with pytest.raises(ValueError, match="gpt_oss needs alpha and limit"):
        GatedActivation("gpt_oss", alpha=1.702)
    with pytest.raises(ValueError, match="silu takes no alpha"):
        GatedActivation("silu", limit=7.0)
    with pytest.raises(ValueError, match="unknown gated activation 'gelu'"):
        GatedActivation("gelu")  # type: ignore[arg-type]
    gu = torch.tensor([[8.0, -9.0, -1.0, 0.5]])  # (gate, up) pairs, interleaved
    a = gpt_oss_swiglu(2.0, 7.0)
    want = torch.tensor([7.0 * torch.sigmoid(torch.tensor(14.0)) * -6.0,
                         -1.0 * torch.sigmoid(torch.tensor(-2.0)) * 1.5])  # fmt: skip
    torch.testing.assert_close(a(gu)[0], want)


def test_op_dispatch_carries_the_activation_and_biases():
    """ExpertsOp hands both to whichever tier serves, and traces them."""
    from sglang_amd.moe.experts import ExpertsOp, trace_fields
    from sglang_amd.tiers import Tier

    x, hf, w, ids = make(8, 2, 5, 64, 32, seed=5)
    w13, b13, w2, b2 = ours(hf)
    want = _hf_experts(x, hf, w, ids)
    op = ExpertsOp("cpu")
    tiers = [Tier.TORCH] + ([Tier.TRITON] if op.tier is Tier.TRITON else [])
    for tier in tiers:
        op.selection = replace(op.selection, tier=tier)
        got = op(x, w13, w2, w, ids, activation=act(), b13=b13, b2=b2)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    fields = trace_fields(x, w13, w2, w, ids, activation=act(), b13=b13, b2=b2)
    assert fields == {"weights": "float32", "activation": act().label(), "bias": "b13+b2"}
    assert trace_fields(x, w13, w2, w, ids) == {"weights": "float32"}


# ----------------------------------------------------------------- SGLang side

GPT_OSS_RUNNER = dict(activation="silu", is_gated=True, gemm1_alpha=1.702, gemm1_clamp_limit=7.0)


def _runner_config(**overrides):
    from sglang.srt.layers.moe.moe_runner.base import MoeRunnerConfig

    return MoeRunnerConfig(**{"layer_id": 5, **GPT_OSS_RUNNER, **overrides})


@pytest.fixture(scope="module")
def registered():
    from sglang.srt.plugins.hook_registry import HookRegistry

    from sglang_amd import plugin

    plugin.register()
    HookRegistry.apply_hooks()


@pytest.mark.sglang
def test_runner_accepts_gpt_oss_layers(registered):
    """What GptOssSparseMoeBlock builds (silu, gemm1_alpha 1.702, gemm1_clamp_limit =
    swiglu_limit 7, with_bias) is served: interleaved as SGLang's w13 for gpt-oss,
    halves when a layer says gate_up_interleaved=False."""
    from sglang_amd.moe.sglang_runner import AmdMoeRunnerCore, check_runner_config

    assert check_runner_config(_runner_config(), with_bias=True) == gpt_oss_swiglu(1.702, 7.0)
    halves = check_runner_config(_runner_config(gate_up_interleaved=False), with_bias=True)
    assert halves == gpt_oss_swiglu(1.702, 7.0, interleaved=False)
    assert check_runner_config(_runner_config(gemm1_alpha=None, gemm1_clamp_limit=None)) == SILU
    assert AmdMoeRunnerCore(_runner_config()).activation == gpt_oss_swiglu(1.702, 7.0)


@pytest.mark.sglang
@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"gemm1_alpha": None}, "gemm1_clamp_limit=7.0 without gemm1_alpha"),
        ({"gemm1_clamp_limit": None}, "gemm1_alpha=1.702 without gemm1_clamp_limit"),
        ({"gemm1_beta": 0.5}, "gemm1_beta=0.5"),
        (
            {"swiglu_limit": 10.0, "gemm1_alpha": None, "gemm1_clamp_limit": None},
            "swiglu_limit=10.0",
        ),
        ({"activation": "gelu"}, "activation 'gelu'"),
        ({"is_gated": False}, "gated=False"),
    ],
)
def test_runner_still_refuses_other_clamps_and_activations(registered, overrides, needle):
    from sglang_amd.moe.sglang_runner import MoeConfigError, check_runner_config

    for flag, named in ((None, "--moe-runner-backend amd"), ("--quantization amd_mxfp4",) * 2):
        with pytest.raises(MoeConfigError, match=f"{named} cannot serve MoE layer 5") as err:
            check_runner_config(_runner_config(**overrides), with_bias=True, flag=flag)
        assert needle in str(err.value)


def _dispatch(x, w, ids):
    from sglang.srt.layers.moe.token_dispatcher import StandardDispatchOutput
    from sglang.srt.layers.moe.topk import StandardTopKOutput

    return StandardDispatchOutput(x, None, StandardTopKOutput(w, ids, torch.zeros(1)))


@pytest.mark.sglang
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_runner_core_serves_gpt_oss(registered, dtype):
    """MoeRunner("amd") with biases in the quant info, the activation from the config."""
    from sglang.srt.layers.moe.moe_runner import MoeRunner
    from sglang.srt.layers.moe.utils import resolve_moe_runner_backend

    from sglang_amd.moe.sglang_runner import AmdMoeQuantInfo

    x, hf, w, ids = make(8, 4, 7, 64, 32, dtype, seed=31)
    w13, b13, w2, b2 = (t.to(dtype) for t in ours(hf))
    config = _runner_config(gemm1_alpha=ALPHA, gemm1_clamp_limit=LIMIT)
    runner = MoeRunner(resolve_moe_runner_backend("amd"), config)
    info = AmdMoeQuantInfo(w13=w13, w2=w2, b13=b13, b2=b2)
    got = runner.run(_dispatch(x, w, ids), info).hidden_states
    want = _hf_experts(x, tuple(t.to(dtype) for t in hf), w, ids)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want, atol=tol, rtol=tol)


@pytest.mark.sglang
def test_unquantized_gpt_oss_layer_through_the_patch(registered, monkeypatch):
    """A bf16/fp32 gpt-oss checkpoint under --moe-runner-backend amd: SGLang's
    unquantized method creates the biases, our patch hands over w13/w2 only, and the
    runner takes the biases off the layer (never silently without them)."""
    from sglang.srt.layers.moe import utils as moe_utils
    from sglang.srt.layers.quantization.unquant import UnquantizedFusedMoEMethod

    from sglang_amd.moe.sglang_runner import AmdMoeQuantInfo, MoeConfigError, layer_biases

    x, hf, w, ids = make(8, 2, 9, 64, 32, seed=33)
    w13, b13, w2, b2 = ours(hf)
    layer = torch.nn.Module()
    layer.with_bias = True
    layer.moe_runner_config = _runner_config(
        num_experts=8, hidden_size=64, gemm1_alpha=ALPHA, gemm1_clamp_limit=LIMIT, layer=layer
    )
    method = UnquantizedFusedMoEMethod()
    method.create_weights(layer, 8, 64, 32, torch.float32, with_bias=True)
    for name, t in (("w13_weight", w13), ("w2_weight", w2), ("w13_weight_bias", b13),
                    ("w2_weight_bias", b2)):  # fmt: skip
        getattr(layer, name).data.copy_(t)
    monkeypatch.setattr(
        moe_utils.get_flags().moe, "runner_backend", moe_utils.resolve_moe_runner_backend("amd")
    )
    method.create_moe_runner(layer, layer.moe_runner_config)
    got = method.apply(layer, _dispatch(x, w, ids)).hidden_states
    torch.testing.assert_close(got, _hf_experts(x, hf, w, ids), atol=1e-5, rtol=1e-5)
    del layer.w2_weight_bias
    with pytest.raises(MoeConfigError, match="has expert biases but"):
        layer_biases(AmdMoeQuantInfo(w13=w13, w2=w2), layer.moe_runner_config)


@pytest.mark.sglang
def test_mxfp4_method_online_gpt_oss_experts(registered):
    """--quantization amd_mxfp4 on a float gpt-oss checkpoint: experts quantized at
    load, float biases beside them (NaN until loaded), the clamped SwiGLU applied."""
    from sglang_amd.moe.sglang_mxfp4_experts import AmdMxfp4MoEMethod
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    x, hf, w, ids = make(8, 4, 11, 64, 32, seed=35)
    w13, b13, w2, b2 = ours(hf)
    layer = torch.nn.Module()
    layer.moe_runner_config = _runner_config(gemm1_alpha=ALPHA, gemm1_clamp_limit=LIMIT)
    method = AmdMxfp4MoEMethod(AmdMxfp4Config())
    method.create_weights(layer, 8, 64, 32, torch.float32, with_bias=True, weight_loader=None)
    assert layer.w13_weight_bias.isnan().all() and layer.w2_weight_bias.shape == (8, 64)
    for name, t in (("w13_weight", w13), ("w2_weight", w2), ("w13_weight_bias", b13)):
        getattr(layer, name).data.copy_(t)
    with pytest.raises(ValueError, match="w2_weight_bias was not .*in the checkpoint"):
        method.process_weights_after_loading(layer)
    layer.w2_weight_bias.data.copy_(b2)
    method.process_weights_after_loading(layer)
    method.create_moe_runner(layer, layer.moe_runner_config)
    got = method.apply(layer, _dispatch(x, w, ids)).hidden_states
    q = quantize_experts(w13, w2)
    want = fused_moe_reference(x, q, None, w, ids, activation=act(), b13=b13, b2=b2)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
