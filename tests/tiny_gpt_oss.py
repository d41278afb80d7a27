"""Tiny random gpt-oss checkpoints for tests: float32, and the same model in gpt-oss's
own MXFP4 format, plus the float32 oracle of the MXFP4 one.

  tiny_gpt_oss(out, smollm2)            transformers' GptOssForCausalLM, seeded random,
                                        saved float32 with SmolLM2's tokenizer
  tiny_gpt_oss_mxfp4(src, out)          `src` as OpenAI ships gpt-oss: experts as
                                        `*_blocks` / `*_scales` (+ bf16 biases),
                                        `quantization_config = {"quant_method": "mxfp4", ...}`
  hf_gpt_oss_dequantized(mxfp4_dir)     transformers' own load of that checkpoint
                                        (Mxfp4Config(dequantize=True)) cast to float32
  gpt_oss_dequantized_copy(mxfp4_dir, out)  that model saved as a plain float32
                                        checkpoint: `HFOracle(out)` is the fp32 oracle

transformers dequantizes MXFP4 experts to bf16 even when asked for float32; MXFP4
values times E8M0 scales are exact in bf16, so casting them back to float32 gives
exactly the weights `--quantization amd_mxfp4` computes with. The config: 2
layers (sliding window 8, then full attention, so prompts cross the window), 8
experts top-4, hidden 128, expert intermediate 64 (both multiples of 32, as
MXFP4 needs), 4 q / 2 kv heads of 64, YaRN RoPE as gpt-oss (factor 32 over 64
positions), attention sinks, router and expert biases drawn large enough to
matter, and swiglu_limit 1.0 so the clamps cut (gpt-oss's 7.0 would never bind
on tiny random activations; alpha stays 1.702, the one SGLang reads).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from tests.tiny_models import _COMMON, _random_init

# The patterns transformers' gpt-oss checkpoints list (only experts are MXFP4).
GPT_OSS_NOT_CONVERTED = [
    "model.layers.*.self_attn",
    "model.layers.*.mlp.router",
    "model.embed_tokens",
    "lm_head",
]


def tiny_gpt_oss_config(num_layers: int = 2, swiglu_limit: float = 1.0):
    from transformers import GptOssConfig

    common = {k: _COMMON[k] for k in ("vocab_size", "bos_token_id", "eos_token_id")}
    return GptOssConfig(
        **common,
        hidden_size=128,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        num_local_experts=8,
        num_experts_per_tok=4,
        sliding_window=8,
        layer_types=[("sliding_attention", "full_attention")[i % 2] for i in range(num_layers)],
        max_position_embeddings=2048,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 150000.0,
            "factor": 32.0,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "truncate": False,
            "original_max_position_embeddings": 64,
        },
        swiglu_limit=swiglu_limit,
        tie_word_embeddings=False,
    )


@torch.no_grad()
def _random_gpt_oss_init(model: torch.nn.Module) -> None:
    """`_random_init`'s matrices, then the 1-d tensors gpt-oss adds, drawn so each
    matters: sinks near the attention scores' scale, router biases that move
    choices, expert biases comparable to the GEMM outputs."""
    _random_init(model)
    spread = {
        "sinks": (0.5, 1.0),
        "router.bias": (0.0, 0.5),
        "gate_up_proj_bias": (0.0, 0.5),
        "down_proj_bias": (0.0, 0.1),
        "_proj.bias": (0.0, 0.05),  # attention q/k/v/o biases
    }
    for name, p in model.named_parameters():
        for suffix, (mean, std) in spread.items():
            if name.endswith(suffix):
                p.normal_(mean, std)
                break
        if name.endswith("sinks"):
            # SGLang's GptOssAttention keeps sinks in bfloat16 whatever the model's
            # dtype (float32 only for trtllm_mha), as gpt-oss ships them: values a
            # bf16 tensor holds exactly keep the float32 oracle on the same sinks.
            p.copy_(p.to(torch.bfloat16).float())


def tiny_gpt_oss(out: Path, smollm2: str, seed: int = 0, num_layers: int = 2) -> Path:
    """A random `GptOssForCausalLM` (`tiny_gpt_oss_config`) saved in float32."""
    if (out / "config.json").is_file():
        return out
    from transformers import AutoTokenizer, GptOssForCausalLM

    torch.manual_seed(seed)
    model = GptOssForCausalLM(tiny_gpt_oss_config(num_layers))
    _random_gpt_oss_init(model)
    model.to(torch.float32).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(smollm2).save_pretrained(out)
    return out


def mxfp4_blocks(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[E, rows, K] float (K along the reduction) -> gpt-oss's (blocks uint8 [E, rows,
    K / 32, 16], scales uint8 [E, rows, K / 32]), quantized by our torch reference
    ("even" scales, what `--quantization amd_mxfp4` uses online)."""
    from sglang_amd.quant.mxfp4 import BLOCK, quantize_mxfp4

    packed, scales = quantize_mxfp4(w.float(), "even")
    e, rows, k = w.shape
    return packed.reshape(e, rows, k // BLOCK, BLOCK // 2).contiguous(), scales.contiguous()


def tiny_gpt_oss_mxfp4(src: Path, out: Path, dense_dtype: torch.dtype = torch.bfloat16) -> Path:
    """`src` (a gpt-oss checkpoint in float) in gpt-oss's MXFP4 format: each layer's
    `mlp.experts.gate_up_proj` [E, H, 2I] stored as `gate_up_proj_blocks` /
    `gate_up_proj_scales` over H (rows keep transformers' interleaved gate/up
    order), `down_proj` [E, I, H] as `down_proj_blocks` / `down_proj_scales` over
    I, biases and every other tensor in `dense_dtype` (gpt-oss ships bf16)."""
    if (out / "config.json").is_file():
        return out
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(src.glob("*.safetensors")):
        weights.update(load_file(shard))
    tensors = {}
    for name, w in weights.items():
        if name.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
            # transformers keeps [E, in, out]; the blocks run along `in` per output row.
            blocks, scales = mxfp4_blocks(w.transpose(1, 2))
            tensors[f"{name}_blocks"], tensors[f"{name}_scales"] = blocks, scales
        else:
            tensors[name] = w.to(dense_dtype).contiguous()
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": GPT_OSS_NOT_CONVERTED,
    }
    config["dtype"] = str(dense_dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for f in src.iterdir():
        if f.name != "config.json" and not f.name.startswith("model"):
            shutil.copy(f, out / f.name)
    return out


def hf_gpt_oss_dequantized(mxfp4_dir: Path) -> torch.nn.Module:
    """transformers' GptOssForCausalLM from the MXFP4 checkpoint, its own dequantization
    (bf16 experts, exact), every parameter cast to float32."""
    from transformers import AutoModelForCausalLM, Mxfp4Config

    model = AutoModelForCausalLM.from_pretrained(
        mxfp4_dir, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.float32
    )
    return model.to(torch.float32).eval()


def gpt_oss_dequantized_copy(mxfp4_dir: Path, out: Path) -> Path:
    """`hf_gpt_oss_dequantized(mxfp4_dir)` saved as a plain float32 checkpoint (no
    quantization_config): what `tests.oracle.HFOracle(out)` loads as the fp32 oracle
    of the MXFP4 checkpoint served by SGLang."""
    if (out / "config.json").is_file():
        return out
    from transformers import AutoTokenizer, GptOssConfig, GptOssForCausalLM

    loaded = hf_gpt_oss_dequantized(mxfp4_dir)
    # A fresh model without the quantizer's bookkeeping (its save would run the
    # dequantization's reverse ops and drop the experts).
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config["dtype"] = "float32"
    model = GptOssForCausalLM(GptOssConfig.from_dict(config)).to(torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(mxfp4_dir).save_pretrained(out)
    return out
