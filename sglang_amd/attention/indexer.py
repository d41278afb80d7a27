"""Triton tier of DSA's lightning indexer (DeepSeek-V3.2): which tokens each query
token attends to.

Where it sits: before `attention/sparse.py`. For each query token t of request
row r, with `visible[t]` leading positions it may see (its causal limit), the
score of position s is sum_h weights[t, h] * relu(scale * q[t, h] . k[s]) over
the index-K rows `req_to_token[r, s]` points at (float mode: HF transformers'
math, the oracle), or, in DeepSeek's FP8 mode (`indexer_logits_fp8`), over the
Hadamard-rotated, block-scaled float8 keys of SGLang's index-K cache
(`attention/index_k_cache.py`; on gfx942 read as e4m3fnuz for its fp8 MFMA, same
scores). The scores come from `indexer_details/_logits.py`; the
top-k is `reference.select_topk` (a stable torch sort: higher score first, the
lower position between equals), -1 where fewer than k positions are visible:
exactly the table `sparse_attention` reads. Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.attention.index_k_cache import INDEX_HEAD_DIM, index_k_cache_bytes_per_page
from sglang_amd.attention.indexer_details._logits import _indexer_logits_kernel
from sglang_amd.attention.opt_flags import choose_num_splits
from sglang_amd.attention.reference import select_topk
from sglang_amd.target_info import current_target
from sglang_amd.triton_utils import dot_flags

__all__ = ["indexer_logits", "indexer_logits_fp8", "indexer_topk"]

# Positions a program scores per step: a [BLOCK_N, D] index-K tile.
_BLOCK_N = 64


def indexer_logits(
    q: torch.Tensor,
    weights: torch.Tensor,
    index_k: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    visible: torch.Tensor,
    *,
    scale: float,
    width: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indexer scores, float32 [T, width], -inf at positions >= visible[t].

    Args:
        q: [T, H, D] float16/bfloat16/float32 indexer queries (RoPE applied); D a
            power of two (128 in DeepSeek-V3.2).
        weights: [T, H] per-head weights (n_heads^-0.5 folded in, as HF does).
        index_k: [S, D] index-K rows, one per token slot, q's dtype family.
        req_to_token: [R, max_context] int32/int64 slots.
        req_pool_indices: [T] request row of each query token.
        visible: [T] int positions each query token may see.
        scale: D ** -0.5.
        width: columns to fill (>= max(visible); the capacity under CUDA graphs).
        out: [T, width] float32 written in place when given.
    """
    tokens, heads, dim = q.shape
    if dim & (dim - 1) or index_k.shape[1] != dim:
        raise ValueError(f"indexer_logits: head dim {dim} / index-K {index_k.shape[1]}: "
                         "both must be the same power of two")  # fmt: skip
    return _launch(q, weights, index_k, req_to_token, req_pool_indices, visible, scale, width,
                   out, fp8_page=0, dtypes=(q.dtype, index_k.dtype))  # fmt: skip


def indexer_logits_fp8(
    q8: torch.Tensor,
    weights: torch.Tensor,
    index_k_cache: torch.Tensor,
    page_size: int,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    visible: torch.Tensor,
    *,
    width: int,
    out: torch.Tensor | None = None,
    fnuz: bool | None = None,
) -> torch.Tensor:
    """Indexer scores in DeepSeek's FP8 mode, float32 [T, width], -inf at positions
    >= visible[t]: sum_h weights[t, h] * relu(q8[t, h] . k8[s]) * k_scale[s].

    Args:
        q8: [T, H, 128] float8 e4m3fn rotated, quantized queries
            (`index_k_cache.fp8_indexer_inputs`).
        weights: [T, H] float32 head weights with the query scale, 128^-0.5 and
            H^-0.5 folded in.
        index_k_cache: [pages, page_size * 132] uint8, SGLang's layout
            (`index_k_cache.store_index_k`).
        page_size: tokens a page (64 in SGLang's DSA pool).
        req_to_token, req_pool_indices, visible, width, out: as `indexer_logits`.
        fnuz: read the e4m3fn bytes as e4m3fnuz (half the value, -0 as 0) and scale
            the dot by 4, for matrix cores that take fnuz only: the same scores.
            None: the device's choice (`Target.fp8_fnuz`, gfx942).
    """
    tokens, heads, dim = q8.shape
    if q8.dtype != torch.float8_e4m3fn:
        raise ValueError(f"indexer_logits_fp8: queries must be float8_e4m3fn, got {q8.dtype}")
    if dim != INDEX_HEAD_DIM or index_k_cache.shape[1] != index_k_cache_bytes_per_page(page_size):
        raise ValueError(
            f"indexer_logits_fp8: head dim {dim} (want {INDEX_HEAD_DIM}) and "
            f"{index_k_cache.shape[1]} bytes a page (want "
            f"{index_k_cache_bytes_per_page(page_size)} for page size {page_size})"
        )
    if fnuz is None:
        fnuz = current_target(q8.device).fp8_fnuz
    return _launch(q8.view(torch.uint8) if fnuz else q8, weights, index_k_cache, req_to_token,
                   req_pool_indices, visible, 1.0, width, out, fp8_page=page_size,
                   dtypes=(q8.dtype,), fnuz=fnuz)  # fmt: skip


def _launch(q, weights, keys, req_to_token, req_pool_indices, visible, scale: float,
            width: int, out, *, fp8_page: int, dtypes: tuple,
            fnuz: bool = False) -> torch.Tensor:  # fmt: skip
    """One launch of the scores kernel for either mode (keys: float rows, or with
    `fp8_page` the index-K cache's pages); the grid splits each token's width so
    a few tokens still fill the device."""
    tokens, heads, dim = q.shape
    if out is None:
        out = torch.empty(tokens, width, dtype=torch.float32, device=q.device)
    if tokens == 0 or width == 0:
        return out
    target = current_target(q.device)
    splits = choose_num_splits(tokens, width, target.compute_units)
    span = triton.cdiv(triton.cdiv(width, splits), _BLOCK_N) * _BLOCK_N
    _indexer_logits_kernel[(tokens, triton.cdiv(width, span))](
        q, weights, keys, req_to_token, req_pool_indices, visible, out,
        q.stride(0), q.stride(1), weights.stride(0), keys.stride(0),
        req_to_token.stride(0), out.stride(0), scale, width, span,
        NUM_HEADS=heads, BLOCK_H=max(16, triton.next_power_of_2(heads)), D=dim,
        BLOCK_N=_BLOCK_N, FP8_PAGE=fp8_page, FNUZ=fnuz, **dot_flags(*dtypes),
    )  # fmt: skip
    return out


def indexer_topk(
    q: torch.Tensor,
    weights: torch.Tensor,
    index_k: torch.Tensor,
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    visible: torch.Tensor,
    *,
    scale: float,
    topk: int,
    width: int,
) -> torch.Tensor:
    """[T, topk] int32 positions each query token attends to (-1: none): the
    indexer's scores (`indexer_logits`), then `select_topk`'s rule."""
    logits = indexer_logits(q, weights, index_k, req_to_token, req_pool_indices, visible,
                            scale=scale, width=width)  # fmt: skip
    return select_topk(logits, topk)
