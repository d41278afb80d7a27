"""SGLang `AttentionBackend` adapter for `--attention-backend amd`.

Where it sits: SGLang's ModelRunner builds this class in the scheduler process
(through the factory `plugin.py` registers); each RadixAttention layer calls
`forward_extend` / `forward_decode`. This module owns the SGLang side only:
writing new K/V into the pool, reading batch metadata once per forward
(`attend.ForwardMetadata`), and calling the attention.extend / attention.decode
ops (`tiers.TieredOp`; entry points in `attend.py`: Triton `extend.py` /
`decode.py`, torch `reference.py`). A call the chosen tier cannot take falls
back to the next tier with one log line. Imports sglang: only the plugin's
factory (`attention/sglang_registration.py`) imports this module.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from sglang.srt.layers.attention.base_attn_backend import AttentionBackend, SharedReadEnds
from sglang.srt.layers.radix_attention import AttentionType
from sglang.srt.mem_cache.memory_pool import KVWriteLoc

from sglang_amd import trace
from sglang_amd.attention.attend import ForwardMetadata, LayerMath
from sglang_amd.attention.spec_layout import full_verify_mask, prefix_plus_new_token_map
from sglang_amd.attention.support import check_model_layers, check_model_runner, is_dsa_model
from sglang_amd.tiers import Tier, TieredOp

if TYPE_CHECKING:
    from sglang.srt.layers.radix_attention import RadixAttention
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch
    from sglang.srt.model_executor.model_runner import ModelRunner

logger = logging.getLogger(__name__)


class AmdAttnBackend(AttentionBackend):
    """Paged MHA/GQA attention over SGLang's radix KV pool."""

    def __init__(self, model_runner: ModelRunner):
        super().__init__()
        check_model_runner(model_runner)
        check_model_layers(getattr(model_runner, "model", None))
        self.device = model_runner.device
        self.req_to_token_pool = model_runner.req_to_token_pool
        self.token_to_kv_pool = model_runner.token_to_kv_pool
        # MLA models keep one latent row per token ([kv_lora_rank + rope]); the
        # absorbed path attends over it with V aliasing its first kv_lora_rank columns.
        self.use_mla = bool(getattr(model_runner, "use_mla_backend", False))
        self.ops: dict[str, TieredOp] = {
            mode: TieredOp(f"attention.{mode}", self.device) for mode in ("extend", "decode")
        }
        self.forward_metadata: ForwardMetadata | None = None
        # DeepSeek sparse attention: the indexer's key store and ops (sglang_dsa.py).
        self.dsa = None
        if is_dsa_model(getattr(model_runner, "model_config", None)):
            from sglang_amd.attention import sglang_dsa

            sglang_dsa.register()
            self.dsa = sglang_dsa.DsaLayers(self)
        # SGLang's EAGLE worker sizes fallback tree masks from the target's backend.
        self.max_context_len = getattr(
            getattr(model_runner, "model_config", None), "context_len", 0
        )
        # Tokens per request in target verify. Asked of the runner, not read from
        # ServerArgs: SGLang resolves the width when the flag is left unset, and
        # adaptive speculation rebuilds backends under a context override of it.
        self._num_draft_tokens: int | None = None
        spec = getattr(model_runner, "spec_algorithm", None)
        if (
            spec is not None
            and spec.is_speculative()
            and not getattr(model_runner, "is_draft_worker", False)
        ):
            self._num_draft_tokens = int(model_runner.decode_num_tokens_per_req())
        self._graph_max_kv_len: int | None = None
        self._verify_graph: _VerifyGraphBuffers | None = None
        for mode, op in self.ops.items():
            sel = op.selection
            logger.info("sglang-amd attention %s: tier %s (%s)", mode, sel.tier.value, sel.reason)
        trace.record(
            "backend_init",
            backend=type(self).__name__,
            extend_tier=self.ops["extend"].tier.value,
            decode_tier=self.ops["decode"].tier.value,
            device=str(self.device),
        )

    # ----------------------------------------------------------------- metadata
    def init_forward_metadata(self, forward_batch: ForwardBatch) -> None:
        mode = forward_batch.forward_mode
        seq_lens_cpu = forward_batch.seq_lens_cpu
        if seq_lens_cpu is None:
            seq_lens_cpu = forward_batch.seq_lens.cpu()
        kv_lens_cpu = seq_lens_cpu.tolist()
        if mode.is_decode_or_idle():
            self.forward_metadata = ForwardMetadata(
                mode="decode",
                req_pool_indices=forward_batch.req_pool_indices,
                kv_lens=forward_batch.seq_lens,
                qo_lens=torch.ones_like(forward_batch.seq_lens),
                kv_lens_cpu=kv_lens_cpu,
                qo_lens_cpu=[1] * len(kv_lens_cpu),
            )
        elif mode.is_target_verify():
            self.forward_metadata = self._verify_metadata(forward_batch, kv_lens_cpu)
            trace.record("spec_forward", mode="target_verify")
        elif mode.is_extend_or_draft_extend_or_mixed(include_draft_extend_v2=True):
            qo_cpu = forward_batch.extend_seq_lens_cpu
            qo_cpu = list(qo_cpu) if qo_cpu is not None else forward_batch.extend_seq_lens.tolist()
            if mode.is_draft_extend_v2():
                prefix = [kv - qo for kv, qo in zip(kv_lens_cpu, qo_cpu, strict=True)]
                self.forward_metadata = self._map_metadata(forward_batch, prefix, qo_cpu)
                trace.record("spec_forward", mode="draft_extend")
            else:
                self.forward_metadata = ForwardMetadata(
                    mode="extend",
                    req_pool_indices=forward_batch.req_pool_indices,
                    kv_lens=forward_batch.seq_lens,
                    qo_lens=forward_batch.extend_seq_lens,
                    kv_lens_cpu=kv_lens_cpu,
                    qo_lens_cpu=qo_cpu,
                )
        else:
            raise NotImplementedError(
                f"--attention-backend amd does not serve forward mode {mode.name}"
            )

    def _verify_metadata(self, forward_batch: ForwardBatch, prefix: list[int]) -> ForwardMetadata:
        """Target verify: each request's drafts attend to its prefix and, through the
        tree mask, to their ancestors. seq_lens exclude the drafts here."""
        spec = forward_batch.spec_info
        per_req = getattr(spec, "num_tokens_per_req", -1)
        if per_req is None or per_req <= 0:
            per_req = spec.draft_token_num
        meta = self._map_metadata(forward_batch, prefix, [per_req] * len(prefix))
        meta.uniform_qo = per_req
        mask = getattr(spec, "custom_mask", None)
        if self._owns(mask):  # QLEN_ONLY, written in place by the draft stage
            meta.custom_mask = mask[: len(prefix) * per_req * per_req]
            meta.mask_draft_only = True
        else:
            meta.custom_mask = full_verify_mask(mask, prefix, per_req)
        return meta

    def _owns(self, mask: torch.Tensor | None) -> bool:
        vm = self._verify_graph.mask if self._verify_graph is not None else None
        return mask is not None and vm is not None and mask.data_ptr() == vm.buffer.data_ptr()

    def _map_metadata(
        self, forward_batch: ForwardBatch, prefix: list[int], qo: list[int]
    ) -> ForwardMetadata:
        """Prefix from req_to_token, this forward's tokens from out_cache_loc."""
        device = forward_batch.seq_lens.device
        kv = [p + q for p, q in zip(prefix, qo, strict=True)]
        token_map = prefix_plus_new_token_map(
            self.req_to_token_pool.req_to_token,
            forward_batch.req_pool_indices,
            prefix,
            qo,
            forward_batch.out_cache_loc,
        )
        return ForwardMetadata(
            mode="extend",
            req_pool_indices=torch.arange(len(kv), device=device),
            kv_lens=torch.tensor(kv, device=device, dtype=torch.int32),
            qo_lens=torch.tensor(qo, device=device, dtype=torch.int32),
            kv_lens_cpu=kv,
            qo_lens_cpu=qo,
            token_map=token_map,
        )

    # ------------------------------------------------------------------ forward
    def _save_kv(self, layer: RadixAttention, forward_batch: ForwardBatch, k, v) -> None:
        if k is None or v is None:
            return
        self.token_to_kv_pool.set_kv_buffer(layer, KVWriteLoc(forward_batch.out_cache_loc), k, v)

    def _attend(
        self,
        q: torch.Tensor,
        layer: RadixAttention,
        kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor, ForwardMetadata] | None = None,
        topk: torch.Tensor | None = None,
        sinks: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention of q over the pool (or over `kv` = (k, v, token map, metadata));
        with `topk` (DSA: the indexer's [T, K] positions) over the picked tokens only;
        `sinks` ([Hq] per-head logits, gpt-oss) join each row's softmax denominator."""
        if kv is None:
            k_cache = self.token_to_kv_pool.get_key_buffer(layer.layer_id)
            v_cache = self.token_to_kv_pool.get_value_buffer(layer.layer_id)
            meta = self.forward_metadata
            req_to_token = meta.token_map
            if req_to_token is None:
                req_to_token = self.req_to_token_pool.req_to_token
        else:
            k_cache, v_cache, req_to_token, meta = kv
        mode = meta.mode
        bidirectional = layer.is_cross_attention or layer.attn_type in (
            AttentionType.ENCODER_ONLY,
            AttentionType.DECODER_BIDIRECTIONAL,
        )
        # A decode query is its sequence's last token: it reads every key either way.
        causal = mode == "decode" or not bidirectional
        window = layer.sliding_window_size
        window = window if window is not None and window >= 0 else None
        cap = layer.logit_cap or 0.0
        q3 = q.reshape(-1, layer.tp_q_head_num, layer.qk_head_dim)
        out = q.new_empty(q3.shape[0], layer.tp_q_head_num, layer.v_head_dim)

        if topk is not None:
            if sinks is not None:
                raise NotImplementedError(
                    f"--attention-backend amd: layer {layer.layer_id} passed sinks to a "
                    "DSA (top-k sparse) call; sparse attention with sinks is not served"
                )
            self.dsa.attend(q3, k_cache, v_cache, topk, layer.scaling, out)
            return out.view(-1, layer.tp_q_head_num * layer.v_head_dim)
        math = LayerMath(
            scale=layer.scaling,
            causal=causal,
            sliding_window=window,
            logit_cap=cap,
            k_scale=layer.k_scale_float,
            v_scale=layer.v_scale_float,
            sinks=sinks,
        )
        self.ops[mode](q3, k_cache, v_cache, req_to_token, meta, math, out)
        return out.view(-1, layer.tp_q_head_num * layer.v_head_dim)

    def forward_extend(
        self, q, k, v, layer: RadixAttention, forward_batch: ForwardBatch, save_kv_cache=True, **kw
    ):
        _refuse_extra_inputs(layer, kw)
        if self.use_mla and k is not None and not save_kv_cache:
            return self._attend_new_tokens(q, k, v, layer, kw.get("sinks"))
        if save_kv_cache:
            self._save_kv(layer, forward_batch, k, v)
        return self._attend(q, layer, topk=self._topk(layer, kw), sinks=kw.get("sinks"))

    def _attend_new_tokens(self, q, k, v, layer: RadixAttention, sinks=None) -> torch.Tensor:
        """MLA fresh prefill: causal attention over the decompressed K/V handed in.

        SGLang's DeepSeek code takes this path (`attn_mha`, save_kv_cache=False)
        only for extends without a cached prefix; the latent is already in the
        pool. Reading the pool here instead is what breaks torch_native on MLA.
        """
        meta = self.forward_metadata
        if any(kv != qo for kv, qo in zip(meta.kv_lens_cpu, meta.qo_lens_cpu, strict=True)):
            raise NotImplementedError(
                "--attention-backend amd: an MLA extend over a cached prefix reached the "
                "decompressed (MHA) path; SGLang should have chosen the absorbed path"
            )
        new_meta, token_map = meta.new_tokens_only()
        k3 = k.reshape(k.shape[0], -1, layer.qk_head_dim)
        v3 = v.reshape(v.shape[0], -1, layer.v_head_dim)
        return self._attend(q, layer, (k3, v3, token_map, new_meta), sinks=sinks)

    def forward_decode(
        self, q, k, v, layer: RadixAttention, forward_batch: ForwardBatch, save_kv_cache=True, **kw
    ):
        _refuse_extra_inputs(layer, kw)
        if save_kv_cache:
            self._save_kv(layer, forward_batch, k, v)
        return self._attend(q, layer, topk=self._topk(layer, kw), sinks=kw.get("sinks"))

    def _topk(self, layer: RadixAttention, kw: dict) -> torch.Tensor | None:
        """The indexer's table for this call; a DSA model's absorbed call without one
        would attend densely (silently wrong past index_topk): an error instead."""
        topk = kw.get("topk_indices")
        if self.dsa is None:
            if topk is not None:
                raise NotImplementedError(
                    f"--attention-backend amd: layer {layer.layer_id} passed topk_indices "
                    "but the model is not a DSA model"
                )
            return None
        if topk is None:
            raise RuntimeError(
                f"--attention-backend amd: DSA layer {layer.layer_id} reached absorbed "
                "attention without the indexer's topk_indices"
            )
        return topk

    # -------------------------------------------------------------- CUDA graphs
    # SGLang's graph runners: init_cuda_graph_state once, then per batch size
    # init_forward_metadata_out_graph(in_capture=True) + capture of the forward, and
    # per step out_graph(view of the runner's static buffers) + replay. Decode
    # kernels read req_pool_indices / seq_lens from those static buffers and
    # req_to_token / the pool in place. Target verify reads a token map and lengths
    # this backend refills in place before each replay, and the tree mask from the
    # QLEN_ONLY buffer it hands SGLang (`verify_mask`), which the draft stage fills
    # in place. What must never be baked in at capture is a host-side length.
    def init_cuda_graph_state(self, max_bs: int, max_num_tokens: int) -> None:
        modes = ("decode", "extend") if self._num_draft_tokens else ("decode",)
        for mode in modes:
            sel = self.ops[mode].selection
            if sel.tier is not Tier.TRITON:
                raise RuntimeError(
                    f"sglang-amd: CUDA graphs need the Triton tier, but attention.{mode} "
                    f"runs on {sel.tier.value} ({sel.reason}); start with "
                    "--disable-cuda-graph or select the Triton tier "
                    f"(SGLANG_AMD_ATTENTION_{mode.upper()}_TIER=triton)"
                )
        self._graph_max_kv_len = int(self.req_to_token_pool.req_to_token.shape[1])
        if self._num_draft_tokens:
            self._verify_graph = _VerifyGraphBuffers.allocate(
                max_bs, self._graph_max_kv_len, self._num_draft_tokens, self.device
            )

    @property
    def verify_mask(self):
        """The QLEN_ONLY tree-mask buffer SGLang's draft stage fills in place."""
        return self._verify_graph.mask if self._verify_graph is not None else None

    def update_verify_buffers_to_fill_after_draft(self, spec_info, cuda_graph_bs) -> None:
        """Nothing to redo: verify reads the tree mask from `verify_mask` in place."""

    def init_forward_metadata_out_graph(
        self, forward_batch: ForwardBatch, in_capture: bool = False
    ) -> None:
        mode = forward_batch.forward_mode
        if mode.is_target_verify() and self._verify_graph is not None:
            self._verify_graph_metadata(forward_batch, in_capture)
            return
        if mode.is_target_verify():
            raise RuntimeError(
                "sglang-amd: a target-verify CUDA graph reached a backend that did not "
                "allocate verify buffers (init_cuda_graph_state was not told the draft "
                "width); start with --disable-cuda-graph"
            )
        if not mode.is_decode_or_idle():
            raise NotImplementedError(
                f"--attention-backend amd captures decode and target-verify graphs, not "
                f"{mode.name}; start with --disable-cuda-graph"
            )
        if not in_capture:
            # Replay: the captured kernels read the runner's static buffers, which it
            # refilled before this call. Nothing to rebuild on the host, and no
            # seq_lens read back when SGLang has no host mirror of them.
            return
        self.init_forward_metadata(forward_batch)
        self.forward_metadata.graph_max_kv_len = self._graph_max_kv_len

    def _verify_graph_metadata(self, forward_batch: ForwardBatch, in_capture: bool) -> None:
        """Refill the verify buffers from this step's batch (device ops only)."""
        g, n = self._verify_graph, self._num_draft_tokens
        bs = forward_batch.req_pool_indices.shape[0]
        seq = forward_batch.seq_lens[:bs]
        seq_cpu = forward_batch.seq_lens_cpu
        width = refill_width(seq_cpu, bs, g.token_map.shape[1], n)
        prefix_plus_new_token_map(
            self.req_to_token_pool.req_to_token,
            forward_batch.req_pool_indices,
            seq,
            g.qo_lens[:bs],
            forward_batch.out_cache_loc,
            width=width,
            out=g.token_map,
        )
        g.kv_lens[:bs].copy_(seq + n)
        if not in_capture:
            if not self._owns(getattr(forward_batch.spec_info, "custom_mask", None)):
                raise RuntimeError(
                    "sglang-amd: a graph-replayed target verify carries a tree mask outside "
                    "the buffer this backend gave SGLang (verify_mask); start with "
                    "--disable-cuda-graph"
                )
            return
        kv_cpu = (seq_cpu[:bs] + n).tolist() if seq_cpu is not None else [n + 1] * bs
        self.forward_metadata = ForwardMetadata(
            mode="extend",
            req_pool_indices=g.rows[:bs],
            kv_lens=g.kv_lens[:bs],
            qo_lens=g.qo_lens[:bs],
            kv_lens_cpu=kv_cpu,
            qo_lens_cpu=[n] * bs,
            token_map=g.token_map[:bs],
            custom_mask=g.mask.buffer[: bs * n * n],
            mask_draft_only=True,
            uniform_qo=n,
            graph_max_kv_len=g.token_map.shape[1],
        )

    def init_forward_metadata_in_graph(self, forward_batch: ForwardBatch) -> None:
        """Nothing to record: the kernels read SGLang's static buffers directly."""

    def get_cuda_graph_seq_len_fill_value(self) -> int:
        return 1

    def get_cpu_graph_seq_len_fill_value(self) -> int:
        # Padded rows of an MLP-sync batch on our CPU platform (patches/cpu_tensor_parallel.py).
        return 1

    def shared_read_ends(self, fm):
        # Our decode and verify kernels read req_to_token (shared with the
        # scheduler) inside the replay, in every layer; nothing is snapshotted
        # before it, so the scheduler may only reuse rows after the replay.
        if fm.is_decode() or fm.is_target_verify():
            return SharedReadEnds.POST_REPLAY
        return super().shared_read_ends(fm)


def _refuse_extra_inputs(layer: RadixAttention, kw: dict) -> None:
    """Model inputs our kernels do not compute: an error, never a silently different result.

    The start-time scan (`support.check_model_layers`) catches what the layers
    declare; these arrive only with the call.
    """
    if kw.get("score_mod") is not None:
        raise NotImplementedError(
            f"--attention-backend amd does not compute an attention score_mod (layer "
            f"{layer.layer_id}); serve this model with another --attention-backend"
        )
    sinks = kw.get("sinks")
    if sinks is not None and tuple(sinks.shape) != (layer.tp_q_head_num,):
        raise NotImplementedError(
            f"layer {layer.layer_id} passed sinks of shape {tuple(sinks.shape)}, but "
            f"--attention-backend amd takes one sink logit per query head "
            f"({layer.tp_q_head_num} on this rank)"
        )
    if kw.get("return_lse"):
        raise NotImplementedError(
            f"--attention-backend amd does not return the log-sum-exp (layer {layer.layer_id}); "
            "serve this model with another --attention-backend"
        )


def refill_width(seq_lens_cpu: torch.Tensor | None, bs: int, capacity: int, extra: int) -> int:
    """Columns of a static token map to refill before a replay: no row is read past
    seq_len + `extra`, known from SGLang's host mirror of seq_lens when it has one
    (it sets the mirror to None rather than let it go stale); else the capacity."""
    if seq_lens_cpu is None or not bs:
        return capacity
    return min(capacity, int(seq_lens_cpu[:bs].max()) + extra)


@dataclass
class _VerifyGraphBuffers:
    """Static tensors a captured target-verify forward reads, sized for max_bs."""

    token_map: torch.Tensor  # [max_bs, req_to_token width + n] int32
    kv_lens: torch.Tensor  # [max_bs] int32
    qo_lens: torch.Tensor  # [max_bs] int32, all n
    rows: torch.Tensor  # [max_bs] int64 arange: row b of the map is sequence b
    mask: object  # SGLang VerifyMask: QLEN_ONLY [max_bs * n * n] bool

    @classmethod
    def allocate(cls, max_bs: int, width: int, n: int, device) -> _VerifyGraphBuffers:
        from sglang.srt.layers.attention.verify_mask import VerifyMask
        from sglang.srt.speculative.eagle_utils import TreeMaskMode

        mask = VerifyMask(
            buffer=torch.zeros(max_bs * n * n, dtype=torch.bool, device=device),
            mode=TreeMaskMode.QLEN_ONLY,
            max_bs=max_bs,
            is_read=True,
        )
        return cls(
            token_map=torch.zeros(max_bs, width + n, dtype=torch.int32, device=device),
            kv_lens=torch.ones(max_bs, dtype=torch.int32, device=device),
            qo_lens=torch.full((max_bs,), n, dtype=torch.int32, device=device),
            rows=torch.arange(max_bs, device=device),
            mask=mask,
        )
