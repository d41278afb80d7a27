"""SGLang's own kernels as benchmark peers, loaded when SGLang is installed.

`sglang-amd bench` compares ours with these in the same run; the bench modules
stay importable without SGLang (the GPU test image), so every SGLang import of
theirs lives here and a missing or changed SGLang is a reason in the table, not
a crash. Imports sglang (lazily).

The attention peer is SGLang's triton attention backend as it serves on a GPU:
`decode_attention_fwd` with the split count its backend computes per request
(`get_num_kv_splits_triton`, run once per forward, outside the timed call) and
`extend_attention_fwd` over the prefix in the pool plus the new tokens' K/V, on
the same paged batch as ours (slot indices, page size 1: byte-identical to its
paged addressing). Where SGLang is not installed but its kernel files are (see
`scripts/sglang_kernel_shim.py`, for a GPU image without SGLang), the row says so.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from functools import partial

import torch
import triton

# The triton backend's --triton-attention-num-kv-splits default (8; 16 on HIP by
# its platform hook) and gfx942's cap on MLA splits (its fp32 partials' size).
_CUDA_KV_SPLITS, _HIP_KV_SPLITS, _GFX942_MLA_SPLIT_CAP = 8, 16, 256


def sglang_moe_peer(x, w13, w2, weights, ids) -> tuple[Callable[[], object] | None, str]:
    """SGLang's fused_experts (its Triton MoE kernel) on these tensors, or None and why."""
    if importlib.util.find_spec("sglang") is None:
        return None, "not installed here"
    try:
        from sglang.srt.layers.moe.moe_runner.base import MoeRunnerConfig
        from sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe import fused_experts
        from sglang.srt.layers.moe.topk import StandardTopKOutput

        if x.device.type != "cuda":
            return None, "not run: SGLang's Triton MoE kernel needs a GPU"
        topk = StandardTopKOutput(weights, ids.to(torch.int32), None)
        config = MoeRunnerConfig(num_experts=w13.shape[0], inplace=False, top_k=ids.shape[1])
        return partial(fused_experts, x, w13, w2, topk, config), ""
    except Exception as exc:  # an API it does not offer here is reported, not fatal
        return None, f"unavailable: {type(exc).__name__}: {exc}"[:120]


def triton_backend_max_kv_splits(
    hip: bool, cores: int, mla: bool, context_len: int, gfx942: bool = False
) -> int:
    """SGLang's triton attention backend's max_kv_splits (its __init__, mirrored):
    8 (16 on HIP); MLA raises it to min(next_pow2(cores), next_pow2(ceil(context / 32))),
    capped at 256 on gfx942."""
    splits = _HIP_KV_SPLITS if hip else _CUDA_KV_SPLITS
    if mla:
        cap = min(
            1 << (cores - 1).bit_length(), 1 << (math.ceil(context_len / 32) - 1).bit_length()
        )
        splits = max(splits, cap)
        if gfx942:
            splits = min(splits, _GFX942_MLA_SPLIT_CAP)
    return splits


def sglang_extend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    qo_indptr: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    qo_lens_cpu: list[int],
    scale: float,
) -> None:
    """`extend_attention_fwd` as SGLang's triton backend calls it (causal, no custom
    mask, page size 1): q/k/v the new tokens [T, H, D], the prefix read from the pools
    through kv_indptr / kv_indices (slots)."""
    from sglang.kernels.ops.attention import extend_attention

    extend_attention.extend_attention_fwd(
        q,
        k,
        v,
        o,
        k_pool,
        v_pool,
        qo_indptr,
        kv_indptr,
        kv_indices,
        None,
        True,
        None,
        max(qo_lens_cpu),
        1.0,
        1.0,
        sm_scale=scale,
        page_size=1,
        extend_seq_lens_cpu=qo_lens_cpu,
    )


def _origin() -> str:
    import sglang

    return getattr(sglang, "KERNELS_ONLY_NOTE", "")


def _slots(batch, lens: list[int], start: list[int] | None = None) -> torch.Tensor:
    rows = batch.req_pool_indices.tolist()
    start = start or [0] * len(rows)
    parts = [batch.req_to_token[r, s:n] for r, s, n in zip(rows, start, lens, strict=True)]
    return torch.cat(parts).to(torch.int32) if parts else batch.req_to_token.new_zeros(0)


def _indptr(lens: list[int], device) -> torch.Tensor:
    out = torch.zeros(len(lens) + 1, dtype=torch.int32)
    out[1:] = torch.tensor(lens).cumsum(0)
    return out.to(device)


def sglang_attention_peer(
    kind: str, batch, scale: float, v_head_dim: int | None
) -> tuple[Callable[[], object] | None, str]:
    """SGLang's Triton decode or extend attention on `batch` (a `testing.PagedBatch`,
    MLA when `v_head_dim` is set: V aliases K's first columns), or None and why."""
    if importlib.util.find_spec("sglang") is None:
        return None, "not installed here"
    if batch.q.device.type != "cuda":
        return None, "not run: measured on a GPU only"
    hip = torch.version.hip is not None
    props = torch.cuda.get_device_properties(batch.q.device)
    gfx942 = hip and "gfx942" in getattr(props, "gcnArchName", "")
    # Its backend launches with programmatic dependent launch on sm_90 and newer.
    pdl = not hip and torch.cuda.get_device_capability(batch.q.device)[0] >= 9
    try:
        return build_attention_call(
            kind, batch, scale, v_head_dim,
            cores=props.multi_processor_count, hip=hip, gfx942=gfx942, pdl=pdl,
        )  # fmt: skip
    except Exception as exc:
        return None, f"failed: {type(exc).__name__}: {exc}"[:120]


def build_attention_call(
    kind: str,
    batch,
    scale: float,
    v_head_dim: int | None,
    *,
    cores: int,
    hip: bool,
    gfx942: bool = False,
    pdl: bool = False,
) -> tuple[Callable[[], object], str]:
    """The SGLang call for `sglang_attention_peer` on a device with `cores` units;
    the callable returns the output. Runs it once (a launch it refuses raises here)."""
    from sglang.kernels.ops.attention import decode_attention, metadata

    dev = batch.q.device
    kv = batch.kv_lens.tolist()
    qo = batch.qo_lens.tolist()
    hq, hkv, dqk = batch.q.shape[1], batch.k_cache.shape[1], batch.k_cache.shape[2]
    dv = v_head_dim or batch.v_cache.shape[2]
    mla = v_head_dim is not None and v_head_dim < dqk
    v_pool = batch.k_cache[..., :dv] if mla else batch.v_cache
    note = _origin()
    if kind == "decode":
        max_splits = triton_backend_max_kv_splits(hip, cores, mla, max(kv), gfx942)
        splits = torch.empty(len(kv), dtype=torch.int32, device=dev)
        metadata.get_num_kv_splits_triton[(1,)](
            splits,
            batch.kv_lens.to(torch.int32),
            len(kv),
            1,
            hq,
            hkv,
            max_splits,
            cores,
            MAX_NUM_SEQ=max(256, triton.next_power_of_2(len(kv))),
        )
        kv_indptr, kv_indices = _indptr(kv, dev), _slots(batch, kv)
        logits = torch.empty(len(kv), hq, max_splits, dv, dtype=torch.float32, device=dev)
        lse = torch.empty(len(kv), hq, max_splits, dtype=torch.float32, device=dev)
        out = torch.empty(len(kv), hq, dv, dtype=batch.q.dtype, device=dev)
        call = partial(
            decode_attention.decode_attention_fwd,
            batch.q,
            batch.k_cache,
            v_pool,
            out,
            kv_indptr,
            kv_indices,
            logits,
            lse,
            splits,
            max_splits,
            scale,
            1.0,
            1.0,
            has_mla=mla,
            page_size=1,
        )
        try:
            call(use_pdl=pdl)
        except Exception:
            if not pdl:
                raise
            pdl, note = False, ", ".join(filter(None, [note, "no PDL"]))
            call(use_pdl=False)

        def fn() -> torch.Tensor:
            call(use_pdl=pdl)
            return out

        used = f"{int(splits.max())} of {max_splits} splits"
        return fn, ", ".join(filter(None, [note, used]))
    prefix = [n - m for n, m in zip(kv, qo, strict=True)]
    new_slots = _slots(batch, kv, prefix).long()
    k_new, v_new = batch.k_cache[new_slots], v_pool[new_slots]
    out = torch.empty(batch.q.shape[0], hq, dv, dtype=batch.q.dtype, device=dev)
    qo_indptr, kv_indptr = _indptr(qo, dev), _indptr(prefix, dev)
    kv_indices = _slots(batch, prefix)
    args = (batch.q, k_new, v_new, out, batch.k_cache, v_pool, qo_indptr, kv_indptr)

    def fn() -> torch.Tensor:
        sglang_extend(*args, kv_indices, qo, scale)
        return out

    fn()
    return fn, note


def sglang_sparse_mla_peer(
    q: torch.Tensor, kv: torch.Tensor, slots: torch.Tensor, scale: float, v_head_dim: int
) -> tuple[Callable[[], object] | None, str]:
    """SGLang's Triton sparse MLA decode (`triton_sparse_mla_decode_splitk`, its DSA
    backend's path on ROCm) over `slots` [B, topk] pool rows of `kv` [S, 1, D] for
    q [B, H, D], or None and why. A backend-owned workspace, as its backend passes."""
    if importlib.util.find_spec("sglang") is None:
        return None, "not installed here"
    if q.device.type != "cuda":
        return None, "not run: measured on a GPU only"
    try:
        from sglang.kernels.ops.attention.dsa.triton_sparse_mla_decode import (
            triton_sparse_mla_decode_splitk,
        )
    except Exception as exc:
        return None, f"failed: {type(exc).__name__}: {exc}"[:120]
    indices = slots.view(slots.shape[0], 1, -1).to(torch.int32)
    workspace: list = []

    def fn() -> torch.Tensor:
        return triton_sparse_mla_decode_splitk(
            q[..., :v_head_dim], q[..., v_head_dim:], kv, indices, scale,
            d_v=v_head_dim, workspace=workspace,
        )  # fmt: skip

    return fn, _origin()
