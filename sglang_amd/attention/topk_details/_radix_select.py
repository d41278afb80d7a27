"""The top-k kernel: one program per row selects the k largest scores by radix select.

Scores are mapped to unsigned 32-bit keys that order like the floats (positives
get the sign bit set, negatives are inverted; -0.0 is 0.0 first), -inf and NaN are
never selected.

Two passes over the row, then passes over a few candidates:
1. a histogram of the keys' top FIRST_BITS bits (it also counts the valid scores)
   gives the bin of the k-th largest key;
2. every position in a higher bin is written to the output, in position order,
   and the positions in that bin (the candidates) to a scratch row, in position
   order (when at most k scores are valid, every one of them is written here);
3. the candidates' lower bits are narrowed in two more histogram passes (the
   second skipped when every candidate left in the chosen bin is taken), and the
   candidates above the k-th key, then the lowest positions equal to it, are
   written after the others, then -1.
The row is read twice whatever its width; the candidates are a bin of 2^FIRST_BITS
(a few hundred positions of a 64K row of indexer scores). No sort, no host read:
the launch is the same for any scores of a shape.
"""

import triton
import triton.language as tl

_NEG_INF_KEY = tl.constexpr(0x007FFFFF)  # the key of -inf: below every finite score


@triton.jit
def _keys(scores_ptr, pos, mask):
    x = tl.load(scores_ptr + pos, mask=mask, other=float("-inf"))
    # -0.0 equals 0.0 (a ReLU of a negative gives it): one key for both.
    x = tl.where(x == 0.0, 0.0, x)
    u = x.to(tl.uint32, bitcast=True)
    key = tl.where((u >> 31) == 1, u ^ 0xFFFFFFFF, u | 0x80000000)
    valid = mask & (key > _NEG_INF_KEY) & (x == x)
    return key, valid


@triton.jit
def _narrow(hist, remaining, BINS: tl.constexpr):
    """The digit the `remaining`-th largest key has, how many keys share it, and
    how many of those are still to take (the ones in higher digits are taken)."""
    bins = tl.arange(0, BINS)
    at_or_above = tl.cumsum(hist, 0, reverse=True)
    chosen = tl.max(tl.where(at_or_above >= remaining, bins, -1))
    in_bin = tl.sum(tl.where(bins == chosen, hist, 0))
    return chosen, in_bin, remaining - tl.sum(tl.where(bins > chosen, hist, 0))


@triton.jit
def _candidate_histogram(
    scores_ptr, cand_ptr, count, prefix, high, lanes,
    SHIFT: tl.constexpr, BINS: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Counts of the digit at SHIFT of the candidates whose `high` bits are `prefix`."""
    hist = tl.zeros((BINS,), tl.int32)
    outside = 0
    for start in range(0, count, BLOCK_N):
        i = start + lanes
        pos = tl.load(cand_ptr + i, mask=i < count, other=0)
        key, valid = _keys(scores_ptr, pos, i < count)
        take = valid & ((key & high) == prefix)
        digit = ((key >> SHIFT) & (BINS - 1)).to(tl.int32)
        # Unmasked histogram (portable): lanes outside count in bin 0, removed below.
        hist += tl.histogram(tl.where(take, digit, 0), BINS)
        outside += tl.sum((~take).to(tl.int32))
    return hist - tl.where(tl.arange(0, BINS) == 0, outside, 0)


@triton.jit
def _topk_kernel(
    scores_ptr,  # [T, width] float32, read only
    out_ptr,  # [T, K] int32
    cand_ptr,  # [T, width] int32 scratch: each row's candidate positions
    width,
    stride_s,
    stride_o,
    stride_c,
    K: tl.constexpr,
    FIRST_BITS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0)
    scores_ptr += row * stride_s
    out_ptr += row * stride_o
    cand_ptr += row * stride_c
    lanes = tl.arange(0, BLOCK_N)
    FIRST_SHIFT: tl.constexpr = 32 - FIRST_BITS
    FIRST_BINS: tl.constexpr = 1 << FIRST_BITS
    # The candidates' FIRST_SHIFT low bits, narrowed in two passes.
    BITS_A: tl.constexpr = (FIRST_SHIFT + 1) // 2
    SHIFT_A: tl.constexpr = FIRST_SHIFT - BITS_A
    BINS_A: tl.constexpr = 1 << BITS_A
    BINS_B: tl.constexpr = 1 << SHIFT_A

    # 1. The top bits' histogram; it also counts the valid scores.
    hist = tl.zeros((FIRST_BINS,), tl.int32)
    outside = 0
    for start in range(0, width, BLOCK_N):
        key, valid = _keys(scores_ptr, start + lanes, start + lanes < width)
        digit = (key >> FIRST_SHIFT).to(tl.int32)
        hist += tl.histogram(tl.where(valid, digit, 0), FIRST_BINS)
        outside += tl.sum((~valid).to(tl.int32))
    hist -= tl.where(tl.arange(0, FIRST_BINS) == 0, outside, 0)
    chosen = -1  # every valid score is above bin -1: all are taken when <= K
    in_bin = 0
    remaining = 0
    if tl.sum(hist) > K:
        chosen, in_bin, remaining = _narrow(hist, K, FIRST_BINS)

    # 2. Higher bins to the output, the chosen bin to the candidates.
    written = 0
    count = 0
    for start in range(0, width, BLOCK_N):
        pos = start + lanes
        key, valid = _keys(scores_ptr, pos, pos < width)
        digit = (key >> FIRST_SHIFT).to(tl.int32)
        above = valid & (digit > chosen)
        cand = valid & (digit == chosen)
        slot = tl.cumsum(above.to(tl.int32), 0) - 1 + written
        tl.store(out_ptr + slot, pos, mask=above & (slot < K))
        cslot = tl.cumsum(cand.to(tl.int32), 0) - 1 + count
        tl.store(cand_ptr + cslot, pos, mask=cand)
        written += tl.sum(above.to(tl.int32))
        count += tl.sum(cand.to(tl.int32))

    # 3. Narrow the candidates' low bits: `prefix` holds the key bits fixed so far
    # (`high` marks them); the second pass is skipped when every candidate sharing
    # the first pass's digit is taken.
    prefix = (chosen.to(tl.uint32) & (FIRST_BINS - 1)) << FIRST_SHIFT
    high = tl.full((), FIRST_BINS - 1, tl.uint32) << FIRST_SHIFT
    if remaining > 0:
        if remaining < in_bin:
            hist_a = _candidate_histogram(
                scores_ptr, cand_ptr, count, prefix, high, lanes, SHIFT_A, BINS_A, BLOCK_N
            )
            digit_a, in_bin, remaining = _narrow(hist_a, remaining, BINS_A)
            prefix |= digit_a.to(tl.uint32) << SHIFT_A
            high |= tl.full((), BINS_A - 1, tl.uint32) << SHIFT_A
            if remaining < in_bin:
                hist_b = _candidate_histogram(
                    scores_ptr, cand_ptr, count, prefix, high, lanes, 0, BINS_B, BLOCK_N
                )
                digit_b, in_bin, remaining = _narrow(hist_b, remaining, BINS_B)
                prefix |= digit_b.to(tl.uint32)
                high |= tl.full((), BINS_B - 1, tl.uint32)
        ties_seen = 0
        for start in range(0, count, BLOCK_N):
            i = start + lanes
            pos = tl.load(cand_ptr + i, mask=i < count, other=0)
            key, valid = _keys(scores_ptr, pos, i < count)
            fixed = key & high
            tie = valid & (fixed == prefix)
            tie_rank = tl.cumsum(tie.to(tl.int32), 0) + ties_seen
            take = (valid & (fixed > prefix)) | (tie & (tie_rank <= remaining))
            slot = tl.cumsum(take.to(tl.int32), 0) - 1 + written
            tl.store(out_ptr + slot, pos, mask=take & (slot < K))
            written += tl.sum(take.to(tl.int32))
            ties_seen += tl.sum(tie.to(tl.int32))
    for start in range(0, K, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        tl.store(
            out_ptr + cols, tl.full((BLOCK_K,), -1, tl.int32), mask=(cols >= written) & (cols < K)
        )
