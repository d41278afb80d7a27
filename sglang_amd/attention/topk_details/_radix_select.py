"""The top-k kernel: one program per row selects the k largest scores by radix select.

Scores are mapped to unsigned 32-bit keys that order like the floats (positives
get the sign bit set, negatives are inverted; -0.0 is 0.0 first), -inf and NaN are
never selected.
Four passes of an 8-bit histogram over the row narrow the key of the k-th largest
score (the threshold; the first also counts the valid scores, and when at most k
are, the other three are skipped); a last pass writes, in position order, every
position above it and the lowest positions equal to it until k are taken, then -1:
each score is read five times at most. No sort, no host read: the launch is the
same for any scores of a shape.
"""

import triton
import triton.language as tl

_NEG_INF_KEY = tl.constexpr(0x007FFFFF)  # the key of -inf: below every finite score


@triton.jit
def _keys(scores_ptr, pos, width):
    x = tl.load(scores_ptr + pos, mask=pos < width, other=float("-inf"))
    # -0.0 equals 0.0 (a ReLU of a negative gives it): one key for both.
    x = tl.where(x == 0.0, 0.0, x)
    u = x.to(tl.uint32, bitcast=True)
    key = tl.where((u >> 31) == 1, u ^ 0xFFFFFFFF, u | 0x80000000)
    valid = (pos < width) & (key > _NEG_INF_KEY) & (x == x)
    return key, valid


@triton.jit
def _histogram(scores_ptr, width, prefix, high, shift, lanes, BLOCK_N: tl.constexpr):
    """Counts of the 8-bit digit at `shift` of the valid keys whose `high` bits are `prefix`."""
    hist = tl.zeros((256,), tl.int32)
    outside = 0
    for start in range(0, width, BLOCK_N):
        key, valid = _keys(scores_ptr, start + lanes, width)
        take = valid & ((key & high) == prefix)
        digit = ((key >> shift) & 0xFF).to(tl.int32)
        # Unmasked histogram (portable): lanes outside count in bin 0, removed below.
        hist += tl.histogram(tl.where(take, digit, 0), 256)
        outside += tl.sum((~take).to(tl.int32))
    return hist - tl.where(tl.arange(0, 256) == 0, outside, 0)


@triton.jit
def _narrow(hist, remaining):
    """The digit the `remaining`-th largest key has, and how many of the keys that
    share it are still to take (the others above it are taken)."""
    bins = tl.arange(0, 256)
    at_or_above = tl.cumsum(hist, 0, reverse=True)
    chosen = tl.max(tl.where(at_or_above >= remaining, bins, -1))
    return chosen, remaining - tl.sum(tl.where(bins > chosen, hist, 0))


@triton.jit
def _topk_kernel(
    scores_ptr,  # [T, width] float32
    out_ptr,  # [T, K] int32
    width,
    stride_s,
    stride_o,
    K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0)
    scores_ptr += row * stride_s
    out_ptr += row * stride_o
    lanes = tl.arange(0, BLOCK_N)

    # The first pass also counts the valid scores: all of them are taken when <= K.
    zero = tl.full((), 0, tl.uint32)
    hist = _histogram(scores_ptr, width, zero, zero, 24, lanes, BLOCK_N)
    prefix = tl.full((), _NEG_INF_KEY, tl.uint32)  # the threshold key
    remaining = 0  # positions equal to it still to take
    if tl.sum(hist) > K:
        chosen, remaining = _narrow(hist, K)
        prefix = chosen.to(tl.uint32) << 24
        high = tl.full((), 0xFF000000, tl.uint32)  # the key bits fixed so far
        for p in tl.static_range(1, 4):
            shift = 24 - 8 * p
            hist = _histogram(scores_ptr, width, prefix, high, shift, lanes, BLOCK_N)
            chosen, remaining = _narrow(hist, remaining)
            prefix |= chosen.to(tl.uint32) << shift
            high |= tl.full((), 0xFF, tl.uint32) << shift

    written = 0
    ties_seen = 0
    for start in range(0, width, BLOCK_N):
        pos = start + lanes
        key, valid = _keys(scores_ptr, pos, width)
        above = valid & (key > prefix)
        tie = valid & (key == prefix)
        tie_rank = tl.cumsum(tie.to(tl.int32), 0) + ties_seen
        take = above | (tie & (tie_rank <= remaining))
        slot = tl.cumsum(take.to(tl.int32), 0) - 1 + written
        tl.store(out_ptr + slot, pos, mask=take & (slot < K))
        written += tl.sum(take.to(tl.int32))
        ties_seen += tl.sum(tie.to(tl.int32))
    for start in range(0, K, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        tl.store(
            out_ptr + cols, tl.full((BLOCK_K,), -1, tl.int32), mask=(cols >= written) & (cols < K)
        )
