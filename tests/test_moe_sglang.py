"""The SGLang side of our MoE: flag registration, start-time checks, the runner core
and the MXFP4 quant method driven the way SGLang's FusedMoE layer drives them, and
the HookRegistry patch for unquantized experts. No engine here: tests/test_e2e_moe.py
serves a real model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang_amd.attention.support import UnsupportedConfigError
from sglang_amd.moe.reference import fused_moe_reference, quantize_experts
from sglang_amd.moe.routing import softmax_topk
from sglang_amd.moe.support import moe_flag_problems

pytestmark = [pytest.mark.sglang]


@pytest.fixture(scope="module", autouse=True)
def registered():
    from sglang.srt.plugins.hook_registry import HookRegistry

    from sglang_amd import plugin

    plugin.register()
    HookRegistry.apply_hooks()


def _runner_config(**overrides):
    from sglang.srt.layers.moe.moe_runner.base import MoeRunnerConfig

    return MoeRunnerConfig(**{"activation": "silu", "is_gated": True, "layer_id": 3, **overrides})


def _dispatch(x, logits, k):
    from sglang.srt.layers.moe.token_dispatcher import StandardDispatchOutput
    from sglang.srt.layers.moe.topk import StandardTopKOutput

    weights, ids = softmax_topk(logits, k, renormalize=True)
    return StandardDispatchOutput(x, None, StandardTopKOutput(weights, ids, logits)), weights, ids


def test_flags_and_registries_reach_sglang():
    from sglang.srt.arg_groups.choices import MOE_RUNNER_BACKEND_CHOICES, QUANTIZATION_CHOICES
    from sglang.srt.layers.moe.moe_runner.runner import _CUSTOM_RUNNER_CORE_FACTORIES
    from sglang.srt.layers.moe.utils import resolve_moe_runner_backend
    from sglang.srt.layers.quantization import get_quantization_config

    from sglang_amd import plugin
    from sglang_amd.moe.sglang_runner import AmdMoeRunnerCore
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    plugin.register()
    assert MOE_RUNNER_BACKEND_CHOICES.count("amd") == 1
    assert QUANTIZATION_CHOICES.count("amd_mxfp4") == 1
    assert resolve_moe_runner_backend("amd").value == "amd"
    assert _CUSTOM_RUNNER_CORE_FACTORIES["amd"] is AmdMoeRunnerCore
    assert get_quantization_config("amd_mxfp4") is AmdMxfp4Config


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens,experts,k", [(1, 8, 2), (37, 8, 8), (5, 64, 1)])
def test_runner_core_matches_reference(tokens, experts, k, dtype):
    from sglang.srt.layers.moe.moe_runner import MoeRunner
    from sglang.srt.layers.moe.utils import resolve_moe_runner_backend

    from sglang_amd.moe.sglang_runner import AmdMoeQuantInfo

    torch.manual_seed(tokens + experts)
    hidden, inter = 64, 32
    x = torch.randn(tokens, hidden).to(dtype)
    w13 = (torch.randn(experts, 2 * inter, hidden) * 0.1).to(dtype)
    w2 = (torch.randn(experts, hidden, inter) * 0.1).to(dtype)
    dispatch, weights, ids = _dispatch(x, torch.randn(tokens, experts), k)
    runner = MoeRunner(resolve_moe_runner_backend("amd"), _runner_config())
    got = runner.run(dispatch, AmdMoeQuantInfo(w13=w13, w2=w2)).hidden_states
    want = fused_moe_reference(x, w13, w2, weights, ids)
    assert got.dtype == dtype and got.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"activation": "gelu"}, "activation 'gelu'"),
        ({"is_gated": False}, "gated=False"),
        ({"apply_router_weight_on_input": True}, "router weights applied on the input"),
        ({"swiglu_limit": 7.0}, "swiglu_limit=7.0"),
    ],
)
def test_runner_refuses_what_it_does_not_compute(overrides, needle):
    from sglang_amd.moe.sglang_runner import AmdMoeRunnerCore, MoeConfigError

    with pytest.raises(MoeConfigError, match="--moe-runner-backend amd cannot serve MoE layer 3"):
        AmdMoeRunnerCore(_runner_config(**overrides))
    with pytest.raises(MoeConfigError, match=needle):
        AmdMoeRunnerCore(_runner_config(**overrides))


def _moe_layer(num_experts, hidden):
    """What SGLang's FusedMoE gives a quant method: a module with a runner config."""
    layer = torch.nn.Module()
    layer.moe_runner_config = _runner_config(num_experts=num_experts, hidden_size=hidden)
    return layer


def test_mxfp4_method_quantizes_at_load_and_serves():
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config, AmdMxfp4MoEMethod

    torch.manual_seed(0)
    experts, hidden, inter, tokens, k = 8, 64, 96, 21, 2
    method = AmdMxfp4MoEMethod(AmdMxfp4Config())
    layer = _moe_layer(experts, hidden)
    method.create_weights(layer, experts, hidden, inter, torch.bfloat16, weight_loader=None)
    assert layer.w13_weight.shape == (experts, 2 * inter, hidden)
    w13 = (torch.randn(experts, 2 * inter, hidden) * 0.1).bfloat16()
    w2 = (torch.randn(experts, hidden, inter) * 0.1).bfloat16()
    layer.w13_weight.data.copy_(w13)  # what SGLang's weight loader does
    layer.w2_weight.data.copy_(w2)
    method.process_weights_after_loading(layer)
    assert layer.w13_weight.dtype == torch.uint8
    assert layer.w13_weight.shape == (experts, 2 * inter, hidden // 2)
    assert layer.w2_weight_scale.shape == (experts, hidden, inter // 32)
    q = quantize_experts(w13, w2)
    assert torch.equal(layer.w13_weight, q.w13) and torch.equal(layer.w2_weight_scale, q.w2_scale)

    method.create_moe_runner(layer, layer.moe_runner_config)
    x = torch.randn(tokens, hidden).bfloat16()
    dispatch, weights, ids = _dispatch(x, torch.randn(tokens, experts), k)
    got = method.apply(layer, dispatch).hidden_states
    torch.testing.assert_close(
        got, fused_moe_reference(x, q, None, weights, ids), atol=1e-2, rtol=1e-2
    )


def test_mxfp4_method_names_the_size_that_does_not_fit():
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config, AmdMxfp4MoEMethod

    method = AmdMxfp4MoEMethod(AmdMxfp4Config())
    with pytest.raises(ValueError, match="moe_intermediate_size=40 is not a multiple of 32"):
        method.create_weights(_moe_layer(8, 64), 8, 64, 40, torch.float32)
    with pytest.raises(ValueError, match="hidden_size=48"):
        method.create_weights(_moe_layer(8, 48), 8, 48, 64, torch.float32)


@pytest.mark.parametrize("a4w4", [False, True])
def test_mxfp4_linear_method_loads_packed_weights_and_serves(a4w4):
    from sglang_amd.quant.mxfp4 import dequantize_mxfp4, fake_quantize_mxfp4, quantize_mxfp4
    from sglang_amd.quant.mxfp4_checkpoint import parse_quark_mxfp4, quark_config
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config, AmdMxfp4LinearMethod

    config = AmdMxfp4Config(parse_quark_mxfp4(quark_config([], activations_mxfp4=a4w4)))
    method = AmdMxfp4LinearMethod(config, "model.layers.0.self_attn.qkv_proj")
    layer = torch.nn.Module()
    method.create_weights(layer, 96, [64, 32, 32], 96, 128, torch.float32)
    assert layer.weight.shape == (128, 48) and layer.weight_scale.shape == (128, 3)
    with pytest.raises(ValueError, match="qkv_proj.weight_scale was not .*in the checkpoint"):
        method.process_weights_after_loading(layer)  # nothing loaded yet: poisoned scales
    w = torch.randn(128, 96) * 0.1
    packed, scales = quantize_mxfp4(w)
    layer.weight.data.copy_(packed)
    layer.weight_scale.data.copy_(scales)
    method.process_weights_after_loading(layer)
    x, bias = torch.randn(7, 96), torch.randn(128)
    xq = fake_quantize_mxfp4(x) if a4w4 else x
    want = torch.nn.functional.linear(xq, dequantize_mxfp4(packed, scales), bias)
    torch.testing.assert_close(method.apply(layer, x, bias), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="per-rank input size=40"):
        method.create_weights(torch.nn.Module(), 40, [64], 40, 64, torch.float32)


def test_prequantized_checkpoints_get_a_clear_error():
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    with pytest.raises(ValueError, match="quant_method='fp8'.*Drop --quantization"):
        AmdMxfp4Config.from_config({"quant_method": "fp8"})


def _args(**kw):
    base = dict(moe_runner_backend="auto", quantization=None, moe_a2a_backend="none", tp_size=1)
    return SimpleNamespace(**{**base, **kw})


def test_start_checks_name_the_flag():
    moe = SimpleNamespace(num_experts=8, hidden_size=128, moe_intermediate_size=80)
    assert moe_flag_problems(_args(), moe) == []
    assert moe_flag_problems(_args(moe_runner_backend="amd"), moe) == []
    (p,) = moe_flag_problems(_args(quantization="amd_mxfp4"), moe)
    assert "--quantization amd_mxfp4" in p and "moe_intermediate_size per rank is 80" in p
    ok = SimpleNamespace(num_experts=8, hidden_size=128, moe_intermediate_size=64)
    assert moe_flag_problems(_args(quantization="amd_mxfp4"), ok) == []
    (p,) = moe_flag_problems(_args(quantization="amd_mxfp4", tp_size=4), ok)
    assert "per rank is 16" in p and "--tp-size" in p
    (p,) = moe_flag_problems(_args(quantization="amd_mxfp4", moe_runner_backend="triton"), ok)
    assert "--moe-runner-backend amd" in p and "not triton" in p
    (p,) = moe_flag_problems(_args(moe_runner_backend="amd", moe_a2a_backend="deepep"), ok)
    assert "drop --moe-a2a-backend deepep" in p
    dense = SimpleNamespace(hidden_size=100, intermediate_size=90)
    assert moe_flag_problems(_args(quantization="amd_mxfp4"), dense) == []


def test_engine_refuses_at_start(tmp_path, smollm2_path):
    """Through sgl.Engine: the launcher refuses before any scheduler starts."""
    import sglang as sgl

    from tests.e2e_engines import ENGINE_DEFAULTS, ensure_cpu_platform
    from tests.tiny_models import tiny_qwen3_moe

    ensure_cpu_platform()
    path = tiny_qwen3_moe(tmp_path / "m", smollm2_path)
    with pytest.raises(UnsupportedConfigError, match="not triton"):
        sgl.Engine(
            model_path=str(path),
            quantization="amd_mxfp4",
            moe_runner_backend="triton",
            **ENGINE_DEFAULTS,
        )


def test_unquantized_patch_serves_our_runner_only_when_asked(monkeypatch):
    from sglang.srt.layers.moe import utils as moe_utils
    from sglang.srt.layers.quantization.unquant import UnquantizedFusedMoEMethod

    torch.manual_seed(1)
    experts, hidden, inter, tokens = 8, 64, 32, 9
    layer = _moe_layer(experts, hidden)
    method = UnquantizedFusedMoEMethod()
    method.create_weights(layer, experts, hidden, inter, torch.float32)
    layer.w13_weight.data.normal_(0, 0.1)
    layer.w2_weight.data.normal_(0, 0.1)

    monkeypatch.setattr(
        moe_utils.get_flags().moe, "runner_backend", moe_utils.MoeRunnerBackend.AUTO
    )
    method.create_moe_runner(layer, layer.moe_runner_config)
    assert method.runner.runner_backend.value != "amd"

    monkeypatch.setattr(
        moe_utils.get_flags().moe, "runner_backend", moe_utils.resolve_moe_runner_backend("amd")
    )
    method.create_moe_runner(layer, layer.moe_runner_config)
    assert method.runner.runner_backend.value == "amd"
    x = torch.randn(tokens, hidden)
    dispatch, weights, ids = _dispatch(x, torch.randn(tokens, experts), 2)
    got = method.apply(layer, dispatch).hidden_states
    want = fused_moe_reference(x, layer.w13_weight, layer.w2_weight, weights, ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_mxfp4_linear_method_online_quantizes_after_loading():
    from sglang_amd.quant.mxfp4 import dequantize_mxfp4, quantize_mxfp4
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config, AmdMxfp4LinearMethod

    config = AmdMxfp4Config(dense=True)
    assert config.dense and config.layout is None
    method = AmdMxfp4LinearMethod(config, "model.layers.0.self_attn.o_proj")
    layer = torch.nn.Module()
    method.create_weights(layer, 64, [32], 64, 32, torch.bfloat16)
    assert layer.weight.dtype == torch.bfloat16 and layer.weight.shape == (32, 64)
    w = (torch.randn(32, 64) * 0.1).bfloat16()
    layer.weight.data.copy_(w)  # what SGLang's loader does
    method.process_weights_after_loading(layer)
    packed, scales = quantize_mxfp4(w)
    assert torch.equal(layer.weight, packed) and torch.equal(layer.weight_scale, scales)
    x = torch.randn(5, 64).bfloat16()
    want = torch.nn.functional.linear(x, dequantize_mxfp4(packed, scales, torch.bfloat16))
    torch.testing.assert_close(method.apply(layer, x), want, atol=1e-2, rtol=1e-2)


def test_dense_option_is_parsed(monkeypatch):
    from sglang_amd.quant.sglang_mxfp4 import DENSE_ENV, AmdMxfp4Config

    monkeypatch.setenv(DENSE_ENV, "1")
    assert AmdMxfp4Config().dense
    monkeypatch.setenv(DENSE_ENV, "yes please")
    with pytest.raises(ValueError, match="SGLANG_AMD_MXFP4_DENSE='yes please'"):
        AmdMxfp4Config()


def test_forced_moe_tier_that_cannot_run_is_refused_at_start(monkeypatch):
    from sglang_amd.moe.support import check_moe_flags
    from sglang_amd.tiers import TierUnavailableError

    monkeypatch.setenv("SGLANG_AMD_MOE_TIER", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    args = _args(moe_runner_backend="amd", device="cpu")
    with pytest.raises(TierUnavailableError, match="SGLANG_AMD_MOE_TIER=triton"):
        check_moe_flags(args, SimpleNamespace(num_experts=8, hidden_size=64))
