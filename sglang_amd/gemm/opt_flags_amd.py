"""AMD (ROCm, CDNA) block sizes for the grouped GEMM and its callers.

Where it sits: `gemm/opt_flags.py` asks here when the target's vendor is "amd".
Keyed by `Target.arch`; an AMD arch without a row (gfx90a, RDNA, ...) gets
`DEFAULT_ARCH`'s. Never imports sglang.
"""

from __future__ import annotations

from sglang_amd.target_info import Target

# The row an AMD arch without its own row gets: the GPU numbers used before the
# tables were split by vendor and arch.
DEFAULT_ARCH = "gfx942"

# Grouped GEMM, per arch: (block_n, block_k of the float/W4A16 kernel, block_k
# of the A4W4 kernel). A4W4's K tile counts elements of operands packed two per
# byte (BLOCK_K // 2 bytes a row); it is twice the W4A16 one, as before the split.
# gfx950 holds gfx942's values until it is tuned
# (its native MXFP4 MFMA may want other tiles): change its row alone.
_GROUPED_GEMM: dict[str, tuple[int, int, int]] = {
    "gfx942": (64, 64, 128),
    "gfx950": (64, 64, 128),
}

# The MoE's first GEMM with SiLU-and-mul in its epilogue (gated: two float32
# accumulators, gate and up), per arch: (block_n, block_k float/W4A16, block_k A4W4).
# Same tiles as above: 2 x 64x64 float32 accumulators fit without spilling
# (checked by `sglang-amd audit`).
_GROUPED_GEMM_GATED: dict[str, tuple[int, int, int]] = {
    "gfx942": (64, 64, 128),
    "gfx950": (64, 64, 128),
}

# Warps of the A4W4 GEMM that rounds float activation tiles of 64+ rows to
# MXFP4 in its prologue, per arch: (gated, plain) -- the MoE's first GEMM, the
# dense linear's tall tile. It holds the float tile beside its accumulators;
# with 4 warps both spill on sm_90 (255 registers, `sglang-amd audit`).
# Every other launch runs 4 warps.
_QUANTIZE_A_NUM_WARPS: dict[str, tuple[int, int]] = {
    "gfx942": (8, 8),
    "gfx950": (8, 8),
}

# The MoE's top-k combine (moe/combine.py: one program per token and BLOCK_H
# hidden columns), per arch: (block_h, num_warps).
_MOE_COMBINE: dict[str, tuple[int, int]] = {
    "gfx942": (1024, 4),
    "gfx950": (1024, 4),
}

# Block height (expert-aligned rows per program) of the fused MoE, per arch.
_MOE_BLOCK_M: dict[str, int] = {
    "gfx942": 64,
    "gfx950": 64,
}

# Block height of the dense MXFP4 linear once it has more rows than its small
# tile (see `gemm/opt_flags.linear_block_m`), per arch.
_LINEAR_BLOCK_M: dict[str, int] = {
    "gfx942": 64,
    "gfx950": 64,
}


def grouped_gemm_tiles(target: Target, *, a4w4: bool, gated: bool = False) -> tuple[int, int]:
    """(block_n, block_k) of the grouped GEMM on `target` (`gated`: SiLU-and-mul epilogue)."""
    table = _GROUPED_GEMM_GATED if gated else _GROUPED_GEMM
    block_n, block_k, block_k_a4w4 = table.get(target.arch, table[DEFAULT_ARCH])
    return block_n, block_k_a4w4 if a4w4 else block_k


def quantize_a_num_warps(target: Target, *, gated: bool) -> int:
    """num_warps of an A4W4 GEMM on `target` that rounds a tall float tile in its prologue."""
    row = _QUANTIZE_A_NUM_WARPS.get(target.arch, _QUANTIZE_A_NUM_WARPS[DEFAULT_ARCH])
    return row[0] if gated else row[1]


def moe_combine(target: Target) -> tuple[int, int]:
    """(block_h, num_warps) of the MoE's top-k combine on `target`."""
    return _MOE_COMBINE.get(target.arch, _MOE_COMBINE[DEFAULT_ARCH])


def moe_block_m(target: Target) -> int:
    """Rows per program of the fused MoE's expert-aligned layout on `target`."""
    return _MOE_BLOCK_M.get(target.arch, _MOE_BLOCK_M[DEFAULT_ARCH])


def linear_block_m(target: Target) -> int:
    """Rows per program of the dense MXFP4 linear with many rows on `target`."""
    return _LINEAR_BLOCK_M.get(target.arch, _LINEAR_BLOCK_M[DEFAULT_ARCH])
