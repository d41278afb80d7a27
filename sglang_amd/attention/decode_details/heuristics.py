"""Launch parameters for split-KV decode, per vendor.

The split count is what keeps small-batch, long-context decode bandwidth-bound:
with B sequences x H_kv heads there may be far fewer programs than compute
units, so each sequence is cut into splits until the grid covers about two
waves, but never into splits shorter than `MIN_TOKENS_PER_SPLIT` (below that the
partial-output traffic and the reduce cost more than the parallelism gains).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_amd.target_info import device_kind

MIN_TOKENS_PER_SPLIT = 256
MAX_SPLITS = 64
WAVES = 2


@dataclass(frozen=True)
class DecodeFlags:
    num_splits: int
    block_n: int
    block_h: int
    num_warps: int
    num_stages: int
    # A sequence uses ceil(kv_len / min_split_len) of the grid's splits at most.
    min_split_len: int = MIN_TOKENS_PER_SPLIT


def compute_units(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # interpreter: keep the grid small, but still exercise splitting


def choose_num_splits(programs: int, max_kv_len: int, units: int) -> int:
    """Splits per sequence so the grid covers about WAVES waves of `units`."""
    want = -(-WAVES * units // max(programs, 1))
    by_length = max(1, -(-max_kv_len // MIN_TOKENS_PER_SPLIT))
    return max(1, min(want, by_length, MAX_SPLITS))


def decode_flags(
    device: torch.device,
    batch: int,
    num_kv_heads: int,
    group: int,
    max_kv_len: int,
    d_qk: int,
    d_v: int,
) -> DecodeFlags:
    block_h = max(16, min(64, 1 << max(group - 1, 0).bit_length()))
    wide = d_qk > 256 or d_v > 256  # MLA latent: keep the [BLOCK_H, D_V] accumulator in registers
    if wide:
        block_h = 16
    head_blocks = -(-group // block_h)
    programs = batch * num_kv_heads * head_blocks
    splits = choose_num_splits(programs, max_kv_len, compute_units(device))
    if device_kind(device) == "rocm":
        # 64-wide wavefronts: fewer, fatter warps and no software pipelining.
        return DecodeFlags(splits, 32 if wide else 64, block_h, 4 if wide else 4, 1)
    return DecodeFlags(splits, 32 if wide else 64, block_h, 8 if wide else 4, 2)
