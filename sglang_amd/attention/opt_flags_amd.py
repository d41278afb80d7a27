"""AMD (ROCm, CDNA) launch flags for the attention kernels.

Where it sits: `attention/opt_flags.py` computes what every vendor shares (the
split count, the head block) and asks here for the per-arch tiles when the
target's vendor is "amd". Keyed by `Target.arch`; an AMD arch without a row
(gfx90a, RDNA, ...) gets `DEFAULT_ARCH`'s. Never imports sglang.
"""

from __future__ import annotations

from sglang_amd.target_info import Target

# The row an AMD arch without its own row gets: the ROCm numbers used before the
# tables were split by arch.
DEFAULT_ARCH = "gfx942"

# Split-KV decode, per arch: (normal heads, wide heads), each
# (block_n, num_warps, num_stages). 64-wide wavefronts: fewer, fatter warps and
# no software pipelining (num_stages 1). Wide heads (the MLA latent, > 256) take
# half the keys per tile so the [BLOCK_H, D_V] accumulator stays in registers.
# gfx950 holds gfx942's normal row until it is tuned: change its row alone.
_DECODE: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "gfx942": ((64, 4, 1), (32, 4, 1)),
    # Wide (MLA) at 16 keys: the latent tile that serves as K and V kept 32-key
    # tiles at one wave per SIMD on CDNA4 (sglang-amd audit: 256 VGPRs + 36 AGPRs).
    "gfx950": ((64, 4, 1), (16, 4, 1)),
}

# MLA decode with more than 16 query heads per KV head (DeepSeek at tp <= 4, or
# 128 heads with DP attention), per arch: (most heads per program, block_n,
# num_warps, num_stages). A program serves up to 64 heads, so each split's latent
# is read by ceil(heads / 64) programs instead of heads / 16 (128 heads: 2 reads,
# was 8), FlashMLA's layout. 8 warps and 16-key tiles hold the [64, 512] float32
# accumulator: 223 VGPRs on gfx942, 238 on gfx950, no scratch, 2 waves per SIMD
# (sglang-amd audit; 32-key tiles spill 204-840 bytes).
_DECODE_LATENT_HEADS: dict[str, tuple[int, int, int, int]] = {
    "gfx942": (64, 16, 8, 1),
    "gfx950": (64, 16, 8, 1),
}

# Extend (prefill over a cached prefix), per arch: (normal heads, wide heads),
# each (block_m, block_n, num_warps, num_stages); wide is a QK or V width > 128.
_EXTEND: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "gfx942": ((128, 64, 4, 1), (64, 32, 4, 1)),
    "gfx950": ((128, 64, 4, 1), (64, 32, 4, 1)),
}


def decode_tiles(target: Target, *, wide: bool) -> tuple[int, int, int]:
    """(block_n, num_warps, num_stages) of split-KV decode on `target`."""
    normal, wide_row = _DECODE.get(target.arch, _DECODE[DEFAULT_ARCH])
    return wide_row if wide else normal


def decode_latent_heads_tiles(target: Target) -> tuple[int, int, int, int]:
    """(most heads per program, block_n, num_warps, num_stages) of MLA decode with
    more than 16 query heads on `target`."""
    return _DECODE_LATENT_HEADS.get(target.arch, _DECODE_LATENT_HEADS[DEFAULT_ARCH])


# Extend with float32 K/V (--dtype float32), CDNA3 and CDNA4 alike: the bf16 rows
# would ask for twice the LDS (the latent's 131,072 bytes against gfx942's 65,536).
# 32 rows of 16 keys on 4 warps: no spill, within LDS, at every width (compile audit).
_EXTEND_FP32 = (32, 16, 4, 1)


def extend_tiles(
    target: Target, *, wide: bool, latent: bool = False, fp32: bool = False
) -> tuple[int, int, int, int]:
    """(block_m, block_n, num_warps, num_stages) of extend on `target`. An MLA
    latent (V width > 256) takes the wide row: it does not spill on CDNA3/CDNA4
    (sglang-amd audit), at one wave per SIMD. `fp32`: float32 K/V."""
    if fp32:
        return _EXTEND_FP32
    normal, wide_row = _EXTEND.get(target.arch, _EXTEND[DEFAULT_ARCH])
    return wide_row if wide else normal
