"""An EAGLE3 draft head in torch, as SGLang's `LlamaForCausalLMEagle3` runs it.

Where it sits: the head `sglang-amd mtp train` trains (`eagle3_train.py`) for a
Llama-family target that ships no MTP layer, saved in the format SGLang loads
with `--speculative-algorithm EAGLE3 --speculative-draft-model-path DIR`. Per
position t, with the target's residual stream after layers a, b, c (SGLang
captures the input of layers a+1, b+1, c+1; transformers' hidden_states[a+1]...):

    h      = fc([aux_a ; aux_b ; aux_c])                 [T, 3H] -> [T, H]   (step 1)
    x      = [input_layernorm(embed(x_{t+1})) ; hidden_norm(h)]              [T, 2H]
    r      = h + o_proj(attn(rope(q(x)), rope(k(x)), v(x)))    GQA, causal over T
    out    = r + mlp(post_attention_layernorm(r))
    logits = lm_head(norm(out))    over the draft vocabulary; d2t maps it back

Later draft steps feed `out` (before the norm) back as h, without fc. The
embedding is the target's (SGLang shares it); the draft vocabulary is the
target's `draft_vocab` most useful tokens, its lm_head their rows of the
target's head.

Unrolled in training (`teacher.unrolled`), draft step k at position p attends as
it does when served: to the step-1 keys of positions <= p - k (SGLang's draft
extend writes those from the target's states after each verify) and to one key
of each later step, step i's at p - k + i (the chain's earlier drafts), not to
step k's own keys at every position (`ttt_mask`, EAGLE3's training-time test).
Never imports sglang.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def aux_layer_ids(num_layers: int) -> list[int]:
    """The target layers whose outputs feed the head (SpecForge's and SGLang's default
    for Llama: low, middle, high)."""
    return [1, num_layers // 2 - 1, num_layers - 4]


def ttt_mask(length: int, step: int, device: torch.device | None = None) -> torch.Tensor:
    """[T, (step + 1) * T] bool: which keys draft step `step` (0-based) at position p
    sees among the steps' keys laid side by side: step 0's at positions <= p - step,
    and step i's (1 <= i <= step) at p - step + i, its own key last. Step 0 is causal."""
    p = torch.arange(length, device=device).unsqueeze(1)
    j = torch.arange(length, device=device).unsqueeze(0)
    blocks = [j <= p - step] + [j == p - step + i for i in range(1, step + 1)]
    return torch.cat(blocks, dim=1)


class Eagle3Head(nn.Module):
    """One EAGLE3 layer over a transformers Llama-family causal LM `target` (not owned:
    its embedding and rotary embedding are read, never trained)."""

    def __init__(self, target: nn.Module, hot_ids: torch.Tensor):
        super().__init__()
        cfg = target.config
        h, heads, kv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        hd = getattr(cfg, "head_dim", None) or h // heads
        self.heads, self.kv_heads, self.head_dim = heads, kv, hd
        norm_cls = type(target.model.norm)
        eps = cfg.rms_norm_eps
        self.fc = nn.Linear(3 * h, h, bias=False)
        self.q_proj = nn.Linear(2 * h, heads * hd, bias=False)
        self.k_proj = nn.Linear(2 * h, kv * hd, bias=False)
        self.v_proj = nn.Linear(2 * h, kv * hd, bias=False)
        self.o_proj = nn.Linear(heads * hd, h, bias=False)
        self.gate_proj = nn.Linear(h, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(h, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, h, bias=False)
        self.input_layernorm = norm_cls(h, eps=eps)
        self.hidden_norm = norm_cls(h, eps=eps)
        self.post_attention_layernorm = norm_cls(h, eps=eps)
        self.norm = norm_cls(h, eps=eps)
        self.register_buffer("hot_ids", hot_ids.long().clone())  # draft id -> target id
        with torch.no_grad():
            head = target.get_output_embeddings().weight
            self.lm_head = nn.Linear(h, len(hot_ids), bias=False)
            self.lm_head.weight.copy_(head[self.hot_ids])
        self._target = [target]  # a list: not a submodule, so not in state_dict / parameters

    @property
    def target(self) -> nn.Module:
        return self._target[0]

    def forward(
        self,
        hidden: torch.Tensor,
        next_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden [B, T, 3H] (the target's aux states, step 1) or [B, T, H] (the
        previous step's `out`), next_ids [B, T] int64, positions [B, T] ->
        (norm(out) for the logits, out for the next step), each [B, T, H].

        `cache`: the earlier unrolled steps' keys and values, this step's appended;
        with it, this step attends as served (`ttt_mask`); without, causally."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        if hidden.shape[-1] != self.fc.out_features:
            hidden = self.fc(hidden)
        b, t, _ = hidden.shape
        embed = self.target.model.embed_tokens(next_ids)
        x = torch.cat([self.input_layernorm(embed), self.hidden_norm(hidden)], dim=-1)
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.target.model.rotary_emb(x, positions)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        groups = self.heads // self.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if cache is None:
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            cache.append((k, v))
            keys = torch.cat([c[0] for c in cache], dim=2)
            values = torch.cat([c[1] for c in cache], dim=2)
            mask = ttt_mask(t, len(cache) - 1, q.device)
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        residual = hidden + self.o_proj(attn.transpose(1, 2).reshape(b, t, -1))
        mid = self.post_attention_layernorm(residual)
        out = residual + self.down_proj(F.silu(self.gate_proj(mid)) * self.up_proj(mid))
        return self.norm(out), out

    def logits(self, normed: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., draft_vocab]"""
        return self.lm_head(normed)

    def step(self, hidden: torch.Tensor, next_ids: torch.Tensor, positions: torch.Tensor,
             cache: list | None = None):  # noqa: ANN201  # fmt: skip
        """`teacher.unrolled`'s protocol: (normed state for the logits, `out` for the
        next step); `cache` carries the unrolled steps' keys and values."""
        return self(hidden, next_ids, positions, cache)

    def target_ids(self, drafted: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary ids -> the target's ids."""
        return self.hot_ids[drafted]

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """Weights under the names SGLang's LlamaForCausalLMEagle3 loads (SpecForge's
        layout): fc, layers.0.*, norm, lm_head, d2t (draft id -> target id - draft
        id) and t2d (which target ids the draft vocabulary holds)."""
        layer = {
            "self_attn.q_proj": self.q_proj, "self_attn.k_proj": self.k_proj,
            "self_attn.v_proj": self.v_proj, "self_attn.o_proj": self.o_proj,
            "mlp.gate_proj": self.gate_proj, "mlp.up_proj": self.up_proj,
            "mlp.down_proj": self.down_proj, "input_layernorm": self.input_layernorm,
            "hidden_norm": self.hidden_norm,
            "post_attention_layernorm": self.post_attention_layernorm,
        }  # fmt: skip
        out = {f"layers.0.{k}.weight": m.weight for k, m in layer.items()}
        out |= {"fc.weight": self.fc.weight, "norm.weight": self.norm.weight,
                "lm_head.weight": self.lm_head.weight}  # fmt: skip
        vocab = self.target.config.vocab_size
        hot = self.hot_ids.cpu()
        t2d = torch.zeros(vocab, dtype=torch.bool)
        t2d[hot] = True
        out = {k: v.detach().cpu().contiguous() for k, v in out.items()}
        out["d2t"] = hot - torch.arange(len(hot))
        out["t2d"] = t2d
        return out

    def draft_config(self, aux_ids: list[int]) -> dict:
        """config.json for the head: the target's Llama fields, one layer, the draft
        vocabulary, and the aux layers SGLang must capture from the target."""
        cfg = self.target.config.to_dict()
        keep = ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                "intermediate_size", "rms_norm_eps", "hidden_act", "max_position_embeddings",
                "rope_theta", "rope_scaling", "rope_parameters", "vocab_size", "bos_token_id",
                "eos_token_id", "pad_token_id")  # fmt: skip
        out = {k: cfg[k] for k in keep if k in cfg}
        out |= {
            "architectures": ["LlamaForCausalLMEagle3"],
            "model_type": "llama",
            "num_hidden_layers": 1,
            "tie_word_embeddings": False,
            "draft_vocab_size": len(self.hot_ids),
            "eagle_config": {"eagle_aux_hidden_state_layer_ids": aux_ids},
            "torch_dtype": "bfloat16",
        }
        return out
