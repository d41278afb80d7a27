"""A tiny random Qwen3-Next (`Qwen3NextForCausalLM`): the e2e model of the GDN tier.

Qwen3-Next (and Qwen3-Coder-Next) interleaves Gated DeltaNet linear-attention
layers with gated full-attention layers (head_dim 256, a sigmoid gate on the
attention output) and runs a MoE with a gated shared expert after each. This is
transformers' own class with a tiny config and seeded random weights, saved with
the SmolLM2 tokenizer like `tests/tiny_models.py`'s builders: the folder HF (the
float32 oracle) and SGLang both load.

Layers: [linear, full, linear, full] (`full_attention_interval` 2). The GDN
layers have 2 key heads of 32 and 4 value heads of 48: value heads twice the
key heads (the real model's ratio) and K != V, so a state stored transposed
([V, K] as SGLang's pool holds it, [K, V] in HF) cannot pass unnoticed. The
decay is kept slow (exp(A_log) in [0.02, 0.5]) so the recurrent state carries
information across hundreds of tokens, through prefix-cache hits and prefill
chunks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.tiny_models import _COMMON, _random_init, _save

# Read by SGLang's Qwen3NextConfig (transformers keeps `layer_types` instead and
# does not write these): the layer pattern, and the RoPE fields it reads directly.
FULL_ATTENTION_INTERVAL = 2
ROPE_THETA = 10000.0
PARTIAL_ROTARY_FACTOR = 0.25

QWEN3_NEXT = dict(
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=256,
    linear_conv_kernel_dim=4,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
    linear_key_head_dim=32,
    linear_value_head_dim=48,
    num_experts=8,
    num_experts_per_tok=2,
    shared_expert_intermediate_size=64,
    norm_topk_prob=True,
    decoder_sparse_step=1,
)


@torch.no_grad()
def _slow_decay(model: torch.nn.Module) -> None:
    """GDN gates with a long memory, and non-trivial norm weights."""
    for name, p in model.named_parameters():
        if name.endswith("A_log"):
            p.copy_(torch.empty_like(p).uniform_(0.02, 0.5).log())
        elif name.endswith("dt_bias"):
            p.normal_(0.0, 0.5)
        elif name.endswith("norm.weight"):
            p.normal_(0.0 if "linear_attn" not in name else 1.0, 0.1)


def tiny_qwen3_next(out: Path, smollm2: str, seed: int = 0) -> Path:
    """Qwen3-Next: hidden 128, 4 layers [GDN, full, GDN, full], 8 experts top-2 + a shared one."""
    if (out / "config.json").is_file():
        return out
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    torch.manual_seed(seed)
    common = {k: v for k, v in _COMMON.items() if k != "num_hidden_layers"}
    config = Qwen3NextConfig(
        **common,
        **QWEN3_NEXT,
        full_attention_interval=FULL_ATTENTION_INTERVAL,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": ROPE_THETA,
            "partial_rotary_factor": PARTIAL_ROTARY_FACTOR,
        },
    )
    kinds = ["full_attention" if (i + 1) % 2 == 0 else "linear_attention" for i in range(4)]
    assert config.layer_types == kinds, config.layer_types
    model = Qwen3NextForCausalLM(config)
    _random_init(model)
    _slow_decay(model)
    _save(model, out, smollm2)
    path = out / "config.json"
    saved = json.loads(path.read_text())
    saved.update(
        full_attention_interval=FULL_ATTENTION_INTERVAL,
        rope_theta=ROPE_THETA,
        partial_rotary_factor=PARTIAL_ROTARY_FACTOR,
    )
    path.write_text(json.dumps(saved, indent=2))
    return out


@torch.no_grad()
def tiny_qwen3_next_agreeing_mtp(
    out: Path, smollm2: str, seed: int = 0, quiet: float = 0.1
) -> Path:
    """`tiny_qwen3_next` with an MTP layer (SGLang's `Qwen3NextForCausalLMMTP`, drafted with
    `--speculative-algorithm NEXTN`) that drafts what the model would say, so drafts are
    accepted and rejected both: embeddings scaled to unit RMS, the first three layers'
    output projections (GDN out_proj, attention o_proj, every MoE down projection)
    scaled by `quiet`, and the MTP layer a copy of the last (full-attention) layer
    whose fc passes the next token's embedding through: at position t it computes
    that layer at t+1 from the embedding alone, what the target computes there but
    for the quiet layers' small share. Checkpoint names as Qwen3-Next ships them
    (`mtp.fc`, `mtp.pre_fc_norm_*`, `mtp.layers.0.*`, `mtp.norm`); HF ignores them."""
    if (out / "config.json").is_file():
        return out
    from safetensors.torch import load_file, save_file
    from transformers import Qwen3NextForCausalLM

    tiny_qwen3_next(out, smollm2, seed)
    model = Qwen3NextForCausalLM.from_pretrained(out, dtype=torch.float32)
    emb = model.model.embed_tokens.weight
    emb.div_(emb.pow(2).mean(-1, keepdim=True).sqrt())
    for i in range(3):
        layer = model.model.layers[i]
        mixer = layer.linear_attn.out_proj if i % 2 == 0 else layer.self_attn.o_proj
        mixer.weight.mul_(quiet)
        for name, p in layer.mlp.named_parameters():
            if "down_proj" in name:
                p.mul_(quiet)
    _save(model, out, smollm2)
    tensors = load_file(out / "model.safetensors")
    last, hidden = "model.layers.3.", model.config.hidden_size
    mtp = {
        f"mtp.layers.0.{k[len(last) :]}": v.clone()
        for k, v in tensors.items()
        if k.startswith(last)
    }
    fc = torch.zeros(hidden, 2 * hidden)
    fc[:, :hidden] = torch.eye(hidden)  # cat(norm(embedding), norm(hidden)) -> embedding
    mtp["mtp.fc.weight"] = fc.to(torch.bfloat16)
    for norm in ("embedding", "hidden"):  # Gemma-style norms: scale 1 + w
        mtp[f"mtp.pre_fc_norm_{norm}.weight"] = torch.zeros(hidden, dtype=torch.bfloat16)
    mtp["mtp.norm.weight"] = tensors["model.norm.weight"].clone()
    save_file({**tensors, **mtp}, out / "model.safetensors", metadata={"format": "pt"})
    path = out / "config.json"
    path.write_text(
        json.dumps({**json.loads(path.read_text()), "num_nextn_predict_layers": 1}, indent=2)
    )
    return out
