"""One-program Triton kernel that lays routed slots out by expert (moe/align.py).

Where it sits: first launch of `moe/fused.py`; the grouped GEMMs read its
`SLOTS` / `BLOCK_EXPERT`. One program walks the slots in chunks of CHUNK, so
no cross-program synchronisation is needed.

  pass 1  per-expert counts (tl.histogram; bin E collects ids outside [0, E))
  pass 2  block_expert[b] = how many experts' block ranges end at or before b
          (-1 past the last expert's), and every layout row set to the sentinel
  pass 3  each slot takes the next free row of its expert: an atomic add on
          that expert's cursor in SCRATCH [NUM_BINS] int32

Inside an expert's run the slots' order is the order the atomics land in, which
may differ from run to run; nothing downstream depends on it (every GEMM row is
its own dot product, and the combine adds in slot order), so results are
bitwise the same. A tl.debug_barrier orders the plain stores before the
atomics. (A stable order needs a per-chunk sort or rank, and tl.sort runs
element by element in Triton's interpreter: minutes per call in the CPU tests.)
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _align_kernel(
    IDS,
    SLOTS,
    BLOCK_EXPERT,
    SCRATCH,
    num_slots,
    num_experts,
    num_blocks,
    BLOCK: tl.constexpr,
    NUM_BINS: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_CHUNK: tl.constexpr,
):
    """IDS [num_slots] any int (flattened topk_ids); SLOTS [num_blocks * BLOCK]
    int32 out; BLOCK_EXPERT [num_blocks] int32 out; SCRATCH [NUM_BINS] int32.
    NUM_BINS is a power of two > num_experts. Grid (1,)."""
    offs = tl.arange(0, CHUNK)
    bins = tl.arange(0, NUM_BINS)
    counts = tl.zeros([NUM_BINS], dtype=tl.int32)
    for c0 in range(0, num_slots, CHUNK):
        s = c0 + offs
        counts += tl.histogram(_expert_key(IDS, s, num_slots, num_experts), NUM_BINS)
    is_expert = bins < num_experts
    padded = tl.where(is_expert, (counts + BLOCK - 1) // BLOCK * BLOCK, 0)
    ends = tl.cumsum(padded, 0)
    # Bins >= E never own a block: their end is past every block index.
    block_end = tl.where(is_expert, ends // BLOCK, 2147483647)
    for b0 in range(0, num_blocks, BLOCK_CHUNK):
        b = b0 + tl.arange(0, BLOCK_CHUNK)
        owner = tl.sum((block_end[None, :] <= b[:, None]).to(tl.int32), axis=1)
        tl.store(BLOCK_EXPERT + b, tl.where(owner < num_experts, owner, -1), mask=b < num_blocks)
    total = num_blocks * BLOCK
    for r0 in range(0, total, CHUNK):
        r = r0 + offs
        tl.store(SLOTS + r, tl.full([CHUNK], 0, tl.int32) + num_slots, mask=r < total)
    tl.store(SCRATCH + bins, ends - padded)  # each expert's first row
    tl.debug_barrier()  # sentinels and cursors land before the atomics below
    for c0 in range(0, num_slots, CHUNK):
        s = c0 + offs
        key = _expert_key(IDS, s, num_slots, num_experts)
        routed = key < num_experts
        row = tl.atomic_add(SCRATCH + key, 1, mask=routed, sem="relaxed")
        tl.store(SLOTS + row, s, mask=routed)


@triton.jit
def _expert_key(IDS, s, num_slots, num_experts):
    """Expert of slots `s` as int32, or num_experts for ids outside [0, E) and s past the end."""
    e = tl.load(IDS + s, mask=s < num_slots, other=-1)
    # Compared in the ids' own dtype: an int64 id must not wrap into range.
    return tl.where((e >= 0) & (e < num_experts), e, num_experts).to(tl.int32)
