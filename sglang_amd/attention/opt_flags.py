"""Launch flags of the attention kernels (split-KV decode, extend), per target.

Where it sits: `attention/decode.py` and `attention/extend.py` call
`decode_flags(current_target(q.device), ...)` / `extend_flags(...)` before each
launch. This module holds what every vendor shares -- the split count and the
head block of decode -- and dispatches the per-arch tiles to
`opt_flags_amd.py` / `opt_flags_nvidia.py`, or answers for the Triton
interpreter itself (in the style of triton_kernels' `opt_flags.py`). Flags
depend on the `Target` only, never on a live device, so any known target's
flags can be computed on a CPU-only machine (`target_info.target_for_arch`).

The split count is what keeps small-batch, long-context decode bandwidth-bound:
with B sequences x H_kv heads there may be far fewer programs than compute
units, so each sequence is cut into splits until the grid covers about two
waves, but never into splits shorter than `MIN_TOKENS_PER_SPLIT` (below that the
partial-output traffic and the reduce cost more than the parallelism gains).

Each split also writes a float32 partial output (and its log-sum-exp) per query
head, which the reduce reads back: group x (D_V + 1) x 8 bytes a split, against
the K/V bytes the split reads. For MHA/GQA the split count is capped so that
round trip stays within `PARTIAL_TRAFFIC_BUDGET` of the K/V bytes (16 query
heads per KV head at 8K keys: 15 splits instead of 32, 1.16x -> ~1.07x the
ideal bytes in `sglang-amd audit --traffic`); fewer, longer splits cost latency
only where the grid was far from filling the GPU anyway. MLA (V wider than 256)
is exempt: its 512-wide partials would leave a batch-1 decode one split, i.e.
a handful of programs each reading the whole latent.

MLA's head block: 16 heads while a KV head has at most 16; above, up to 64 per
program (per-arch tiles), FlashMLA's layout: every program of a split reads the
split's whole latent, so 128 heads read it twice instead of 8 times.
Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sglang_amd.attention import opt_flags_amd, opt_flags_nvidia
from sglang_amd.target_info import Target

__all__ = [
    "MAX_SPLITS",
    "MIN_TOKENS_PER_SPLIT",
    "PARTIAL_TRAFFIC_BUDGET",
    "WAVES",
    "DecodeFlags",
    "ExtendFlags",
    "choose_num_splits",
    "decode_flags",
    "extend_flags",
    "partial_traffic_cap",
]

MIN_TOKENS_PER_SPLIT = 256
MAX_SPLITS = 64
WAVES = 2
PARTIAL_TRAFFIC_BUDGET = 0.06
# Sparse (DSA) rows read only their top-k latent rows, so the float32 partials
# of a split and the query each split re-reads weigh more against them: this
# share of the rows' bytes bounds both (issue 13's sparse gate: <= 1.2x of the
# k rows). At top-k 2048 and 16 heads a row takes 5 splits instead of 8.
SPARSE_SPLIT_BUDGET = 0.18

# The interpreter's tiles. Decode: the values the CUDA branch chose before the
# split by vendor -- the old rule was "ROCm, else these", so CPU tests ran the
# NVIDIA tile shapes (block_n 64, or 32 for wide heads) and keep doing so; with
# INTERPRETER.compute_units = 4 the grid stays small but still splits. Extend:
# small tiles, so each interpreted program (numpy on the CPU) costs little.
# num_warps and num_stages do not change what the interpreter computes.
# Decode: (normal heads, wide heads), each (block_n, num_warps, num_stages).
_INTERPRETER_DECODE: tuple[tuple[int, int, int], tuple[int, int, int]] = ((64, 4, 2), (32, 8, 2))
# MLA with more than 16 heads: (most heads per program, block_n, num_warps,
# num_stages), as on the GPUs, so CPU tests run the 64-head programs.
_INTERPRETER_DECODE_LATENT_HEADS: tuple[int, int, int, int] = (64, 16, 8, 2)
# Extend: (block_m, block_n, num_warps, num_stages) for every head width.
_INTERPRETER_EXTEND: tuple[int, int, int, int] = (16, 16, 4, 1)


@dataclass(frozen=True)
class DecodeFlags:
    num_splits: int
    block_n: int
    block_h: int
    num_warps: int
    num_stages: int
    # A sequence uses ceil(kv_len / min_split_len) of the grid's splits at most.
    min_split_len: int = MIN_TOKENS_PER_SPLIT


@dataclass(frozen=True)
class ExtendFlags:
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def choose_num_splits(programs: int, max_kv_len: int, units: int) -> int:
    """Splits per sequence so the grid covers about WAVES waves of `units`."""
    want = -(-WAVES * units // max(programs, 1))
    by_length = max(1, -(-max_kv_len // MIN_TOKENS_PER_SPLIT))
    return max(1, min(want, by_length, MAX_SPLITS))


def partial_traffic_cap(max_kv_len: int, group: int, d_qk: int, d_v: int, kv_bytes: int = 2) -> int:
    """Most splits whose float32 partials (written, then read by the reduce) stay
    within PARTIAL_TRAFFIC_BUDGET of the K/V bytes one KV head's sequence reads."""
    kv = max_kv_len * (d_qk + d_v) * kv_bytes
    per_split = group * (d_v + 1) * 4 * 2
    return max(1, int(PARTIAL_TRAFFIC_BUDGET * kv // per_split))


def decode_flags(
    target: Target,
    batch: int,
    num_kv_heads: int,
    group: int,
    max_kv_len: int,
    d_qk: int,
    d_v: int,
) -> DecodeFlags:
    """Split-KV decode flags for `batch` sequences of up to `max_kv_len` keys,
    `num_kv_heads` KV heads each read by `group` query heads, on `target`."""
    # One program serves up to block_h query heads of a KV head (they share its
    # K/V loads); 16 is the smallest tile tl.dot takes.
    block_h = max(16, min(64, 1 << max(group - 1, 0).bit_length()))
    wide = d_qk > 256 or d_v > 256  # MLA latent: keep the [BLOCK_H, D_V] accumulator in registers
    latent_heads = None
    if wide:
        block_h = 16
        if group > 16:  # every program of a split reads the whole latent: fewer, taller ones
            if target.vendor == "amd":
                latent_heads = opt_flags_amd.decode_latent_heads_tiles(target)
            elif target.vendor == "nvidia":
                latent_heads = opt_flags_nvidia.decode_latent_heads_tiles(target)
            else:
                latent_heads = _INTERPRETER_DECODE_LATENT_HEADS
            block_h = min(latent_heads[0], 1 << (group - 1).bit_length())
    head_blocks = -(-group // block_h)
    programs = batch * num_kv_heads * head_blocks
    splits = choose_num_splits(programs, max_kv_len, target.compute_units)
    if not wide:
        splits = min(splits, partial_traffic_cap(max_kv_len, group, d_qk, d_v))
    if latent_heads is not None:
        _, block_n, num_warps, num_stages = latent_heads
    elif target.vendor == "amd":
        block_n, num_warps, num_stages = opt_flags_amd.decode_tiles(target, wide=wide)
    elif target.vendor == "nvidia":
        block_n, num_warps, num_stages = opt_flags_nvidia.decode_tiles(target, wide=wide)
    else:
        block_n, num_warps, num_stages = _INTERPRETER_DECODE[wide]
    return DecodeFlags(splits, block_n, block_h, num_warps, num_stages)


def sparse_flags(
    target: Target, rows: int, num_kv_heads: int, group: int, topk: int, d_qk: int, d_v: int
) -> DecodeFlags:
    """Flags for `rows` query tokens each attending to `topk` selected tokens:
    decode's, with the splits a row takes capped so that what each split adds
    (its float32 partials written and read back, the query it reloads) stays
    within SPARSE_SPLIT_BUDGET of the selected K/V bytes of one KV head. Only
    where one program holds all the group's heads: with several head blocks
    each already re-reads the rows (MLA at 128 heads: 2x), and fewer splits
    would only starve the GPU."""
    flags = decode_flags(target, rows, num_kv_heads, group, topk, d_qk, d_v)
    if group > flags.block_h:
        return flags
    latent = d_qk > 256 and d_v < d_qk  # MLA: V is the latent K already holds
    row_bytes = topk * (d_qk if latent else d_qk + d_v) * 2
    per_split = group * ((d_v + 1) * 4 * 2 + d_qk * 2)
    cap = max(1, int(SPARSE_SPLIT_BUDGET * row_bytes // per_split))
    if cap >= flags.num_splits:
        return flags
    return replace(flags, num_splits=cap)


def extend_flags(target: Target, d_qk: int, d_v: int, elem_bytes: int = 2) -> ExtendFlags:
    """Extend flags for QK width `d_qk` and V width `d_v` on `target`, for K/V
    elements of `elem_bytes` (the tables are sized for 2-byte bf16/fp16)."""
    wide = max(d_qk, d_v) > 128
    latent = d_v > 256  # MLA's absorbed extend: V is the 512-wide latent
    fp32 = elem_bytes > 2  # the per-vendor tables hold float32 rows of their own
    if target.vendor == "amd":
        return ExtendFlags(*opt_flags_amd.extend_tiles(target, wide=wide, latent=latent, fp32=fp32))
    if target.vendor == "nvidia":
        tiles = opt_flags_nvidia.extend_tiles(target, wide=wide, latent=latent, fp32=fp32)
        return ExtendFlags(*tiles)
    return ExtendFlags(*_INTERPRETER_EXTEND)


# Values of the [BLOCK_S, D_V] float32 tile each thread of the split reduce holds
# at most: 4 warps held 64 splits x 512 (MLA) as 256 per thread on NVIDIA and
# spilled (sglang-amd audit: 1,728 bytes on sm_90, 344 on sm_100).
_REDUCE_VALUES_PER_THREAD = 64


def reduce_warps(target: Target, block_s: int, d_v: int) -> int:
    """num_warps of the split-KV reduce for `block_s` splits of width `d_v`."""
    lanes = max(1, block_s * d_v // _REDUCE_VALUES_PER_THREAD)
    warps = 1 << max(0, (-(-lanes // target.warp_size) - 1).bit_length())
    return max(4, min(16, warps))
