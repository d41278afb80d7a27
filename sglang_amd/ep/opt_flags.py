"""Launch flags of the communicator's local kernels (plan, pack, combine), per target.

Where it sits: `ep/permute.py` asks `permute_flags(current_target(device))` before
each launch. Per-vendor, per-arch rows below (in the style of
`gemm/opt_flags*.py`, in one module: two small tables); an arch without a row gets
its vendor's default, the interpreter its own. Flags depend on the `Target` only,
so `sglang-amd audit` compiles any target's launches on a CPU-only machine.

The pack and the combine are copies: one program per (token, BLOCK_H hidden
columns), each moving a few KB, so the tiles only need to be wide enough for
full-width loads and to give a decode batch enough programs (DeepSeek-V3's 7168
columns: 7 programs a token at 1024). Not measured on a GPU yet: the values are
the MoE top-k combine's (`moe/combine.py`), the closest kernel of the same shape.
Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglang_amd.target_info import Target

__all__ = ["PermuteFlags", "permute_flags"]


@dataclass(frozen=True)
class PermuteFlags:
    """block_h: hidden columns a pack/combine program moves (a power of two; the pack
    widens it to the wire's scale block); num_warps: of the pack and the combine;
    plan_tile / plan_warps: (token, expert-slot, rank) elements the plan kernel (one
    program, latency-bound) compares at once, and its warps."""

    block_h: int
    num_warps: int
    plan_tile: int = 8192
    plan_warps: int = 4


# (block_h, num_warps) per arch; DEFAULT_ARCH's row for an arch without one.
# AMD: 2 wave64 warps, so a thread's share of a 1024-column bf16 row is 16 bytes
# (128-bit loads, `sglang-amd audit`; 4 warps gave 64-bit ones).
_AMD: dict[str, tuple[int, int]] = {"gfx942": (1024, 2), "gfx950": (1024, 2)}
_NVIDIA: dict[str, tuple[int, int]] = {"sm_90": (1024, 4), "sm_100": (1024, 4)}
_DEFAULT_ARCH = {"amd": "gfx942", "nvidia": "sm_90"}
# The interpreter runs each program in numpy: 256 columns keep the tests' hidden
# sizes (256-512) at one or two programs a token while still crossing a chunk edge.
_INTERPRETER = PermuteFlags(256, 4, 2048, 4)


def permute_flags(target: Target) -> PermuteFlags:
    """Tiles of the pack and combine kernels on `target`."""
    table = {"amd": _AMD, "nvidia": _NVIDIA}.get(target.vendor)
    if table is None:
        return _INTERPRETER
    return PermuteFlags(*table.get(target.arch, table[_DEFAULT_ARCH[target.vendor]]))
