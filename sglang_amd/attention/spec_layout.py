"""Token maps for the speculative forward modes of the `amd` attention backend.

Where it sits: `sglang_backend.py` turns each speculative ForwardBatch into the same
(token map, kv_lens, qo_lens) triple every attention tier already takes, so the
torch and Triton tiers serve EAGLE/MTP without a speculative kernel of their own.
A token map is a [rows, width] table of KV-pool slots in sequence order, read
exactly like SGLang's `req_to_token` (row b, column j = slot of token j).

- Target verify and draft extend: the committed prefix comes from `req_to_token`,
  the tokens of this forward from `out_cache_loc` (where they were just written),
  so the map does not depend on when SGLang copies those slots into `req_to_token`.
- Draft decode step i (EAGLE multi-step draft): branch t of request b reads its
  prefix plus the i + 1 draft tokens of its chain, which SGLang lays out in
  `req_to_token` after the prefix, `num_steps` columns per branch (page size 1 or
  top-k 1), or in whole pages per branch when both are larger than 1. This
  mirrors `generate_draft_decode_kv_indices` in SGLang 0.5.23.

Never imports sglang.
"""

from __future__ import annotations

import torch


def _lengths(values: list[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(device=device, dtype=torch.int64)
    return torch.tensor(values, device=device, dtype=torch.int64)


def _write(result: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return result.to(torch.int32)
    rows, width = result.shape
    if out.shape[0] < rows or out.shape[1] < width:
        raise ValueError(f"token map buffer {tuple(out.shape)} cannot hold {rows}x{width}")
    out[:rows, :width].copy_(result)
    return out[:rows, :width]


def prefix_plus_new_token_map(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    prefix_lens: list[int] | torch.Tensor,
    qo_lens: list[int] | torch.Tensor,
    new_locs: torch.Tensor,
    *,
    width: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Map whose row b is req_to_token[rows[b], :prefix_b] ++ new_locs[o_b : o_b + qo_b].

    Args:
        req_to_token: [R, C] int32 slot table.
        req_pool_indices: [B] rows of `req_to_token`.
        prefix_lens: [B] committed tokens read from `req_to_token` (host list or
            device tensor).
        qo_lens: [B] tokens of this forward; sequence b's are contiguous in `new_locs`.
        new_locs: [sum(qo_lens)] int slots of this forward's tokens (out_cache_loc).
        width: columns of the map; default out's width, else max(prefix_b + qo_b),
            which lists give for free (tensor lengths need `width` or `out`).
        out: [>= B, >= width] int32 buffer written in place (a CUDA graph's static
            map); with tensors as lengths nothing here reads the device.

    Returns:
        [B, width] int32 (a view of `out` when given); entries past a row's
        length are 0 (never read). Indices into `new_locs` are clamped, so rows
        padded beyond the real batch read valid slots.
    """
    device = req_to_token.device
    bsz = req_pool_indices.shape[0]
    prefix = _lengths(prefix_lens, device)
    qo = _lengths(qo_lens, device)
    if width is None and out is not None:
        width = out.shape[1]
    elif width is None:
        if isinstance(prefix_lens, torch.Tensor) or isinstance(qo_lens, torch.Tensor):
            raise ValueError("prefix_plus_new_token_map: pass width or out with tensor lengths")
        width = max((p + q for p, q in zip(prefix_lens, qo_lens, strict=True)), default=0)
    if bsz == 0 or width == 0:
        return _write(torch.zeros(bsz, width, dtype=torch.int32, device=device), out)
    starts = (torch.cumsum(qo, 0) - qo).unsqueeze(1)
    prefix, kv = prefix.unsqueeze(1), (prefix + qo).unsqueeze(1)
    cols = torch.arange(width, device=device).unsqueeze(0)
    table_cols = cols.clamp(max=req_to_token.shape[1] - 1).expand(bsz, width)
    from_table = req_to_token[req_pool_indices.long().unsqueeze(1), table_cols]
    new_idx = (starts + cols - prefix).clamp(0, max(new_locs.numel() - 1, 0))
    from_new = new_locs.long()[new_idx] if new_locs.numel() else torch.zeros_like(new_idx)
    result = torch.where(cols < prefix, from_table.long(), from_new)
    return _write(torch.where(cols < kv, result, torch.zeros_like(result)), out)


def full_verify_mask(
    mask: torch.Tensor | None,
    prefix_lens: list[int],
    num_draft: int,
    draft_only: bool | None = None,
) -> torch.Tensor | None:
    """The verify tree mask in the layout every tier reads: per request a row-major
    [num_draft, prefix + num_draft] bool block (SGLang's FULL_MASK mode).

    SGLang builds either that or, in QLEN_ONLY mode, only the [num_draft, num_draft]
    block over the drafts (the prefix is visible to all of them); the latter is
    widened here. Bit-packed masks are refused.

    Args:
        mask: flat bool tensor from `spec_info.custom_mask`, or None (causal drafts).
        prefix_lens: [B] committed tokens per request.
        num_draft: draft tokens per request.
        draft_only: the layout when the caller knows it (QLEN_ONLY: True); None
            tells them apart by size (verify prefixes are never empty).
    """
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise NotImplementedError(
            f"--attention-backend amd reads bool tree masks; got {mask.dtype} "
            "(bit-packed QLEN_ONLY_BITPACKING mode)"
        )
    n = num_draft
    full = sum(n * (p + n) for p in prefix_lens)
    if draft_only is None:
        draft_only = not (
            mask.numel() >= full and (mask.numel() == full or len(prefix_lens) * n * n != full)
        )
    if not draft_only:
        return mask[:full]
    bsz = len(prefix_lens)
    if mask.numel() < bsz * n * n:
        raise ValueError(
            f"verify mask has {mask.numel()} entries; expected {full} (full) or "
            f"{bsz * n * n} (draft-only)"
        )
    blocks = mask[: bsz * n * n].view(bsz, n, n)
    parts = []
    for b, p in enumerate(prefix_lens):
        prefix = torch.ones(n, p, dtype=torch.bool, device=mask.device)
        parts.append(torch.cat([prefix, blocks[b]], dim=1).reshape(-1))
    return torch.cat(parts) if parts else mask[:0]


def draft_decode_token_map(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    seq_lens: list[int] | torch.Tensor,
    *,
    topk: int,
    num_steps: int,
    step: int,
    page_size: int,
    out: torch.Tensor | None = None,
    kv_lens_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[int] | torch.Tensor]:
    """Map and kv lengths of draft-decode step `step` (0-based) for every branch.

    Args:
        req_to_token: [R, C] int32 slot table.
        req_pool_indices: [B] rows of `req_to_token`.
        seq_lens: [B] committed tokens per request (the draft chain comes after),
            a host list, or a device tensor (then `out` gives the width).
        topk: branches per request; query row b * topk + t is branch t of request b.
        num_steps: draft steps per iteration (columns reserved per branch).
        step: this step; each branch reads step + 1 draft tokens.
        page_size: KV pool page size (decides the per-branch layout when topk > 1).
        out: [>= B * topk, width] int32 buffer written in place (CUDA graphs).
        kv_lens_out: [>= B * topk] int32 buffer for the lengths (CUDA graphs).

    Returns:
        ([B * topk, width] int32 map, kv lengths [B * topk]: a list when
        `seq_lens` is one, else a tensor, a view of `kv_lens_out` when given).
    """
    device = req_to_token.device
    n_ext = step + 1
    bsz = req_pool_indices.shape[0]
    as_list = not isinstance(seq_lens, torch.Tensor)
    if as_list:
        kv_list = [s + n_ext for s in seq_lens for _ in range(topk)]
        width = max(kv_list, default=0) if out is None else out.shape[1]
    elif out is not None:
        width = out.shape[1]
    else:
        raise ValueError("draft_decode_token_map: pass out with tensor seq_lens")
    seq = _lengths(seq_lens, device).repeat_interleave(topk).unsqueeze(1)
    kv = (seq + n_ext).squeeze(1)
    if kv_lens_out is not None:
        kv_lens_out[: kv.numel()].copy_(kv)
        kv = kv_lens_out[: kv.numel()]
    if bsz == 0:
        token_map = _write(torch.zeros(0, width, dtype=torch.int32, device=device), out)
        return token_map, (kv_list if as_list else kv)
    branch = torch.arange(topk, device=device).repeat(bsz).unsqueeze(1)
    if page_size == 1 or topk == 1:
        ext_start = seq + branch * num_steps
    else:
        last_page = seq % page_size
        pages_per_branch = (last_page + num_steps + page_size - 1) // page_size
        ext_start = seq // page_size * page_size + branch * pages_per_branch * page_size + last_page
    cols = torch.arange(width, device=device).unsqueeze(0)
    src_cols = torch.where(cols < seq, cols, ext_start + cols - seq)
    src_cols = src_cols.clamp(0, req_to_token.shape[1] - 1)
    rows = req_pool_indices.long().repeat_interleave(topk).unsqueeze(1)
    result = req_to_token[rows, src_cols].long()
    valid = cols < seq + n_ext
    token_map = _write(torch.where(valid, result, torch.zeros_like(result)), out)
    return token_map, (kv_list if as_list else kv)
