"""Sort and align routed token slots by expert, in blocks a grouped GEMM can tile.

Slot s = t * k + j is token t's j-th choice. Each expert's slots are listed
contiguously (in any order: each GEMM row is its own dot product and the combine
adds in slot order, so results do not depend on it) and padded up to a multiple
of `block`, so every
block of `block` rows belongs to one expert; padding rows hold the sentinel
T * k. Experts that receive no token get no block.

Where it sits: the first of `moe/fused.py`'s launches; one Triton program
(`align_details/_align.py`) builds the whole layout. Nothing is read back to
the host and every output's size depends only on (T, k, E, block): the layout
is sized for the worst case (`max_blocks`), and blocks past the ones this
routing fills are marked with expert -1, which the grouped GEMMs skip. That is
what lets SGLang capture a MoE layer in a CUDA graph and replay it with another
routing. The torch tier (moe/reference.py) needs no layout, so there is no
torch version. Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.moe.align_details._align import _align_kernel

# Slots the one program handles per step (histogram, then placement, of CHUNK
# keys). Not per target: the kernel is one small program whatever the GPU.
_CHUNK = 1024
# The block-owner pass compares [BLOCK_CHUNK, NUM_BINS] values: at most this many,
# 32 a thread on 4 warps (64 blocks x 256 bins spilled 8 bytes on sm_90).
_OWNER_TILE = 4096


def max_blocks(num_slots: int, num_experts: int, block: int) -> int:
    """Most blocks any routing of `num_slots` slots over `num_experts` can fill:
    sum_e ceil(c_e / block) <= ceil(num_slots / block) + (experts with a slot)."""
    return -(-num_slots // block) + min(num_experts, num_slots)


def align_by_expert(
    topk_ids: torch.Tensor, num_experts: int, block: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Expert-aligned slot layout of a routing, from one Triton launch.

    Args:
        topk_ids: [T, k] int expert ids (any integer dtype); -1 (or any id
            outside [0, E)) is routed nowhere (expert parallel: another rank's expert).
        num_experts: E.
        block: rows per block (the grouped GEMM's BLOCK_M).

    Returns:
        (sorted_slots [B * block] int32, block_expert [B] int32, B * block) with
        B = max_blocks(T * k, E, block). Blocks beyond the routing's own have
        expert -1 and only sentinel slots; padding slots in a block are T * k.
    """
    flat = topk_ids.reshape(-1)
    if flat.stride(0) != 1:
        flat = flat.contiguous()
    num_slots = flat.numel()
    device = flat.device
    nb = max_blocks(num_slots, num_experts, block)
    sorted_slots = torch.empty(nb * block, dtype=torch.int32, device=device)
    block_expert = torch.empty(nb, dtype=torch.int32, device=device)
    num_bins = triton.next_power_of_2(num_experts + 1)
    scratch = torch.empty(num_bins, dtype=torch.int32, device=device)
    if nb:
        chunk = min(_CHUNK, triton.next_power_of_2(max(num_slots, 16)))
        _align_kernel[(1,)](
            flat,
            sorted_slots,
            block_expert,
            scratch,
            num_slots,
            num_experts,
            nb,
            BLOCK=block,
            NUM_BINS=num_bins,
            CHUNK=chunk,
            BLOCK_CHUNK=max(1, min(64, _OWNER_TILE // num_bins)),
        )
    return sorted_slots, block_expert, nb * block
