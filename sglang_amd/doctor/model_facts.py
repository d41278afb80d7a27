"""What a model's config says about how it attends, routes and stores its KV cache.

Where it sits: the sglang-free half of `sglang-amd doctor`. It reads the
Hugging Face config (duck-typed: SGLang's `hf_config`, a transformers config,
or a namespace in tests) and the few numbers SGLang resolved (KV heads per
rank, dtypes); `sglang_probe.py` supplies those. Nothing here decides whether a
configuration can be served: that is the capabilities' start-time checks,
which the probe runs as the launcher does. Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sglang_amd.model_info import text_config


def _get(cfg: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = cfg.get(n) if isinstance(cfg, Mapping) else getattr(cfg, n, None)
        if v is not None:
            return v
    return default


def mtp_layers(hf_config: Any) -> int:
    """Multi-token-prediction layers the checkpoint declares (0: none)."""
    text = text_config(hf_config)
    return int(
        _get(
            text, "num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules", default=0
        )
        or 0
    )


def layer_kinds(hf_config: Any) -> dict[str, int]:
    """How many decoder layers of each attention kind (full, sliding, linear)."""
    text = text_config(hf_config)
    n = int(_get(text, "num_hidden_layers"))
    types = _get(text, "layer_types")
    if types:
        kinds: dict[str, int] = {}
        for t in types[:n]:
            key = {"full_attention": "full", "sliding_attention": "sliding",
                   "linear_attention": "linear"}.get(t, t)  # fmt: skip
            kinds[key] = kinds.get(key, 0) + 1
        return kinds
    interval = _get(text, "full_attention_interval")
    if interval:
        full = n // int(interval)
        return {"full": full, "linear": n - full}
    return {"full": n}


@dataclass
class AttentionFacts:
    path: str  # "MHA", "GQA", "MQA", "MLA", "DSA", "hybrid linear", with qualifiers
    heads: int
    kv_heads: int
    head_dim: int | None
    layers: dict[str, int]
    sliding_window: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    index_topk: int | None = None
    index_head_dim: int | None = None
    sinks: bool = False

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}


def attention(hf_config: Any) -> AttentionFacts:
    text = text_config(hf_config)
    heads = int(_get(text, "num_attention_heads"))
    kv_heads = int(_get(text, "num_key_value_heads", default=heads))
    head_dim = _get(text, "head_dim")
    if head_dim is None and _get(text, "hidden_size"):
        head_dim = int(_get(text, "hidden_size")) // heads
    kinds = layer_kinds(hf_config)
    facts = AttentionFacts("", heads, kv_heads, head_dim, kinds)
    if _get(text, "kv_lora_rank"):
        facts.kv_lora_rank = int(_get(text, "kv_lora_rank"))
        facts.qk_rope_head_dim = int(_get(text, "qk_rope_head_dim"))
        facts.head_dim = int(_get(text, "qk_nope_head_dim")) + facts.qk_rope_head_dim
        facts.index_topk = _get(text, "index_topk")
        facts.index_head_dim = _get(text, "index_head_dim")
        facts.path = "DSA (MLA + top-k indexer)" if facts.index_topk else "MLA"
    else:
        facts.path = (
            "MHA"
            if kv_heads == heads
            else "MQA"
            if kv_heads == 1
            else f"GQA ({heads // kv_heads} q per kv)"
        )
    if kinds.get("linear"):
        facts.path = f"hybrid: {kinds['linear']} linear-attention + {kinds.get('full', 0)} {facts.path} layers"
    if kinds.get("sliding"):
        facts.sliding_window = _get(text, "sliding_window")
        facts.path += f", sliding window {facts.sliding_window} on {kinds['sliding']} layers"
    if _get(text, "model_type") == "gpt_oss":  # every gpt-oss attention layer has learned sinks
        facts.sinks = True
        facts.path += ", attention sinks"
    return facts


@dataclass
class MoeFacts:
    experts: int
    top_k: int
    intermediate: int
    shared_experts: int
    dense_layers: int  # leading layers with a dense MLP


def moe(hf_config: Any) -> MoeFacts | None:
    text = text_config(hf_config)
    experts = _get(text, "n_routed_experts", "num_experts", "num_local_experts")
    if not experts:
        return None
    shared = _get(text, "n_shared_experts", default=None)
    if shared is None:
        shared = 1 if _get(text, "shared_expert_intermediate_size") else 0
    return MoeFacts(
        experts=int(experts),
        top_k=int(_get(text, "num_experts_per_tok", "moe_topk", "experts_per_token")),
        intermediate=int(_get(text, "moe_intermediate_size", "intermediate_size")),
        shared_experts=int(shared),
        dense_layers=int(_get(text, "first_k_dense_replace", default=0) or 0),
    )


def kv_bytes_per_token(
    att: AttentionFacts, kv_heads_per_rank: int, v_head_dim: int | None, elem: int
) -> dict:
    """KV-cache bytes one token takes on one rank, per kind of layer (what SGLang's pool holds).

    MLA stores the latent and the rope part once per layer, on every rank; MHA
    stores K and V for the rank's KV heads. DSA adds its indexer keys (fp8 of
    the index head dim plus one fp32 scale). Linear-attention layers keep a
    per-request state instead (not per token)."""
    if att.kv_lora_rank:
        per_layer = (att.kv_lora_rank + att.qk_rope_head_dim) * elem
        if att.index_topk:
            per_layer += int(att.index_head_dim) + 4
    else:
        per_layer = kv_heads_per_rank * (att.head_dim + (v_head_dim or att.head_dim)) * elem
    out = {"full": per_layer * att.layers.get("full", 0)}
    if att.layers.get("sliding"):
        out["sliding"] = per_layer * att.layers["sliding"]
    return out


def kv_bytes_per_request(att: AttentionFacts, per_token: dict, context: int) -> int:
    """KV bytes of one request filling the context: sliding layers keep only their window."""
    window = min(att.sliding_window or context, context)
    return per_token.get("full", 0) * context + per_token.get("sliding", 0) * window
