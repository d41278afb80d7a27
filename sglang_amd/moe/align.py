"""Sort and align routed token slots by expert, in blocks a grouped GEMM can tile.

Slot s = t * k + j is token t's j-th choice. Each expert's slots are listed
contiguously and padded up to a multiple of `block`, so every block of `block`
rows belongs to one expert; padding rows hold the sentinel T * k. Experts that
receive no token get no block. Never imports sglang.
"""

from __future__ import annotations

import torch


def align_by_expert(
    topk_ids: torch.Tensor, num_experts: int, block: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """topk_ids [T, k] int (-1: routed nowhere) ->
    (sorted_slots [P] int32, block_expert [P // block] int32, P)."""
    flat = topk_ids.reshape(-1).long()
    sentinel = flat.numel()
    counts = torch.bincount(flat[flat >= 0], minlength=num_experts)
    padded = (counts + block - 1) // block * block
    total = int(padded.sum())
    starts = torch.cumsum(padded, 0) - padded
    order = torch.argsort(torch.where(flat >= 0, flat, num_experts), stable=True)
    order = order[: int(counts.sum())]
    experts = flat[order]
    rank = (
        torch.arange(order.numel(), device=flat.device)
        - (torch.cumsum(counts, 0) - counts)[experts]
    )
    sorted_slots = torch.full((total,), sentinel, dtype=torch.int32, device=flat.device)
    sorted_slots[starts[experts] + rank] = order.to(torch.int32)
    block_expert = torch.repeat_interleave(
        torch.arange(num_experts, device=flat.device, dtype=torch.int32), padded // block
    )
    return sorted_slots, block_expert, total
