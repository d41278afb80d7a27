"""The attention ops' entry points: what `tiers.OPS` runs for attention.extend/decode.

Where it sits: the SGLang adapter (`sglang_backend.py`) reads each forward's batch
once into a `ForwardMetadata` and each layer's math into a `LayerMath`, then calls
`TieredOp("attention.<mode>")` with

    (q [T, Hq, Dqk], k_cache [S, Hkv, Dqk], v_cache [S, Hkv, Dv],
     req_to_token [R, C] int token slots, meta: ForwardMetadata, math: LayerMath,
     out [T, Hq, Dv])

and the registry runs `decode_triton` / `extend_triton` (Triton: `decode.py`,
`extend.py`) or `attend_torch` (`reference.py`), each tier's refusal deciding
per call. Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sglang_amd.attention.reference import contiguous_token_map, paged_attention_reference
from sglang_amd.attention.spec_layout import full_verify_mask


@dataclass(frozen=True)
class LayerMath:
    """One attention layer's math, as the kernels take it."""

    scale: float
    causal: bool
    sliding_window: int | None = None
    logit_cap: float = 0.0
    k_scale: float | None = None
    v_scale: float | None = None
    # [Hq] per-head sink logits (gpt-oss), any float dtype; None: no sink.
    sinks: torch.Tensor | None = field(default=None, compare=False)


@dataclass
class ForwardMetadata:
    """Per-batch lengths, read once per forward instead of once per layer."""

    mode: str  # "extend" or "decode"
    req_pool_indices: torch.Tensor  # [B] device
    kv_lens: torch.Tensor  # [B] device
    qo_lens: torch.Tensor  # [B] device
    kv_lens_cpu: list[int]
    qo_lens_cpu: list[int]
    # Speculative modes read K/V through a map of their own (spec_layout.py)
    # instead of req_to_token; req_pool_indices then index its rows.
    token_map: torch.Tensor | None = None
    # Target verify: flat bool, per sequence [qo_len, kv_len] row-major (the tree),
    # or with mask_draft_only only the [qo_len, qo_len] block over the drafts.
    custom_mask: torch.Tensor | None = None
    mask_draft_only: bool = False
    # Every sequence has this many new tokens (verify): the Triton launch is then
    # planned on the device, which is what lets a CUDA graph capture it.
    uniform_qo: int | None = None
    _rows_cpu: list[int] | None = None
    # Set while SGLang captures a CUDA graph (decode, draft decode, verify): the
    # decode split grid is sized for this many tokens (the capacity) instead of
    # this batch's longest sequence; anything that would read the host raises.
    graph_max_kv_len: int | None = None

    _new_tokens: tuple | None = None
    # Triton extend launch plans, made by the first layer and reused by the rest
    # (extend.paged_extend's `plans`).
    extend_plans: dict = field(default_factory=dict)

    def rows_cpu(self) -> list[int]:
        if self._rows_cpu is None:
            self._rows_cpu = self.req_pool_indices.tolist()
        return self._rows_cpu

    def full_mask(self) -> torch.Tensor | None:
        """The tree mask in the FULL layout the torch tier reads."""
        if self.custom_mask is None or not self.mask_draft_only:
            return self.custom_mask
        n = self.qo_lens_cpu[0] if self.qo_lens_cpu else 0
        prefix = [kv - qo for kv, qo in zip(self.kv_lens_cpu, self.qo_lens_cpu, strict=True)]
        return full_verify_mask(self.custom_mask, prefix, n, draft_only=True)

    def new_tokens_only(self) -> tuple[ForwardMetadata, torch.Tensor]:
        """Metadata and a token map that page over the call's own k/v rows.

        MLA's fresh prefill hands the backend decompressed K/V of the new tokens
        (the pool holds only the latent), so sequence b's keys are rows
        offsets[b] .. offsets[b] + qo_b - 1 of those tensors. Built once per forward.
        """
        if self._new_tokens is None:
            device = self.qo_lens.device
            qo = self.qo_lens_cpu
            token_map = contiguous_token_map(qo, device)
            meta = ForwardMetadata(
                mode="extend",
                req_pool_indices=torch.arange(len(qo), device=device),
                kv_lens=self.qo_lens,
                qo_lens=self.qo_lens,
                kv_lens_cpu=list(qo),
                qo_lens_cpu=list(qo),
            )
            self._new_tokens = (meta, token_map)
        return self._new_tokens


def triton_refusal(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    meta: ForwardMetadata,
    math: LayerMath,
    out: torch.Tensor,
) -> str | None:
    """Why the Triton kernels cannot take this call (None: they can)."""
    from sglang_amd.attention.decode import unsupported_reason

    if math.k_scale not in (None, 1.0) or math.v_scale not in (None, 1.0):
        return "scaled (quantized) KV cache"
    if not math.causal:
        return "non-causal attention (encoder / bidirectional layers)"
    return unsupported_reason(q, k_cache, v_cache)


def torch_refusal(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    meta: ForwardMetadata,
    math: LayerMath,
    out: torch.Tensor,
) -> str | None:
    """The torch tier reads lengths on the host: never inside a graph capture."""
    if meta.graph_max_kv_len is not None:
        return (
            "the torch tier reads lengths on the host, which a CUDA graph would freeze; "
            "start with --disable-cuda-graph"
        )
    return None


def decode_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    meta: ForwardMetadata,
    math: LayerMath,
    out: torch.Tensor,
) -> torch.Tensor:
    from sglang_amd.attention.decode import paged_decode

    return paged_decode(
        q,
        k_cache,
        v_cache,
        req_to_token,
        meta.req_pool_indices,
        meta.kv_lens,
        scale=math.scale,
        max_kv_len=meta.graph_max_kv_len or max(meta.kv_lens_cpu, default=0),
        sliding_window=math.sliding_window,
        logit_cap=math.logit_cap,
        sinks=math.sinks,
        out=out,
    )


def extend_triton(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    meta: ForwardMetadata,
    math: LayerMath,
    out: torch.Tensor,
) -> torch.Tensor:
    from sglang_amd.attention.extend import paged_extend

    return paged_extend(
        q,
        k_cache,
        v_cache,
        req_to_token,
        meta.req_pool_indices,
        meta.kv_lens,
        meta.qo_lens,
        scale=math.scale,
        kv_lens_cpu=meta.kv_lens_cpu,
        qo_lens_cpu=meta.qo_lens_cpu,
        sliding_window=math.sliding_window,
        logit_cap=math.logit_cap,
        custom_mask=meta.custom_mask,
        mask_draft_only=meta.mask_draft_only,
        uniform_qo=meta.uniform_qo,
        sinks=math.sinks,
        out=out,
        plans=meta.extend_plans,
    )


def attend_torch(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    req_to_token: torch.Tensor,
    meta: ForwardMetadata,
    math: LayerMath,
    out: torch.Tensor,
) -> torch.Tensor:
    return paged_attention_reference(
        q,
        k_cache,
        v_cache,
        req_to_token,
        meta.rows_cpu(),
        meta.kv_lens_cpu,
        meta.qo_lens_cpu,
        scale=math.scale,
        causal=math.causal,
        sliding_window=math.sliding_window,
        logit_cap=math.logit_cap,
        custom_mask=meta.full_mask(),
        k_scale=math.k_scale,
        v_scale=math.v_scale,
        sinks=math.sinks,
        out=out,
    )
