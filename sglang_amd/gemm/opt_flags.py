"""Launch flags of the grouped GEMM and of its two callers' block heights, per target.

Where it sits: `gemm/grouped_gemm.py` takes its block_n/block_k from
`grouped_gemm_flags`; `moe/fused.py` sizes its expert-aligned layout with
`moe_block_m` and `quant/mxfp4_linear.py` its one-group layout with
`linear_block_m` (block_m is the callers' choice because the slot layout they
build must be padded to it), and its top-k combine with `moe_combine_flags`. Per-arch values live in `opt_flags_amd.py` /
`opt_flags_nvidia.py` (in the style of triton_kernels' `opt_flags.py`); the Triton
interpreter is answered here. Flags depend on the `Target` only, so any known
target's flags can be computed on a CPU-only machine
(`target_info.target_for_arch`). Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_amd.gemm import opt_flags_amd, opt_flags_nvidia
from sglang_amd.target_info import Target

__all__ = [
    "CombineFlags",
    "GemmFlags",
    "grouped_gemm_flags",
    "linear_block_m",
    "moe_block_m",
    "moe_combine_flags",
    "quantize_a_in_gemm",
]

# The interpreter runs each program in numpy on the CPU: small tiles keep the
# tests fast. (block_n, block_k of float/W4A16, block_k of A4W4), and the block
# height of both callers -- the values chosen for CPU tensors before the split.
_INTERPRETER_GROUPED_GEMM: tuple[int, int, int] = (32, 32, 64)
_INTERPRETER_BLOCK_M = 16
_INTERPRETER_COMBINE: tuple[int, int] = (64, 1)

# A dense linear with at most this many rows (decode batches) runs one 16-row
# block height on every target: a taller block would mostly compute padding.
SMALL_ROWS = 16

# Rows of float activations up to which an A4W4 GEMM rounds them to MXFP4 itself
# (in its prologue) rather than after a quantizer launch. Every one of the GEMM's
# N / BLOCK_N programs then reads the float rows: for a dense linear (bf16, BLOCK_N
# 64) that is rows / 16 of its weight bytes, so only decode-sized inputs; for the
# MoE's first GEMM it stays under 1/8 of the expert weights it reads up to 64
# tokens (each slot reads its token's row, and the experts read grow with the
# slots), where the launch saved is worth more than the re-read.
_QUANTIZE_A_IN_GEMM_ROWS = {"linear": SMALL_ROWS, "moe": 64}


@dataclass(frozen=True)
class GemmFlags:
    block_n: int
    block_k: int
    num_warps: int = 4


@dataclass(frozen=True)
class CombineFlags:
    block_h: int
    num_warps: int


def grouped_gemm_flags(
    target: Target, *, a4w4: bool, gated: bool = False, quantize_a_rows: int = 0
) -> GemmFlags:
    """Grouped GEMM tiles on `target`; `a4w4` selects the kernel that takes MXFP4
    activations (tl.dot_scaled) instead of float ones, `gated` the MoE's first GEMM
    with SiLU-and-mul in its epilogue (two accumulators), `quantize_a_rows` the
    block height of an A4W4 launch that rounds float activations itself (0: none)."""
    vendor = {"amd": opt_flags_amd, "nvidia": opt_flags_nvidia}.get(target.vendor)
    if vendor is not None:
        block_n, block_k = vendor.grouped_gemm_tiles(target, a4w4=a4w4, gated=gated)
        warps = 4
        if a4w4 and quantize_a_rows >= 64:  # a tall float tile beside the accumulators
            warps = vendor.quantize_a_num_warps(target, gated=gated)
        return GemmFlags(block_n, block_k, warps)
    block_n, block_k, block_k_a4w4 = _INTERPRETER_GROUPED_GEMM
    return GemmFlags(block_n, block_k_a4w4 if a4w4 else block_k)


def moe_block_m(target: Target) -> int:
    """Block height of the fused MoE's expert-aligned slot layout on `target`."""
    if target.vendor == "amd":
        return opt_flags_amd.moe_block_m(target)
    if target.vendor == "nvidia":
        return opt_flags_nvidia.moe_block_m(target)
    return _INTERPRETER_BLOCK_M


def moe_combine_flags(target: Target) -> CombineFlags:
    """Tile of the fused MoE's top-k combine (moe/combine.py) on `target`."""
    if target.vendor == "amd":
        return CombineFlags(*opt_flags_amd.moe_combine(target))
    if target.vendor == "nvidia":
        return CombineFlags(*opt_flags_nvidia.moe_combine(target))
    return CombineFlags(*_INTERPRETER_COMBINE)


def quantize_a_in_gemm(caller: str, rows: int) -> bool:
    """Whether an A4W4 GEMM of `caller` ("linear" or "moe") over `rows` float
    activation rows quantizes them in its prologue (else: one quantizer launch first)."""
    return rows <= _QUANTIZE_A_IN_GEMM_ROWS[caller]


def linear_block_m(target: Target, rows: int) -> int:
    """Block height of the dense MXFP4 linear over `rows` input rows on `target`."""
    if rows <= SMALL_ROWS:
        return 16
    if target.vendor == "amd":
        return opt_flags_amd.linear_block_m(target)
    if target.vendor == "nvidia":
        return opt_flags_nvidia.linear_block_m(target)
    return _INTERPRETER_BLOCK_M
