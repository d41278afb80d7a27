"""Triton kernel: where each local token goes, as `ep/plan.py`'s `plan_sends` says.

Where it sits: the first launch of the Triton tier of `ep_permute.pack`
(`ep/permute.py`). One program walks the tokens in blocks of BLOCK_T, keeping a
running count per destination rank, so a token's slot among the rows sent to
rank r is an exclusive prefix count over the tokens before it, computed on the
device with no host read (the low-latency mode stays capturable). The counts it
leaves are what the high-throughput mode reads on the host for the all-to-all
sizes, and what the pack and combine kernels turn into each rank's first row.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _ep_plan_kernel(
    IDS,
    SLOT,
    COUNTS,
    T,
    stride_ids,
    experts_per_rank,
    TOPK: tl.constexpr,
    K_PAD: tl.constexpr,
    WORLD: tl.constexpr,
    W_PAD: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """IDS [T, TOPK] int32/int64 global expert ids (-1, or past the last expert:
    nowhere); SLOT [T, WORLD] int32, written in full (-1: not sent); COUNTS [WORLD]
    int64 rows sent to each rank. Grid (1,)."""
    ranks = tl.arange(0, W_PAD)
    kk = tl.arange(0, K_PAD)
    carry = tl.zeros([W_PAD], dtype=tl.int32)
    for start in range(0, T, BLOCK_T):
        rows = start + tl.arange(0, BLOCK_T)
        in_t = rows < T
        ids = tl.load(
            IDS + rows.to(tl.int64)[:, None] * stride_ids + kk[None, :],
            mask=in_t[:, None] & (kk < TOPK)[None, :],
            other=-1,
        ).to(tl.int64)
        owner = tl.where(ids >= 0, ids // experts_per_rank, WORLD)
        owner = tl.minimum(owner, WORLD).to(tl.int32)
        hit = (owner[:, :, None] == ranks[None, None, :]).to(tl.int32)
        dest = tl.max(hit, axis=1)  # [BLOCK_T, W_PAD]: once per rank, however many experts
        seen = tl.cumsum(dest, axis=0)
        slot = tl.where(dest > 0, carry[None, :] + seen - 1, -1)
        tl.store(
            SLOT + rows.to(tl.int64)[:, None] * WORLD + ranks[None, :],
            slot,
            mask=in_t[:, None] & (ranks < WORLD)[None, :],
        )
        carry += tl.sum(dest, axis=0)
    tl.store(COUNTS + ranks, carry.to(tl.int64), mask=ranks < WORLD)
