"""gpt-oss's own MXFP4 checkpoints under `--quantization amd_mxfp4`, no conversion tool.

The format (`*.mlp.experts.{gate_up,down}_proj_{blocks,scales}` uint8 + bf16 biases,
`quantization_config = {"quant_method": "mxfp4", ...}`) decodes to exactly what
transformers' own MXFP4 dequantization gives on the same tensors; a tiny
checkpoint written in it (tests/tiny_gpt_oss.py) goes through SGLang's real
GptOss weight loader into our MoE method, whose experts then equal transformers'
dequantized model and compute its expert outputs (tensor- and expert-parallel
parts included); SGLang's checkpoint/flag resolution keeps our method; what we
do not read is refused at start, naming the flag.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang_amd.quant.mxfp4 import dequantize_mxfp4, fake_quantize_mxfp4
from sglang_amd.quant.mxfp4_checkpoint import (
    CheckpointLayoutError,
    gpt_oss_excluded,
    parse_mxfp4_checkpoint,
    quark_config,
)

GPT_OSS = ["GptOssForCausalLM"]


@pytest.mark.parametrize("experts,rows,k", [(2, 6, 64), (3, 10, 128), (1, 4, 2880)])
def test_blocks_decode_as_transformers_does(experts, rows, k):
    """Fresh random codes and E8M0 scales: our decode of the blocks viewed as packed
    rows equals transformers' `convert_moe_packed_tensors` bit for bit (float32 and
    its bf16 default), so nibble order, block grouping and scale layout agree."""
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    g = torch.Generator().manual_seed(rows * k)
    blocks = torch.randint(0, 256, (experts, rows, k // 32, 16), generator=g, dtype=torch.uint8)
    scales = torch.randint(110, 140, (experts, rows, k // 32), generator=g, dtype=torch.uint8)
    scales[0, 0, 0] = 0  # the smallest scale, 2^-127
    ours = dequantize_mxfp4(blocks.reshape(experts, rows, k // 2), scales, torch.float32)
    theirs = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32).transpose(1, 2)
    assert torch.equal(ours, theirs)
    theirs16 = convert_moe_packed_tensors(blocks, scales).transpose(1, 2)
    assert theirs16.dtype == torch.bfloat16 and torch.equal(ours, theirs16.float())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, smollm2_path):
    from tests.tiny_gpt_oss import gpt_oss_dequantized_copy, tiny_gpt_oss, tiny_gpt_oss_mxfp4

    root = tmp_path_factory.mktemp("gpt_oss")
    f32 = tiny_gpt_oss(root / "f32", smollm2_path)
    mx = tiny_gpt_oss_mxfp4(f32, root / "mxfp4")
    return SimpleNamespace(f32=f32, mxfp4=mx, oracle=gpt_oss_dequantized_copy(mx, root / "deq"))


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_export_and_oracle_hold_the_same_weights(checkpoints):
    """The MXFP4 export is our quantization of the float model; transformers' own load
    of it (dequantize=True, cast to float32) and the saved oracle hold exactly its
    decoded experts, and the other tensors as stored (bf16)."""
    from transformers import AutoModelForCausalLM

    src, mx = _tensors(checkpoints.f32), _tensors(checkpoints.mxfp4)
    oracle = AutoModelForCausalLM.from_pretrained(checkpoints.oracle, dtype=torch.float32)
    want = dict(oracle.named_parameters())
    assert set(want) == set(src)
    for name, w in src.items():
        if name.endswith(("gate_up_proj", "down_proj")):
            blocks, scales = mx[f"{name}_blocks"], mx[f"{name}_scales"]
            e, rows, groups, half = blocks.shape
            decoded = dequantize_mxfp4(blocks.reshape(e, rows, groups * half), scales)
            assert torch.equal(decoded, fake_quantize_mxfp4(w.transpose(1, 2)))
            assert torch.equal(want[name].data, decoded.transpose(1, 2)), name
        else:
            assert mx[name].dtype == torch.bfloat16
            assert torch.equal(want[name].data, mx[name].float()), name
    assert getattr(oracle.config, "quantization_config", None) is None


# ----------------------------------------------------------------- SGLang side


@pytest.fixture(scope="module")
def registered():
    from sglang.srt.plugins.hook_registry import HookRegistry

    from sglang_amd import plugin

    plugin.register()
    HookRegistry.apply_hooks()


@pytest.mark.sglang
def test_sglang_resolves_the_checkpoint_to_our_method(registered, checkpoints):
    """ModelConfig's check: with the flag, our `override_quantization_method` claims the
    checkpoint's mxfp4 (no 'does not match' error); without it we claim nothing (SGLang
    keeps its own mxfp4, which on this CPU platform it does not even register)."""
    from sglang.srt.configs.model_config import ModelConfig

    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    path = str(checkpoints.mxfp4)
    assert ModelConfig(path, quantization="amd_mxfp4").quantization == "amd_mxfp4"
    override = AmdMxfp4Config.override_quantization_method
    assert override({"quant_method": "mxfp4"}, "amd_mxfp4") == "amd_mxfp4"
    assert override({"quant_method": "mxfp4"}, None) is None
    assert override({"quant_method": "fp8"}, "amd_mxfp4") is None


def _config(checkpoints=None, **quant):
    from sglang_amd.quant.sglang_mxfp4 import AmdMxfp4Config

    hf = SimpleNamespace(architectures=GPT_OSS, num_hidden_layers=2)
    base = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn"]}
    return AmdMxfp4Config.from_config({**base, **quant, "hf_config": hf})


@pytest.mark.sglang
def test_only_the_experts_are_mxfp4(registered):
    """gpt-oss quantizes its routed experts only: every linear is float, a FusedMoE
    gets our MXFP4 method unless modules_to_not_convert names it (transformers' rule)."""
    from sglang.srt.layers.linear import LinearBase
    from sglang.srt.layers.moe.fused_moe_triton import FusedMoE
    from sglang.srt.layers.quantization.unquant import (
        UnquantizedFusedMoEMethod,
        UnquantizedLinearMethod,
    )

    from sglang_amd.moe.sglang_mxfp4_experts import AmdMxfp4MoEMethod

    config = _config()
    assert config.gpt_oss and not config.can_fuse_shared_expert()
    linear = LinearBase.__new__(LinearBase)
    for prefix in ("model.layers.0.self_attn.qkv_proj", "model.layers.1.mlp.experts"):
        assert isinstance(config.get_quant_method(linear, prefix), UnquantizedLinearMethod)
    moe = FusedMoE.__new__(FusedMoE)
    method = config.get_quant_method(moe, "model.layers.1.mlp.experts")
    assert isinstance(method, AmdMxfp4MoEMethod) and method.gpt_oss
    kept = _config(modules_to_not_convert=["model.layers.1.mlp.experts"])
    assert isinstance(
        kept.get_quant_method(moe, "model.layers.1.mlp.experts"), UnquantizedFusedMoEMethod
    )
    assert isinstance(kept.get_quant_method(moe, "model.layers.0.mlp.experts"), AmdMxfp4MoEMethod)
    assert gpt_oss_excluded("model.layers.3.self_attn.o_proj", ("model.layers.*.self_attn",))
    assert gpt_oss_excluded("lm_head", ("lm_head",))
    assert not gpt_oss_excluded("model.layers.3.mlp.experts", ("model.layers.*.self_attn",))


@pytest.mark.parametrize(
    "config,architectures,needle",
    [
        (
            {"quant_method": "mxfp4"},
            ["DeepseekV3ForCausalLM"],
            "this model is DeepseekV3ForCausalLM",
        ),
        ({"quant_method": "mxfp4", "weight_block_size": [1, 32]}, GPT_OSS, "['weight_block_size']"),
        ({"quant_method": "mxfp4", "modules_to_not_convert": "lm_head"}, GPT_OSS, "must list"),
        (quark_config(["lm_head"]), GPT_OSS, "does not read Quark exports of GptOssForCausalLM"),
        ({"quant_method": "fp8"}, GPT_OSS, "quant_method='fp8'"),
    ],
)
def test_what_is_not_read_is_refused_at_start(config, architectures, needle):
    """Each refusal names the flag, in the launcher (quant/support.py, before any
    process or weight) as in from_config."""
    from sglang_amd.quant.support import quant_flag_problems

    with pytest.raises(CheckpointLayoutError, match="--quantization amd_mxfp4") as err:
        parse_mxfp4_checkpoint(config, architectures)
    assert needle in str(err.value)
    hf = SimpleNamespace(
        architectures=architectures,
        quantization_config=config,
        num_local_experts=8,
        hidden_size=128,
        intermediate_size=64,
    )
    args = SimpleNamespace(quantization="amd_mxfp4", moe_runner_backend="auto", tp_size=1)
    (problem,) = quant_flag_problems(args, hf)
    assert needle in problem
    hf.quantization_config = {"quant_method": "mxfp4", "modules_to_not_convert": ["lm_head"]}
    hf.architectures = GPT_OSS
    assert quant_flag_problems(args, hf) == []
    (problem,) = quant_flag_problems(
        SimpleNamespace(**{**vars(args), "moe_runner_backend": "flashinfer_mxfp4"}), hf
    )
    assert "pass --moe-runner-backend amd" in problem


class _Experts(torch.nn.Module):
    """What SGLang's FusedMoE gives a quant method, at one tp/ep rank."""

    def __init__(self, method, experts, hidden, inter, tp=(0, 1), ep=(0, 1)):
        from sglang.srt.layers.moe.moe_runner.base import MoeRunnerConfig

        super().__init__()
        self.moe_tp_rank, self.moe_tp_size = tp
        self.moe_ep_rank, self.moe_ep_size = ep
        self.with_bias = True
        self.moe_runner_config = MoeRunnerConfig(
            activation="silu", is_gated=True, gemm1_alpha=1.702, gemm1_clamp_limit=1.0, layer_id=0
        )
        self.quant_method = method
        method.create_weights(
            self, experts // ep[1], hidden, inter // tp[1], torch.float32, with_bias=True,
            weight_loader=None,
        )  # fmt: skip


class _GptOssLoaderHost(torch.nn.Module):
    """The attributes SGLang's `GptOssForCausalLM._load_normal_weights` reads (config,
    the experts at their real names), with its real loading code bound to it."""

    def __init__(self, hf_config, experts_per_layer):
        super().__init__()
        from sglang.srt.models.gpt_oss import GptOssForCausalLM

        self.config = hf_config
        self.model = torch.nn.Module()
        self.model.layers = torch.nn.ModuleList()
        for experts in experts_per_layer:
            layer = torch.nn.Module()
            layer.mlp = torch.nn.Module()
            layer.mlp.experts = experts
            self.model.layers.append(layer)
        self.load = GptOssForCausalLM._load_normal_weights.__get__(self)
        self._get_default_weight_mapping = GptOssForCausalLM._get_default_weight_mapping.__get__(
            self
        )


def _load(checkpoints, tp=(0, 1), ep=(0, 1), drop=None):
    """Both layers' experts loaded from the MXFP4 checkpoint through SGLang's loader."""
    from transformers import AutoConfig

    from sglang_amd.moe.sglang_mxfp4_experts import AmdMxfp4MoEMethod

    hf = AutoConfig.from_pretrained(checkpoints.mxfp4)
    config = _config()
    layers = [
        _Experts(
            AmdMxfp4MoEMethod(config),
            hf.num_local_experts,
            hf.hidden_size,
            hf.intermediate_size,
            tp,
            ep,
        )  # fmt: skip
        for _ in range(hf.num_hidden_layers)
    ]
    host = _GptOssLoaderHost(hf, layers)
    weights = [
        (n, t) for n, t in _tensors(checkpoints.mxfp4).items() if drop is None or drop not in n
    ]
    host.load(weights, is_nextn=False, weight_name_mapping=None)
    for layer in layers:
        layer.quant_method.process_weights_after_loading(layer)
    return layers


@pytest.fixture(scope="module")
def hf_dequantized(checkpoints):
    from tests.tiny_gpt_oss import hf_gpt_oss_dequantized

    return hf_gpt_oss_dequantized(checkpoints.mxfp4)


@pytest.mark.sglang
def test_sglang_loader_reads_the_checkpoint_into_our_experts(
    registered, checkpoints, hf_dequantized
):
    """Through SGLang's own GptOss loader: our experts decode to transformers' dequantized
    weights exactly (interleaved gate/up rows kept), biases as stored, and the runner
    computes transformers' GptOssExperts forward on them (float32)."""
    from sglang.srt.layers.moe.token_dispatcher import StandardDispatchOutput
    from sglang.srt.layers.moe.topk import StandardTopKOutput

    layers = _load(checkpoints)
    for i, layer in enumerate(layers):
        hf = hf_dequantized.model.layers[i].mlp.experts
        assert layer.w13_weight.shape == (8, 128, 64) and not hasattr(layer, "w13_weight_blocks")
        w13 = dequantize_mxfp4(layer.w13_weight, layer.w13_weight_scale)
        w2 = dequantize_mxfp4(layer.w2_weight, layer.w2_weight_scale)
        assert torch.equal(w13, hf.gate_up_proj.transpose(1, 2))
        assert torch.equal(w2, hf.down_proj.transpose(1, 2))
        assert torch.equal(layer.w13_weight_bias, hf.gate_up_proj_bias)
        assert torch.equal(layer.w2_weight_bias, hf.down_proj_bias)

    g = torch.Generator().manual_seed(3)
    x = torch.randn(13, 128, generator=g)
    logits = torch.randn(13, 8, generator=g)
    top, ids = logits.topk(4, dim=-1)
    w = torch.softmax(top, dim=-1)
    layer = layers[1]
    layer.quant_method.create_moe_runner(layer, layer.moe_runner_config)
    dispatch = StandardDispatchOutput(x, None, StandardTopKOutput(w, ids.int(), logits))
    got = layer.quant_method.apply(layer, dispatch).hidden_states
    with torch.no_grad():
        want = hf_dequantized.model.layers[1].mlp.experts(x, ids, w)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _dispatch(seed=3, tokens=13):
    from sglang.srt.layers.moe.token_dispatcher import StandardDispatchOutput
    from sglang.srt.layers.moe.topk import StandardTopKOutput

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, 128, generator=g)
    logits = torch.randn(tokens, 8, generator=g)
    top, ids = logits.topk(4, dim=-1)
    w = torch.softmax(top, dim=-1)
    return StandardDispatchOutput(x, None, StandardTopKOutput(w, ids.int(), logits)), x, w, ids


@pytest.mark.sglang
def test_tensor_and_expert_parallel_ranks_take_their_parts(registered, checkpoints, hf_dequantized):
    """tp 2: each rank loads its half of every expert's intermediate (interleaved gate/up
    pairs, w2's reduction blocks; b2 on rank 0 only, as SGLang's loader zeroes it
    elsewhere) and the ranks' outputs sum to the whole layer. ep 2: rank 1 holds
    experts 4..7."""
    dispatch, x, w, ids = _dispatch()
    total = torch.zeros(13, 128)
    for rank in (0, 1):
        layer = _load(checkpoints, tp=(rank, 2))[0]
        assert layer.w13_weight.shape == (8, 64, 64) and layer.w2_weight.shape == (8, 128, 16)
        assert bool((layer.w2_weight_bias == 0).all()) == (rank == 1)
        layer.quant_method.create_moe_runner(layer, layer.moe_runner_config)
        total += layer.quant_method.apply(layer, dispatch).hidden_states
    with torch.no_grad():
        want = hf_dequantized.model.layers[0].mlp.experts(x, ids, w)
    torch.testing.assert_close(total, want, atol=1e-5, rtol=1e-5)

    layer = _load(checkpoints, ep=(1, 2))[1]
    hf = hf_dequantized.model.layers[1].mlp.experts
    w13 = dequantize_mxfp4(layer.w13_weight, layer.w13_weight_scale)
    assert torch.equal(w13, hf.gate_up_proj[4:].transpose(1, 2))
    assert torch.equal(layer.w2_weight_bias, hf.down_proj_bias[4:])


@pytest.mark.sglang
@pytest.mark.parametrize("drop", ["down_proj_scales", "gate_up_proj_blocks", "gate_up_proj_bias"])
def test_a_missing_tensor_fails_the_load(registered, checkpoints, drop):
    with pytest.raises(ValueError, match="--quantization amd_mxfp4") as err:
        _load(checkpoints, drop=f"layers.1.mlp.experts.{drop}")
    assert drop.replace("gate_up_proj_bias", "w13_weight_bias") in str(err.value)


@pytest.mark.sglang
def test_sglang_forces_bf16_on_mxfp4_gpt_oss_and_we_name_the_dtype(checkpoints, tmp_path):
    """SGLang's gpt-oss defaults declare dtype bfloat16 for an mxfp4 checkpoint whatever
    --dtype says (and leave the MoE runner to us under --quantization). Under
    --quantization amd_mxfp4 an explicit --dtype stands when it is the checkpoint's
    own (`gpt_oss_dtype` names it, for the resolution hook to declare back); another
    one is refused naming --dtype (SGLang's GptOss builds its attention in the
    checkpoint's dtype: a bf16 checkpoint served in float32 fails in its q/k/v GEMM)."""
    from sglang.srt.arg_groups.model_overrides.gpt_oss import _gpt_oss_overrides
    from transformers import AutoConfig

    from sglang_amd.models.capability import _gpt_oss_dtype_problems
    from sglang_amd.quant.support import gpt_oss_dtype
    from tests.tiny_gpt_oss import tiny_gpt_oss_mxfp4

    f32_dense = AutoConfig.from_pretrained(
        tiny_gpt_oss_mxfp4(checkpoints.f32, tmp_path / "m", torch.float32)
    )
    bf16_dense = AutoConfig.from_pretrained(checkpoints.mxfp4)
    args = SimpleNamespace(
        attention_backend="amd",
        prefill_attention_backend=None,
        decode_attention_backend=None,
        dtype="float32",
        moe_runner_backend="auto",
        quantization="amd_mxfp4",
        ep_size=1,
    )
    assert _gpt_oss_overrides(args, f32_dense) == {"dtype": "bfloat16"}
    assert gpt_oss_dtype(args, f32_dense) == "float32"
    # Another dtype than the stored one: not declared back here, refused at start by
    # the models capability for every gpt-oss (one rule, one message).
    assert gpt_oss_dtype(args, bf16_dense) is None
    (problem,) = _gpt_oss_dtype_problems(args, bf16_dense)
    assert "--dtype float32" in problem and "use --dtype bfloat16" in problem
    for dtype in ("auto", "bfloat16"):
        assert gpt_oss_dtype(SimpleNamespace(**{**vars(args), "dtype": dtype}), bf16_dense) is None
    assert gpt_oss_dtype(SimpleNamespace(**{**vars(args), "quantization": None}), f32_dense) is None
    assert gpt_oss_dtype(args, AutoConfig.from_pretrained(checkpoints.f32)) is None
