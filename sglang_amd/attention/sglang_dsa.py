"""DeepSeek sparse attention (DSA: DeepSeek-V3.2, GLM-5) served by `--attention-backend amd`.

Where it sits: SGLang's DeepSeek model code asks, per layer and forward, which
attention path to take (`forward_handler`, registered for `amd` in SGLang's
`AttentionBackendRegistry`), runs the layer's lightning indexer (`Indexer`, a
`BaseFusedOp`; `indexer_forward` is its forward on our CPU platform, installed
with `BaseFusedOp.register_oot_forward`), and hands the indexer's output to the
attention call as `topk_indices`, which `AmdAttnBackend` reads through `DsaLayers`.

- Path: a fresh prefill whose every sequence fits in index_topk attends densely
  in MHA form (every visible token is in the top-k then); anything else (decode,
  an extend over a cached prefix, a sequence past index_topk) takes the absorbed
  MLA form with the sparse table.
- The indexer writes each new token's index key (`dsa.store_keys`), then scores
  every visible position of each query token's request and keeps the top
  index_topk (`attention.indexer`): token positions in the request. That
  table's meaning is ours; only our backend reads it.
- `SGLANG_AMD_DSA_INDEXER`: `float` (default; HF transformers' definition, keys
  kept as float rows beside SGLang's pool: 128 values a token a layer in the
  model's dtype, not counted in SGLang's KV budget) or `fp8` (DeepSeek's and
  SGLang's dsa backend's: keys in SGLang's own FP8 index-K pool).
Imports sglang.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from sglang_amd.attention import dsa
from sglang_amd.tiers import TieredOp

logger = logging.getLogger(__name__)


class DsaLayers:
    """Our backend's DSA state: the index-key store of each layer and the two ops."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.mode = dsa.indexer_mode()
        self.ops = {
            name: TieredOp(f"attention.{name}", backend.device) for name in ("indexer", "sparse")
        }
        self._tokens: tuple[Any, tuple] | None = None
        for name, op in self.ops.items():
            sel = op.selection
            logger.info("sglang-amd DSA %s: tier %s (%s); indexer mode %s", name,
                        sel.tier.value, sel.reason, self.mode)  # fmt: skip

    def _keys(self, layer_id: int, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
        """(store, fp8 page size or 0) of one layer."""
        pool = self.backend.token_to_kv_pool
        if self.mode == "fp8":
            return pool.get_index_k_with_scale_buffer(layer_id), int(pool.page_size)
        # Kept on the pool: every backend over it (target verify, draft extend, each
        # draft-decode step) must read the keys the others wrote.
        stores = pool.__dict__.setdefault("_sglang_amd_dsa_float_keys", {})
        keys = stores.get(layer_id)
        if keys is None:
            slots = pool.get_key_buffer(layer_id).shape[0]
            keys = torch.zeros(slots, dsa.INDEX_HEAD_DIM, dtype=dtype, device=self.backend.device)
            stores[layer_id] = keys
        return keys, 0

    def _token_layout(self) -> tuple:
        """(rows, rows_cpu, visible, visible_cpu) of this forward's query tokens,
        computed by the first layer that asks. In a CUDA graph (decode: one token a
        request; a chain target verify: the draft width, `uniform_qo`) on the device
        alone, the host lists None."""
        meta = self.backend.forward_metadata
        if self._tokens is None or self._tokens[0] is not meta:
            if meta.graph_max_kv_len is not None:
                new = 1 if meta.mode == "decode" else meta.uniform_qo
                if new is None:
                    raise NotImplementedError(
                        "sglang-amd's DSA path plans decode and target-verify batches inside "
                        f"a CUDA graph, not {meta.mode} of uneven lengths; start with "
                        "--disable-cuda-graph"
                    )
                rows, visible = dsa.graph_rows_and_visible(meta.req_pool_indices, meta.kv_lens,
                                                           new)  # fmt: skip
                layout = (rows, None, visible, None)
            else:
                layout = dsa.token_rows_and_visible(meta.req_pool_indices, meta.kv_lens_cpu,
                                                    meta.qo_lens_cpu)  # fmt: skip
            self._tokens = (meta, layout)
        return self._tokens[1]

    def _token_map(self) -> torch.Tensor:
        """Position -> slot of each row: req_to_token, or under speculative decoding
        the forward's own map (prefix then this forward's tokens, `spec_layout.py`),
        whose rows `forward_metadata.req_pool_indices` then index."""
        meta = self.backend.forward_metadata
        if meta.token_map is not None:
            return meta.token_map
        return self.backend.req_to_token_pool.req_to_token

    def index(
        self, layer_id: int, q: torch.Tensor, k: torch.Tensor, weights: torch.Tensor,
        loc: torch.Tensor, *, scale: float, topk: int, return_indices: bool,
        round_scale: bool = False,
    ) -> torch.Tensor | None:  # fmt: skip
        """Store the new tokens' keys k [N, 128] at slots loc; with return_indices the
        [T, topk] int32 table of each query token's picked positions (q [T, H, 128],
        weights [T, H] the raw weights_proj output). `round_scale`: the fp8 mode's
        block scales are powers of two (the indexer's `ue8m0` scale format)."""
        keys, page = self._keys(layer_id, k.dtype)
        q_in, w_in, k_in, k_scale = dsa.indexer_inputs(
            q, k, weights, fp8=bool(page), round_scale=round_scale
        )
        dsa.store_keys(keys, loc, k_in, k_scale, page)
        if not return_indices:
            return None
        rows, _, visible, visible_cpu = self._token_layout()
        capacity = self.backend.forward_metadata.graph_max_kv_len
        call = dsa.IndexerCall(q_in, w_in, keys, self._token_map(), rows, visible, visible_cpu,
                               scale, topk, page, capacity)  # fmt: skip
        return self.ops["indexer"](call)

    def attend(
        self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
        topk: torch.Tensor, scale: float, out: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        rows, rows_cpu, _, _ = self._token_layout()
        if topk.shape[0] != q.shape[0]:
            raise ValueError(f"DSA: topk_indices has {topk.shape[0]} rows for {q.shape[0]} tokens")
        call = dsa.SparseCall(q, k_cache, v_cache, self._token_map(), rows, rows_cpu,
                              topk.to(torch.int32).contiguous(), scale, out)  # fmt: skip
        return self.ops["sparse"](call)


def indexer_forward(
    self: Any,
    x: torch.Tensor,
    q_lora: torch.Tensor,
    positions: torch.Tensor,
    forward_batch: Any,
    layer_id: int,
    return_indices: bool = True,
    use_cuda_graph: bool = True,
) -> torch.Tensor | None:
    """SGLang's `Indexer` forward on our platform: its projections, LayerNorm and
    half-split RoPE (SGLang's and HF's; not the interleaved one of DeepSeek's
    reference), then our index store and top-k. `self` is SGLang's Indexer."""
    from sglang.srt.model_executor.forward_context import get_attn_backend

    from sglang_amd.attention.sglang_backend import AmdAttnBackend

    backend = get_attn_backend()
    if not isinstance(backend, AmdAttnBackend):
        raise NotImplementedError(
            "sglang-amd's DSA indexer runs with --attention-backend amd only, got "
            f"{type(backend).__name__}"
        )
    if isinstance(x, tuple):
        raise NotImplementedError("sglang-amd's DSA indexer takes unquantized hidden states")
    tokens, rope = x.shape[0], self.rope_head_dim
    query = self.wq_b(q_lora)[0].view(tokens, self.n_heads, self.head_dim)
    key = self.k_norm(self.wk(x)[0]).to(query.dtype)
    # Key as one head ([T, 1, rope]): SGLang's torch RoPE broadcasts a 2-D key.
    q_rope, k_rope = self.rotary_emb(positions, query[..., :rope].clone(),
                                     key[:, None, :rope].clone())  # fmt: skip
    query = torch.cat([q_rope.view(tokens, self.n_heads, rope), query[..., rope:]], dim=-1)
    key = torch.cat([k_rope.view(tokens, rope), key[..., rope:]], dim=-1)
    # weights_proj is kept in bfloat16 by SGLang; HF computes it in the model's
    # dtype from the same (bfloat16-exact) weights.
    weights = F.linear(x, self.weights_proj.weight.to(x.dtype))
    # SGLang builds every DeepSeek indexer with scale_fmt "ue8m0" (DeepSeek-V3.2's
    # own config says the same) and its act_quant rounds the scales whenever a
    # format is set: the fp8 mode follows, or it would pick other tokens.
    return backend.dsa.index(
        layer_id, query, key, weights, forward_batch.out_cache_loc,
        scale=self.softmax_scale, topk=self.index_topk, return_indices=return_indices,
        round_scale=getattr(self, "scale_fmt", None) is not None,
    )  # fmt: skip


def forward_handler(attn: Any, forward_batch: Any) -> Any:
    """SGLang's per-layer choice of attention path under `amd` (DeepSeek family)."""
    from sglang.srt.models.deepseek_common.attention_backend_handler import (
        _dispatch_mla_subtype,
        handle_attention_triton,
    )
    from sglang.srt.models.deepseek_common.attention_forward_methods.forward_methods import (
        AttnForwardMethod,
    )

    if not getattr(attn, "use_dsa", False):
        return handle_attention_triton(attn, forward_batch)
    mode = forward_batch.forward_mode
    prefix = forward_batch.extend_prefix_lens_cpu
    seq_lens = forward_batch.seq_lens_cpu
    if (
        mode.is_extend_without_speculative()
        and prefix is not None
        and not any(prefix)
        and seq_lens is not None
        and int(seq_lens.max()) <= attn.indexer.index_topk
    ):
        return AttnForwardMethod.MHA
    return _dispatch_mla_subtype(attn, forward_batch)


def register() -> None:
    """The `amd` forward handler and, on an out-of-tree platform (our CPU platform),
    the indexer's forward. Called when our backend is built for a DSA model: the
    model is loaded by then, and both are looked up at its first forward."""
    from sglang.kernels.fused_op import BaseFusedOp
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.models.deepseek_common.attention_backend_handler import (
        AttentionBackendRegistry,
    )
    from sglang.srt.platforms import current_platform

    from sglang_amd.flags import ATTENTION_BACKEND

    AttentionBackendRegistry.register(ATTENTION_BACKEND, forward_handler)
    if current_platform.is_out_of_tree():
        key = current_platform.get_dispatch_key_name()
        BaseFusedOp.register_oot_forward(Indexer, indexer_forward, key)
