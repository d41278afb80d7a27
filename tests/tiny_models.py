"""Tiny random-weight checkpoints of real architectures, for e2e tests.

No small real MoE checkpoint exists, so these are transformers' own model
classes with a tiny config and seeded random weights, saved with the SmolLM2
tokenizer. The same folder is what HF (the oracle) and SGLang both load.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Shared by every tiny config: SmolLM2's tokenizer (vocab, bos/eos), untied head.
_COMMON = dict(
    vocab_size=49152,
    hidden_size=128,
    intermediate_size=256,
    moe_intermediate_size=64,
    num_hidden_layers=2,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    rms_norm_eps=1e-6,
)


@torch.no_grad()
def _random_init(model: torch.nn.Module) -> None:
    """Larger-than-default init, so routing and logits are not flat."""
    for p in model.parameters():
        if p.dim() > 1:
            p.normal_(0.0, 0.08)
    for name, buf in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            buf.normal_(0.0, 0.05)


def _save(model: torch.nn.Module, out: Path, smollm2: str) -> Path:
    """Saved bf16 with SmolLM2's tokenizer: the folder both HF (the oracle) and SGLang load."""
    from transformers import AutoTokenizer

    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(smollm2).save_pretrained(out)
    return out


def _save_random(model: torch.nn.Module, out: Path, smollm2: str) -> Path:
    _random_init(model)
    return _save(model, out, smollm2)


def tiny_qwen3_moe(out: Path, smollm2: str, seed: int = 0) -> Path:
    """Qwen3-MoE: hidden 128, 2 layers, 4 q / 2 kv heads of 32, 8 experts top-2, inter 64."""
    if (out / "config.json").is_file():
        return out
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    config = Qwen3MoeConfig(
        **_COMMON,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
    )
    return _save_random(Qwen3MoeForCausalLM(config), out, smollm2)


DENSE_MXFP4 = ("q_proj", "k_proj", "v_proj", "o_proj")


@torch.no_grad()
def fake_quantize_experts(model: torch.nn.Module, dense: tuple[str, ...] = ()) -> int:
    """Replace every routed-expert weight of an HF MoE model (and the linears named in
    `dense`) by dequantize(quantize(w)).

    What `--quantization amd_mxfp4` serves, computed by our torch MXFP4 reference
    (itself tested bit for bit against the spec), blocks along each weight's
    reduction dimension. Returns how many tensors were replaced.
    """
    from sglang_amd.quant.mxfp4 import fake_quantize_mxfp4

    replaced = 0
    for name, module in model.named_modules():
        if name.endswith("mlp.experts"):
            weights = [module.gate_up_proj, module.down_proj]
        elif name.rsplit(".", 1)[-1] in dense:
            weights = [module.weight]
        else:
            continue
        for weight in weights:
            weight.copy_(fake_quantize_mxfp4(weight.float()).to(weight.dtype))
            replaced += 1
    if not replaced:
        raise AssertionError("no `mlp.experts` modules found; transformers' layout changed")
    return replaced


def fake_quantized_copy(src: Path, out: Path, dense: tuple[str, ...] = ()) -> Path:
    """`src` with every expert weight replaced by dequantize(quantize(w)), saved in bf16.

    MXFP4 values times E8M0 scales are exact in bf16, so this checkpoint holds
    exactly the weights `--quantization amd_mxfp4` computes with: HF reads it as
    the MXFP4 oracle and SGLang's own bf16 path serves it as the noise baseline.
    """
    if (out / "config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    fake_quantize_experts(model, dense)
    for module in model.modules():
        if hasattr(module, "gate_up_proj"):
            assert torch.equal(module.gate_up_proj.to(torch.bfloat16).float(), module.gate_up_proj)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def quark_mxfp4_export(
    src: Path, out: Path, dense: tuple[str, ...] = DENSE_MXFP4, keep_float: str | None = None
) -> Path:
    """`src` as a Quark MXFP4 export: experts (and the `dense` linears) stored as packed
    uint8 `weight` + E8M0 `weight_scale`, every other linear listed in `exclude`.
    `keep_float`: a regex of weight names kept float and excluded as one `re:` entry,
    as exports list an MTP layer left in bf16 (`re:model\\.layers\\.61\\..*`).

    Quantized by our torch reference with the scale rounding the online path uses,
    so it holds the same weights as `fake_quantized_copy(src, ..., dense)`.
    """
    if (out / "config.json").is_file():
        return out
    import json
    import re
    import shutil

    from safetensors.torch import load_file, save_file

    from sglang_amd.quant.mxfp4 import quantize_mxfp4
    from sglang_amd.quant.mxfp4_checkpoint import quark_config

    out.mkdir(parents=True)
    tensors, exclude = {}, [f"re:{keep_float}"] if keep_float else []
    weights = {}
    for shard in sorted(src.glob("*.safetensors")):
        weights.update(load_file(shard))
    for name, w in weights.items():
        module = name.removesuffix(".weight")
        if keep_float and re.match(keep_float, name):
            tensors[name] = w
            continue
        quantized = ".mlp.experts." in name or module.rsplit(".", 1)[-1] in dense
        if name.endswith(".weight") and w.dim() == 2 and quantized:
            tensors[name], tensors[f"{module}.weight_scale"] = quantize_mxfp4(w.float(), "even")
            continue
        if name.endswith(".weight") and w.dim() == 2 and "embed_tokens" not in name:
            exclude.append(module)  # a float linear: lm_head, the routers
        tensors[name] = w
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = quark_config(sorted(exclude))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for f in src.iterdir():
        if f.name != "config.json" and not f.name.startswith("model"):
            shutil.copy(f, out / f.name)
    return out


# The DeepSeek family's tiny MLA + MoE (kv_lora_rank 64 != qk_nope_head_dim 32 on purpose;
# 8 routed experts + 1 shared, top-2 over 2 groups, routed scaling 2.5) and YaRN RoPE.
_DEEPSEEK = dict(
    num_attention_heads=4,
    num_key_value_heads=4,
    q_lora_rank=64,
    kv_lora_rank=64,
    qk_rope_head_dim=16,
    qk_nope_head_dim=32,
    v_head_dim=32,
    n_routed_experts=8,
    n_shared_experts=1,
    num_experts_per_tok=2,
    n_group=2,
    topk_group=1,
    norm_topk_prob=True,
    routed_scaling_factor=2.5,
    rope_scaling={
        "type": "yarn",
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 512,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
)


def _sglang_deepseek_fields(config, nextn: bool) -> None:
    """What SGLang's DeepSeek code reads that HF's configs do not all carry: sigmoid
    scores with a correction bias, every layer past the dense ones MoE, the MTP layers."""
    for key, value in (
        ("moe_layer_freq", 1),
        ("topk_method", "noaux_tc"),
        ("scoring_func", "sigmoid"),
        ("num_nextn_predict_layers", 1 if nextn else 0),
    ):
        setattr(config, key, value)


def tiny_deepseek_v3(
    out: Path, smollm2: str, seed: int = 0, dense: bool = False, nextn: bool = False
) -> Path:
    """DeepSeek-V3 (MLA + MoE, `_DEEPSEEK`): hidden 128, 2 layers (layer 0 dense).
    `dense=True`: both layers dense (MLA alone). `nextn=True`: the config declares one
    MTP layer (SGLang's NEXTN draft; HF ignores it, and the checkpoint has no weights
    for it, so SGLang loads the draft with load format "dummy")."""
    if (out / "config.json").is_file():
        return out
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(seed)
    config = DeepseekV3Config(**_COMMON, **_DEEPSEEK, first_k_dense_replace=2 if dense else 1)
    _sglang_deepseek_fields(config, nextn)
    return _save_random(DeepseekV3ForCausalLM(config), out, smollm2)


def tiny_qwen3(out: Path, smollm2: str, seed: int = 0) -> Path:
    """Qwen3 dense: hidden 128, 2 layers, 4 q / 2 kv heads of 32 (q/k RMSNorm in the model)."""
    if (out / "config.json").is_file():
        return out
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    common = {k: v for k, v in _COMMON.items() if k != "moe_intermediate_size"}
    config = Qwen3Config(**common, num_attention_heads=4, num_key_value_heads=2, head_dim=32)
    return _save_random(Qwen3ForCausalLM(config), out, smollm2)


def tiny_kimi_k2(out: Path, smollm2: str, seed: int = 0) -> Path:
    """Kimi-K2's shape scaled down: the DeepSeek-V3 architecture (SGLang reads a
    `kimi_k2` config as DeepSeek-V3's; saved as `deepseek_v3` so HF loads it without
    remote code) with one expert group, top-8 of 48 routed experts (384 in the
    real model), one shared expert, routed scaling 2.827, layer 0 dense."""
    if (out / "config.json").is_file():
        return out
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(seed)
    kimi = {**_DEEPSEEK, "n_routed_experts": 48, "num_experts_per_tok": 8, "n_group": 1,
            "topk_group": 1, "routed_scaling_factor": 2.827, "moe_intermediate_size": 32}  # fmt: skip
    common = {k: v for k, v in _COMMON.items() if k != "moe_intermediate_size"}
    config = DeepseekV3Config(**common, **kimi, first_k_dense_replace=1)
    _sglang_deepseek_fields(config, nextn=False)
    return _save_random(DeepseekV3ForCausalLM(config), out, smollm2)


def tiny_deepseek_v32(
    out: Path, smollm2: str, seed: int = 0, index_topk: int = 16, nextn: bool = False
) -> Path:
    """DeepSeek-V3.2 (DSA): `tiny_deepseek_v3`'s dense MLA, both layers with a lightning
    indexer picking `index_topk` tokens (16 index heads of 128, the dim SGLang's
    index-K pool requires). 16 heads make an exact tie of two tokens' scores (every
    head's ReLU zero for both) rare, so HF's unspecified tie order rarely matters.
    `nextn=True`: one MTP layer declared, as in `tiny_deepseek_v3` (its MoE is the
    only MoE layer)."""
    if (out / "config.json").is_file():
        return out
    from transformers import DeepseekV32ForCausalLM

    torch.manual_seed(seed)
    config = _deepseek_v32_config(first_k_dense_replace=2, index_topk=index_topk, nextn=nextn)
    return _save_random(DeepseekV32ForCausalLM(config), out, smollm2)


def _deepseek_v32_config(first_k_dense_replace: int, index_topk: int, nextn: bool):  # noqa: ANN202
    """`_DEEPSEEK`'s MLA with a lightning indexer of 16 heads of 128 on every layer."""
    from transformers import DeepseekV32Config

    config = DeepseekV32Config(**_COMMON, **_DEEPSEEK, first_k_dense_replace=first_k_dense_replace,
                               index_topk=index_topk, index_head_dim=128, index_n_heads=16)  # fmt: skip
    _sglang_deepseek_fields(config, nextn)
    return config


@torch.no_grad()
def _with_agreeing_mtp(
    model, out: Path, smollm2: str, quiet_first_layer: float, config_extra: dict | None = None
) -> Path:
    """Save `model` (two layers, the last MoE, random) with an MTP layer that drafts
    what it would say: embeddings scaled to unit RMS, the first layer's output
    projections scaled by `quiet_first_layer`, and the NextN layer the last layer's
    copy read one token later (`NextNHead.copy_target_layer`: eh_proj passes the
    embedding through, so the draft at position t computes that layer at t+1 over
    every token but the first, without the quiet layer's small share). Two layers,
    not one: SGLang reads a one-layer target's MTP weights from layer 0.
    `config_extra`: config.json fields transformers would not write (SGLang's
    architecture name for a family transformers lacks)."""
    import json

    from sglang_amd.mtp.checkpoint import write_into_checkpoint
    from sglang_amd.mtp.nextn_head import NextNHead

    _random_init(model)
    model.to(torch.bfloat16).to(torch.float32)  # scale the values the checkpoint stores
    e = model.model.embed_tokens.weight
    e.div_(e.pow(2).mean(-1, keepdim=True).sqrt())
    first = model.model.layers[0]
    first.self_attn.o_proj.weight.mul_(quiet_first_layer)
    first.mlp.down_proj.weight.mul_(quiet_first_layer)
    _save(model, out, smollm2)
    if config_extra:
        path = out / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config_extra}, indent=2))
        for key, value in config_extra.items():
            setattr(model.config, key, value)
    head = NextNHead(model.to(torch.float32))
    head.copy_target_layer()
    write_into_checkpoint(head, out, torch.bfloat16)
    return out


def tiny_deepseek_v3_agreeing_mtp(
    out: Path, smollm2: str, seed: int = 0, quiet_first_layer: float = 0.1
) -> Path:
    """DeepSeek-V3 (`_DEEPSEEK`: a dense MLA layer, then a MoE MLA layer) whose MTP
    layer agrees with it (`_with_agreeing_mtp`): ~0.8 of the drafts teacher-forced,
    so multi-token acceptance and rejection both run. MTP weights in the checkpoint."""
    if (out / "config.json").is_file():
        return out
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(seed)
    config = DeepseekV3Config(**_COMMON, **_DEEPSEEK, first_k_dense_replace=1)
    _sglang_deepseek_fields(config, nextn=True)
    return _with_agreeing_mtp(DeepseekV3ForCausalLM(config), out, smollm2, quiet_first_layer)


def tiny_deepseek_v32_agreeing_mtp(
    out: Path, smollm2: str, seed: int = 0, quiet_first_layer: float = 0.1
) -> Path:
    """DeepSeek-V3.2 (`tiny_deepseek_v32`'s DSA, index_topk 16) with a dense layer, then
    a MoE layer, whose MTP layer (indexer included) agrees with it (`_with_agreeing_mtp`):
    multi-token acceptance over sparse attention."""
    if (out / "config.json").is_file():
        return out
    from transformers import DeepseekV32ForCausalLM

    torch.manual_seed(seed)
    config = _deepseek_v32_config(first_k_dense_replace=1, index_topk=16, nextn=True)
    return _with_agreeing_mtp(DeepseekV32ForCausalLM(config), out, smollm2, quiet_first_layer)


def tiny_glm4_moe_agreeing_mtp(
    out: Path, smollm2: str, seed: int = 0, quiet_first_layer: float = 0.1
) -> Path:
    """GLM-4.5-style MoE (`Glm4MoeForCausalLM`: GQA 4 q / 2 kv heads of 32 with half
    rotary, QK norm and qkv bias; a dense layer, then 8 routed + 1 shared experts,
    top-2, sigmoid scores with a correction bias) whose MTP layer agrees with it
    (`_with_agreeing_mtp`); SGLang drafts with `Glm4MoeForCausalLMNextN`."""
    if (out / "config.json").is_file():
        return out
    from transformers import Glm4MoeConfig, Glm4MoeForCausalLM

    torch.manual_seed(seed)
    config = Glm4MoeConfig(
        **_COMMON,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        partial_rotary_factor=0.5,
        attention_bias=True,
        use_qk_norm=True,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        first_k_dense_replace=1,
        norm_topk_prob=True,
        routed_scaling_factor=1.0,
        num_nextn_predict_layers=1,
    )
    return _with_agreeing_mtp(Glm4MoeForCausalLM(config), out, smollm2, quiet_first_layer)


def tiny_mimo_agreeing_mtp(
    out: Path, smollm2: str, seed: int = 0, quiet_first_layer: float = 0.1
) -> Path:
    """MiMo (SGLang's `MiMoForCausalLM`: Qwen2 with MTP layers; transformers has no
    MiMo class, so the config is Qwen2's with MiMo's architecture name and
    `num_nextn_predict_layers`, and HF's Qwen2 is the oracle): GQA 4 q / 2 kv heads
    of 32 with qkv bias, dense layers; its MTP layer agrees with it
    (`_with_agreeing_mtp`, MiMo's `model.mtp_layers.0.*` names); SGLang drafts
    with `MiMoMTP`."""
    if (out / "config.json").is_file():
        return out
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(**_COMMON, num_attention_heads=4, num_key_value_heads=2)
    extra = {"architectures": ["MiMoForCausalLM"], "num_nextn_predict_layers": 1}
    return _with_agreeing_mtp(Qwen2ForCausalLM(config), out, smollm2, quiet_first_layer, extra)
