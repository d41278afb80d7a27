"""Make SGLang's `torch_native` attention correct on MLA (DeepSeek) models.

The bug (SGLang 0.5.23): DeepSeek's fresh prefill runs as plain MHA over K/V it
decompresses from the latent and hands to the backend with save_kv_cache=False
(models/deepseek_common/attention_forward_methods/forward_mha.py, `attn_mha`); the
pool holds only the latent rows [kv_lora_rank + rope]. `TorchNativeAttnBackend.
forward_extend` ignores the tensors it is given and attends over the pool, i.e. over
the latent: a shape error when kv_lora_rank != qk_nope_head_dim, silently wrong
logits when they are equal (what made torch_native disagree with HF on DeepSeek).
SGLang's model code is right; this backend is not.

The fix, one AROUND hook through SGLang's HookRegistry, active only in exactly that
case (MLA pool, k/v given, save_kv_cache False): causal attention over the given
K/V with our torch reference. Every other call runs SGLang's code untouched.
"""

from __future__ import annotations

from typing import Any

TARGET = "sglang.srt.layers.attention.torch_native_backend.TorchNativeAttnBackend.forward_extend"
TARGETS = {TARGET: ("self", "q", "k", "v", "layer", "forward_batch", "save_kv_cache")}


def _forward_extend(original, self, q, k, v, layer, forward_batch, save_kv_cache=True, *a, **kw):
    is_mla_pool = getattr(self.token_to_kv_pool, "kv_lora_rank", None) is not None
    if not (is_mla_pool and k is not None and v is not None and not save_kv_cache):
        return original(self, q, k, v, layer, forward_batch, save_kv_cache, *a, **kw)
    return attend_given_kv(q, k, v, layer, forward_batch)


def attend_given_kv(q, k, v, layer: Any, forward_batch: Any):
    """Causal attention of each sequence's new tokens over its own given K/V."""
    from sglang_amd.attention.reference import contiguous_token_map, paged_attention_reference

    qo = list(forward_batch.extend_seq_lens_cpu)
    if any(forward_batch.extend_prefix_lens_cpu):
        raise NotImplementedError("MLA prefill over given K/V with a cached prefix")
    heads = layer.tp_q_head_num
    q3 = q.reshape(-1, heads, layer.qk_head_dim)
    out = q.new_empty(q3.shape[0], heads, layer.v_head_dim)
    paged_attention_reference(
        q3,
        k.reshape(k.shape[0], -1, layer.qk_head_dim),
        v.reshape(v.shape[0], -1, layer.v_head_dim),
        contiguous_token_map(qo, q.device),
        list(range(len(qo))),
        qo,
        qo,
        scale=layer.scaling,
        causal=True,
        out=out,
    )
    return out.view(-1, heads * layer.v_head_dim)


def register() -> None:
    """Register the hooks with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(__name__, {TARGET: _forward_extend})
