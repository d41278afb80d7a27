"""SGLang `AttentionBackend` adapter for `--attention-backend amd`.

Where it sits: SGLang's ModelRunner builds this class in the scheduler process
(through the factory `plugin.py` registers); each RadixAttention layer calls
`forward_extend` / `forward_decode`. This module owns the SGLang side only:
writing new K/V into the pool, reading batch metadata, and handing tensors to the
tier that `tiers.select("attention")` picked. The math lives in
`attention/reference.py` (torch tier) and, as they land, the Triton and aiter
modules beside it. Imports sglang: only the plugin imports this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from sglang.srt.layers.attention.base_attn_backend import AttentionBackend
from sglang.srt.layers.radix_attention import AttentionType
from sglang.srt.mem_cache.memory_pool import KVWriteLoc

from sglang_amd import trace
from sglang_amd.attention.reference import paged_attention_reference
from sglang_amd.attention.support import check_model_runner
from sglang_amd.tiers import select

if TYPE_CHECKING:
    from sglang.srt.layers.radix_attention import RadixAttention
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch
    from sglang.srt.model_executor.model_runner import ModelRunner

logger = logging.getLogger(__name__)


@dataclass
class ForwardMetadata:
    """Per-batch host-side lengths, read once per forward instead of per layer."""

    req_pool_indices: list[int]
    kv_lens: list[int]
    qo_lens: list[int]


class AmdAttnBackend(AttentionBackend):
    """Paged MHA/GQA attention over SGLang's radix KV pool."""

    def __init__(self, model_runner: ModelRunner):
        super().__init__()
        check_model_runner(model_runner)
        self.device = model_runner.device
        self.req_to_token_pool = model_runner.req_to_token_pool
        self.token_to_kv_pool = model_runner.token_to_kv_pool
        self.selection = select("attention", self.device)
        self.forward_metadata: ForwardMetadata | None = None
        logger.info(
            "sglang-amd attention backend: tier %s (%s)",
            self.selection.tier.value,
            self.selection.reason,
        )
        trace.record(
            "backend_init",
            backend=type(self).__name__,
            tier=self.selection.tier.value,
            device=str(self.device),
        )

    # ----------------------------------------------------------------- metadata
    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        mode = forward_batch.forward_mode
        seq_lens = forward_batch.seq_lens_cpu
        if seq_lens is None:
            seq_lens = forward_batch.seq_lens.cpu()
        kv_lens = seq_lens.tolist()
        if mode.is_decode_or_idle():
            qo_lens = [1] * len(kv_lens)
        elif mode.is_extend_or_draft_extend_or_mixed():
            qo_lens = list(forward_batch.extend_seq_lens_cpu)
        else:
            raise NotImplementedError(
                f"--attention-backend amd does not serve forward mode {mode.name} yet "
                "(speculative decoding); drop --speculative-algorithm"
            )
        self.forward_metadata = ForwardMetadata(
            req_pool_indices=forward_batch.req_pool_indices.tolist(),
            kv_lens=kv_lens,
            qo_lens=qo_lens,
        )

    # ------------------------------------------------------------------ forward
    def _save_kv(self, layer: RadixAttention, forward_batch: ForwardBatch, k, v) -> None:
        if k is None or v is None:
            return
        self.token_to_kv_pool.set_kv_buffer(layer, KVWriteLoc(forward_batch.out_cache_loc), k, v)

    def _attend(self, q, layer: RadixAttention, mode: str) -> torch.Tensor:
        meta = self.forward_metadata
        causal = not (layer.is_cross_attention or layer.attn_type == AttentionType.ENCODER_ONLY)
        pool = self.token_to_kv_pool
        q3 = q.reshape(-1, layer.tp_q_head_num, layer.qk_head_dim)
        out = q.new_empty(q3.shape[0], layer.tp_q_head_num, layer.v_head_dim)
        window = layer.sliding_window_size
        paged_attention_reference(
            q3,
            pool.get_key_buffer(layer.layer_id),
            pool.get_value_buffer(layer.layer_id),
            self.req_to_token_pool.req_to_token,
            meta.req_pool_indices,
            meta.kv_lens,
            meta.qo_lens,
            scale=layer.scaling,
            causal=causal,
            sliding_window=window if window is not None and window >= 0 else None,
            logit_cap=layer.logit_cap or 0.0,
            k_scale=layer.k_scale_float,
            v_scale=layer.v_scale_float,
            out=out,
        )
        trace.record(f"forward_{mode}", tier=self.selection.tier.value)
        return out.view(-1, layer.tp_q_head_num * layer.v_head_dim)

    def forward_extend(
        self, q, k, v, layer: RadixAttention, forward_batch: ForwardBatch, save_kv_cache=True, **kw
    ):
        if save_kv_cache:
            self._save_kv(layer, forward_batch, k, v)
        return self._attend(q, layer, "extend")

    def forward_decode(
        self, q, k, v, layer: RadixAttention, forward_batch: ForwardBatch, save_kv_cache=True, **kw
    ):
        if save_kv_cache:
            self._save_kv(layer, forward_batch, k, v)
        return self._attend(q, layer, "decode")

    def get_cuda_graph_seq_len_fill_value(self) -> int:
        return 1

    def support_triton(self) -> bool:
        return False
