"""Head-dimension rules shared by the Triton attention kernels.

Triton tiles need power-of-two widths. A QK width that is not one is split into
a power-of-two main part and a power-of-two extra part (MLA: 512 + 64, or
DeepSeek prefill 128 + 64), each loaded and multiplied separately. Never imports sglang.
"""

from __future__ import annotations


def is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def split_qk_dim(d: int) -> tuple[int, int] | None:
    """(main, extra) with main + extra == d, both powers of two (extra may be 0)."""
    if d < 16:
        return None
    if is_pow2(d):
        return d, 0
    main = 1 << (d.bit_length() - 1)
    extra = d - main
    return (main, extra) if is_pow2(extra) and extra >= 16 else None


def unsupported_dims(d_qk: int, d_v: int) -> str | None:
    """Why our Triton kernels cannot take these head dims, or None."""
    if split_qk_dim(d_qk) is None:
        return f"qk head_dim {d_qk} is not a power of two (or power of two + power of two >= 16)"
    if not is_pow2(d_v) or d_v < 16:
        return f"v head_dim {d_v} is not a power of two >= 16"
    return None
