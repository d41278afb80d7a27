"""The SGLang side of our MoE: flag registration, start-time checks, the runner core
and the MXFP4 quant method driven the way SGLang's FusedMoE layer drives them, and
the HookRegistry patch for unquantized experts. No engine here: tests/test_e2e_moe.py
serves a real model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang_amd.flags import UnsupportedConfigError
from sglang_amd.moe.reference import fused_moe_reference, quantize_experts
from sglang_amd.moe.routing import softmax_topk
from sglang_amd.moe.support import moe_flag_problems
from sglang_amd.quant.support import quant_flag_problems

pytestmark = [pytest.mark.sglang]


def _flag_problems(server_args, hf_config, **kw):
    """Both families' start rules for MoE flags, in the order they are reported."""
    return moe_flag_problems(server_args, hf_config, **kw) + quant_flag_problems(
        server_args, hf_config
    )


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
    from sglang_amd.moe.sglang_mxfp4_experts import AmdMxfp4MoEMethod
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

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
    from sglang_amd.moe.sglang_mxfp4_experts import AmdMxfp4MoEMethod
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

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
    assert _flag_problems(_args(), moe) == []
    assert _flag_problems(_args(moe_runner_backend="amd"), moe) == []
    (p,) = _flag_problems(_args(quantization="amd_mxfp4"), moe)
    assert "--quantization amd_mxfp4" in p and "moe_intermediate_size per rank is 80" in p
    ok = SimpleNamespace(num_experts=8, hidden_size=128, moe_intermediate_size=64)
    assert _flag_problems(_args(quantization="amd_mxfp4"), ok) == []
    (p,) = _flag_problems(_args(quantization="amd_mxfp4", tp_size=4), ok)
    assert "per rank is 16" in p and "--tp-size" in p
    (p,) = _flag_problems(_args(quantization="amd_mxfp4", moe_runner_backend="triton"), ok)
    assert "--moe-runner-backend amd" in p and "not triton" in p
    (p,) = _flag_problems(_args(moe_runner_backend="amd", moe_a2a_backend="deepep"), ok)
    assert "drop --moe-a2a-backend deepep" in p
    dense = SimpleNamespace(hidden_size=100, intermediate_size=90)
    assert _flag_problems(_args(quantization="amd_mxfp4"), dense) == []


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
    from sglang_amd.capability import check_start
    from sglang_amd.tiers import TierUnavailableError

    monkeypatch.setenv("SGLANG_AMD_MOE_TIER", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    args = _args(moe_runner_backend="amd", device="cpu")
    with pytest.raises(TierUnavailableError, match="SGLANG_AMD_MOE_TIER=triton"):
        check_start(args, SimpleNamespace(hf_config=SimpleNamespace(num_experts=8, hidden_size=64)))


def test_per_rank_size_follows_moe_dp():
    """SGLang splits the experts' intermediate over tp / ep / moe_dp ranks: 1408 over
    tp 8 with moe_dp 2 is 352 per rank (a multiple of 32), not 176."""
    moe = SimpleNamespace(num_experts=8, hidden_size=128, moe_intermediate_size=1408)
    assert _flag_problems(_args(quantization="amd_mxfp4", tp_size=8, moe_dp_size=2), moe) == []
    (p,) = _flag_problems(_args(quantization="amd_mxfp4", tp_size=8), moe)
    assert "per rank is 176" in p


@pytest.mark.parametrize("runner_scales", [True, False])
@pytest.mark.parametrize("arch", ["DeepseekV3ForCausalLM", "BailingMoeForCausalLM"])
def test_routed_scaling_is_applied_exactly_once(runner_scales, arch):
    """Off CUDA our runner leaves routed_scaling_factor to the model, so a model that
    does not scale itself there would be served 2.5x too small: refused at start."""
    moe = SimpleNamespace(
        num_experts=8,
        hidden_size=128,
        moe_intermediate_size=64,
        routed_scaling_factor=2.5,
        architectures=[arch],
    )
    for flags in (dict(moe_runner_backend="amd"), dict(quantization="amd_mxfp4")):
        problems = _flag_problems(_args(**flags), moe, runner_scales=runner_scales)
        if runner_scales or arch.startswith("Deepseek"):
            assert problems == []
        else:
            (p,) = problems
            assert "routed_scaling_factor=2.5" in p and arch in p
            assert "--moe-runner-backend auto" in p
    moe.routed_scaling_factor = 1.0
    assert _flag_problems(_args(moe_runner_backend="amd"), moe, runner_scales=False) == []


def test_self_scaling_models_still_scale_themselves_off_cuda():
    """SELF_SCALING_OFF_CUDA is a claim about SGLang's model code: each MoE block
    multiplies its output by routed_scaling_factor when not on CUDA/MUSA."""
    import importlib
    import inspect

    from sglang_amd.moe.support import SELF_SCALING_OFF_CUDA

    for path in set(SELF_SCALING_OFF_CUDA.values()):
        module, name = path.rsplit(".", 1)
        source = inspect.getsource(getattr(importlib.import_module(module), name))
        assert "not _is_cuda" in source and "*= self.routed_scaling_factor" in source, path


def test_runner_scales_only_where_sglang_expects_it(monkeypatch):
    from sglang_amd.moe import sglang_runner

    for scales in (True, False):
        monkeypatch.setattr(sglang_runner, "runner_applies_routed_scaling", lambda s=scales: s)
        core = sglang_runner.AmdMoeRunnerCore(_runner_config(routed_scaling_factor=2.5))
        assert core.scale == (2.5 if scales else None)


def test_quant_method_errors_name_the_quantization_flag():
    from sglang_amd.moe.sglang_mxfp4_experts import AmdMxfp4MoEMethod
    from sglang_amd.moe.sglang_runner import MoeConfigError
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    layer = torch.nn.Module()
    layer.moe_runner_config = _runner_config(activation="gelu")
    with pytest.raises(MoeConfigError, match="--quantization amd_mxfp4 cannot serve.*without"):
        AmdMxfp4MoEMethod(AmdMxfp4Config()).create_weights(layer, 8, 64, 64, torch.float32)


def test_shared_expert_fusion_only_when_the_checkpoint_quantizes_it():
    from sglang.srt.models.deepseek_common.utils import quant_blocks_shared_experts_fusion

    from sglang_amd.quant.mxfp4_checkpoint import parse_quark_mxfp4, quark_config
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    def export(exclude):
        return AmdMxfp4Config(parse_quark_mxfp4(quark_config(exclude)))

    assert quant_blocks_shared_experts_fusion(AmdMxfp4Config())  # online: routed only
    float_shared = export(["lm_head", "re:.*mlp.shared_experts.*"])
    assert quant_blocks_shared_experts_fusion(float_shared)
    assert not quant_blocks_shared_experts_fusion(export(["lm_head", "re:.*shared_expert_gate"]))


def _loader(param, loaded_weight, *args, **kwargs):
    """SGLang's v1 column-parallel loader at tp 1: a copy into the parameter."""
    assert param.shape == loaded_weight.shape, (param.shape, loaded_weight.shape)
    param.data.copy_(loaded_weight)


@pytest.mark.parametrize("scale_first", [False, True])
def test_kv_b_proj_is_float_by_the_time_the_model_reads_it(scale_first):
    """DeepSeek splits kv_b_proj.weight into w_kc / w_vc inside load_weights: a packed
    MXFP4 kv_b_proj is decoded the moment its weight and scales are both loaded."""
    from sglang_amd.quant.mxfp4 import dequantize_mxfp4, quantize_mxfp4
    from sglang_amd.quant.mxfp4_checkpoint import parse_quark_mxfp4, quark_config
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config, Mxfp4DecodedAtLoadLinearMethod

    config = AmdMxfp4Config(parse_quark_mxfp4(quark_config(["lm_head"])))
    prefix = "model.layers.0.self_attn.kv_b_proj"
    layer = torch.nn.Module()
    method = config.get_quant_method(_column_linear(), prefix)
    assert isinstance(method, Mxfp4DecodedAtLoadLinearMethod)
    method.create_weights(layer, 64, [96], 64, 96, torch.float32, weight_loader=_loader)
    w = torch.randn(96, 64) * 0.1
    packed, scales = quantize_mxfp4(w)
    loads = [("weight", packed), ("weight_scale", scales)]
    for name, tensor in loads[::-1] if scale_first else loads:
        assert layer.weight.dtype == torch.uint8  # not decoded before both are in
        param = getattr(layer, name)
        param.weight_loader(param, tensor)
    assert layer.weight.dtype == torch.float32 and not hasattr(layer, "weight_scale")
    torch.testing.assert_close(layer.weight.data, dequantize_mxfp4(packed, scales), atol=0, rtol=0)
    method.process_weights_after_loading(layer)
    x = torch.randn(5, 64)
    torch.testing.assert_close(method.apply(layer, x), x @ layer.weight.data.T)

    incomplete = torch.nn.Module()
    method.create_weights(incomplete, 64, [96], 64, 96, torch.float32, weight_loader=_loader)
    incomplete.weight.weight_loader(incomplete.weight, packed)
    with pytest.raises(ValueError, match="kv_b_proj.weight_scale was not in the checkpoint"):
        method.process_weights_after_loading(incomplete)


def _column_linear():
    from sglang.srt.layers.linear import LinearBase

    layer = LinearBase.__new__(LinearBase)
    torch.nn.Module.__init__(layer)
    return layer


def test_runner_picks_the_tier_for_the_activations_device(monkeypatch):
    """A --device cpu server on a GPU machine: the experts op is chosen for the CPU
    tensors it is handed, not for the GPU the machine has."""
    from sglang_amd.moe import sglang_runner

    made = []

    class Recorder(sglang_runner.ExpertsOp):
        def __init__(self, device):
            made.append(torch.device(device))
            super().__init__(device)

    monkeypatch.setattr(sglang_runner, "ExpertsOp", Recorder)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    core = sglang_runner.AmdMoeRunnerCore(_runner_config())
    x = torch.randn(3, 64)
    dispatch, weights, ids = _dispatch(x, torch.randn(3, 8), 2)
    w13, w2 = torch.randn(8, 128, 64) * 0.1, torch.randn(8, 64, 64) * 0.1
    info = sglang_runner.AmdMoeQuantInfo(w13=w13, w2=w2)
    for _ in range(2):
        out = core.run_from_dispatch(dispatch, info, core.config).hidden_states
    assert made == [torch.device("cpu")]
    torch.testing.assert_close(out, fused_moe_reference(x, w13, w2, weights, ids))


def test_excluded_fused_linears_stay_float_when_the_model_maps_none():
    """DeepSeek declares only fused_qkv_a in packed_modules_mapping, so its dense MLPs'
    gate_up_proj must still match an export that excludes gate_proj and up_proj."""
    from sglang.srt.layers.quantization.unquant import UnquantizedLinearMethod

    from sglang_amd.quant.mxfp4_checkpoint import parse_quark_mxfp4, quark_config
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config, AmdMxfp4LinearMethod

    mlp = "model.layers.0.mlp"
    config = AmdMxfp4Config(parse_quark_mxfp4(quark_config([f"{mlp}.gate_proj", f"{mlp}.up_proj"])))
    config.update_packed_modules_mapping(
        {"fused_qkv_a_proj_with_mqa": ["q_a_proj", "kv_a_proj_with_mqa"]}
    )
    linear = _column_linear()
    assert isinstance(
        config.get_quant_method(linear, f"{mlp}.gate_up_proj"), UnquantizedLinearMethod
    )
    assert isinstance(config.get_quant_method(linear, f"{mlp}.down_proj"), AmdMxfp4LinearMethod)
    attn = "model.layers.0.self_attn.fused_qkv_a_proj_with_mqa"
    assert isinstance(config.get_quant_method(linear, attn), AmdMxfp4LinearMethod)


@pytest.mark.parametrize("entry", [r"re:model\.layers\.2\..*", "model.layers.2.self_attn.q_a_proj"])
def test_mxfp4_export_excludes_reach_the_nextn_layer_by_its_checkpoint_name(entry):
    """SGLang's NextN drafts call the MTP layer "model.decoder"; exports name it
    "model.layers.{num_hidden_layers}". A bf16 MTP layer must be read as float."""
    from sglang_amd.quant.mxfp4_checkpoint import quark_config
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    mtp = SimpleNamespace(num_hidden_layers=2, num_nextn_predict_layers=1)
    config = AmdMxfp4Config.from_config({**quark_config([entry]), "hf_config": mtp})
    assert config._excluded("model.decoder.self_attn.q_a_proj")
    assert config._excluded("model.layers.2.self_attn.q_a_proj")
    assert not config._excluded("model.layers.1.self_attn.q_a_proj")
    assert not config._excluded("model.decoder.mlp.experts") or entry.startswith("re:")
    plain = SimpleNamespace(num_hidden_layers=2, num_nextn_predict_layers=0)
    config = AmdMxfp4Config.from_config({**quark_config([entry]), "hf_config": plain})
    assert not config._excluded("model.decoder.self_attn.q_a_proj")
