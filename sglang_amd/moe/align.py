"""Sort and align routed token slots by expert, in blocks a grouped GEMM can tile.

Slot s = t * k + j is token t's j-th choice. Each expert's slots are listed
contiguously and padded up to a multiple of `block`, so every block of `block`
rows belongs to one expert; padding rows hold the sentinel T * k. Experts that
receive no token get no block.

Everything runs on the device with no host sync, and every output's size
depends only on (T, k, E, block): the layout is sized for the worst case
(`max_blocks`), and blocks past the ones this routing fills are marked with
expert -1, which the grouped GEMMs skip. That is what lets SGLang capture a MoE
layer in a CUDA graph and replay it with another routing. Never imports sglang.
"""

from __future__ import annotations

import torch


def max_blocks(num_slots: int, num_experts: int, block: int) -> int:
    """Most blocks any routing of `num_slots` slots over `num_experts` can fill:
    sum_e ceil(c_e / block) <= ceil(num_slots / block) + (experts with a slot)."""
    return -(-num_slots // block) + min(num_experts, num_slots)


def align_by_expert(
    topk_ids: torch.Tensor, num_experts: int, block: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Expert-aligned slot layout of a routing.

    Args:
        topk_ids: [T, k] int expert ids; -1 (or any id outside [0, E)) is routed
            nowhere (expert parallel: another rank's expert).
        num_experts: E.
        block: rows per block (the grouped GEMM's BLOCK_M).

    Returns:
        (sorted_slots [B * block] int32, block_expert [B] int32, B * block) with
        B = max_blocks(T * k, E, block). Blocks beyond the routing's own have
        expert -1 and only sentinel slots; padding slots in a block are T * k.
    """
    flat = topk_ids.reshape(-1).long()
    num_slots = flat.numel()
    device = flat.device
    nb = max_blocks(num_slots, num_experts, block)
    valid = (flat >= 0) & (flat < num_experts)
    key = torch.where(valid, flat, num_experts)  # bin E collects the unrouted slots
    counts = torch.zeros(num_experts + 1, dtype=torch.int64, device=device)
    counts.scatter_add_(0, key, torch.ones_like(key))
    padded = (counts[:num_experts] + block - 1) // block * block
    ends = torch.cumsum(padded, 0)
    starts = torch.cat([ends.new_zeros(1), ends])  # [E + 1]; E's start is unused
    order = torch.argsort(key, stable=True)
    experts = key[order]
    rank = torch.arange(num_slots, device=device) - (torch.cumsum(counts, 0) - counts)[experts]
    # Unrouted slots land in one trash entry past the layout.
    dest = torch.where(experts < num_experts, starts[experts] + rank, nb * block)
    sorted_slots = torch.full((nb * block + 1,), num_slots, dtype=torch.int32, device=device)
    sorted_slots[dest] = order.to(torch.int32)
    block_ends = ends // block  # expert e owns blocks [block_ends[e-1], block_ends[e])
    blocks = torch.arange(nb, device=device)
    owner = torch.searchsorted(block_ends, blocks, right=True)
    block_expert = torch.where(owner < num_experts, owner, -1).to(torch.int32)
    return sorted_slots[: nb * block], block_expert, nb * block
