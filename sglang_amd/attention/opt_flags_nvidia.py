"""NVIDIA (CUDA) launch flags for the attention kernels.

Where it sits: `attention/opt_flags.py` computes what every vendor shares (the
split count, the head block) and asks here for the per-arch tiles when the
target's vendor is "nvidia". Keyed by `Target.arch`; an NVIDIA arch without a
row (sm_80, sm_120, ...) gets `DEFAULT_ARCH`'s. Never imports sglang.
"""

from __future__ import annotations

from sglang_amd.target_info import Target

# The row an NVIDIA arch without its own row gets: the CUDA numbers used before
# the tables were split by arch.
DEFAULT_ARCH = "sm_90"

# Split-KV decode, per arch: (normal heads, wide heads), each
# (block_n, num_warps, num_stages). Two stages overlap the next K/V tile's load
# with this one's math. Wide heads (the MLA latent, > 256) take twice the warps
# so the [BLOCK_H, D_V] accumulator fits in registers.
# sm_90: measured on an H200 (scripts/sweep_attention.py, 2026-11-30, bf16, CUDA
# graphs, cache-cold): 128-key tiles beat 64 at every GQA d128 size (batch 8 at
# 32K keys: 262 us against 446; batch 1 at 8K: 26 against 36), 64-key latent
# tiles beat 32 (16 heads, batch 8 at 8K: 49 us against 60).
# sm_100 holds the values sm_90 had before that measurement until it is measured.
_DECODE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "sm_90": ((128, 4, 2), (64, 8, 2)),
    "sm_100": ((64, 4, 2), (32, 8, 2)),
}

# MLA decode with more than 16 query heads per KV head (DeepSeek at tp <= 4, or
# 128 heads with DP attention), per arch: (most heads per program, block_n,
# num_warps, num_stages). A program serves up to 64 heads, so each split's latent
# is read by ceil(heads / 64) programs instead of heads / 16 (128 heads: 2 reads,
# was 8), FlashMLA's layout. 8 warps, 16-key tiles, two stages: 208 registers on
# sm_90 and 216 on sm_100, no spill (sglang-amd audit; one stage spilled 48 bytes
# on sm_100, 32-key tiles 120-296).
# sm_90: 32-key tiles, measured on an H200 (128 heads, batch 1 at 8K keys: 48 us
# against 62 with 16-key tiles; 64-key tiles ran 37 us but spill 48 bytes).
_DECODE_LATENT_HEADS: dict[str, tuple[int, int, int, int]] = {
    "sm_90": (64, 32, 8, 2),
    "sm_100": (64, 16, 8, 2),
}

# Extend (prefill over a cached prefix), per arch: (normal heads, wide heads),
# each (block_m, block_n, num_warps, num_stages); wide is a QK or V width > 128,
# where deeper pipelining would not fit the tiles in shared memory.
_EXTEND: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "sm_90": ((128, 64, 8, 3), (64, 32, 4, 2)),
    "sm_100": ((128, 64, 8, 3), (64, 32, 4, 2)),
}
# Extend over an MLA latent (V width > 256: DeepSeek's absorbed prefix-extend,
# 512 + 64 / 512). The wide row's [64, 512] float32 accumulator on 4 warps spilled
# (sglang-amd audit: 2,104 bytes on sm_90, 896 on sm_100); 8 warps halve it per
# thread. sm_90 keeps 64 rows (one wgmma warpgroup tile, no spill); on sm_100 64
# rows still spill 48 bytes, so 32 rows (mma.sync, 184 registers, no spill).
_EXTEND_LATENT: dict[str, tuple[int, int, int, int]] = {
    "sm_90": (64, 32, 8, 2),
    "sm_100": (32, 32, 8, 2),
}


# Extend with float32 K/V (--dtype float32), every NVIDIA arch: (normal, wide,
# latent). The bf16 rows ask for twice the shared memory in float32 (H200 refused
# the latent's: 295,168 > 232,448 bytes) and float32 dots hold more registers;
# these are the largest tiles the compile audit found without a spill on sm_90
# and sm_100 (the 192-wide prefill spills at 32 rows: 16 rows on 8 warps).
_EXTEND_FP32 = ((32, 16, 4, 1), (16, 16, 8, 1), (32, 16, 8, 1))


def decode_tiles(target: Target, *, wide: bool) -> tuple[int, int, int]:
    """(block_n, num_warps, num_stages) of split-KV decode on `target`."""
    normal, wide_row = _DECODE.get(target.arch, _DECODE[DEFAULT_ARCH])
    return wide_row if wide else normal


def decode_latent_heads_tiles(target: Target) -> tuple[int, int, int, int]:
    """(most heads per program, block_n, num_warps, num_stages) of MLA decode with
    more than 16 query heads on `target`."""
    return _DECODE_LATENT_HEADS.get(target.arch, _DECODE_LATENT_HEADS[DEFAULT_ARCH])


def extend_tiles(
    target: Target, *, wide: bool, latent: bool = False, fp32: bool = False
) -> tuple[int, int, int, int]:
    """(block_m, block_n, num_warps, num_stages) of extend on `target` (`fp32`:
    float32 K/V)."""
    if fp32:
        return _EXTEND_FP32[2 if latent else 1 if wide else 0]
    if latent:
        return _EXTEND_LATENT.get(target.arch, _EXTEND_LATENT[DEFAULT_ARCH])
    normal, wide_row = _EXTEND.get(target.arch, _EXTEND[DEFAULT_ARCH])
    return wide_row if wide else normal
