"""Facts about a model read from its Hugging Face config, without loading weights.

Shared by the start-time checks of several families (moe/, quant/) and by the
coming `doctor`. Takes the config duck-typed (a transformers PretrainedConfig or
any object with the same attributes). Never imports sglang.
"""

from __future__ import annotations

from typing import Any


def text_config(hf_config: Any) -> Any:
    """The language model's config (multimodal configs nest it as text_config)."""
    return getattr(hf_config, "text_config", None) or hf_config


def moe_sizes(hf_config: Any) -> tuple[int | None, int | None]:
    """(hidden_size, moe_intermediate_size) of a MoE config; (None, None) if dense."""
    text = text_config(hf_config)
    experts = next(
        (
            getattr(text, n)
            for n in ("num_experts", "n_routed_experts", "num_local_experts")
            if getattr(text, n, None)
        ),
        None,
    )
    if not experts:
        return None, None
    inter = getattr(text, "moe_intermediate_size", None) or getattr(text, "intermediate_size", None)
    return getattr(text, "hidden_size", None), inter
