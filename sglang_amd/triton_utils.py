"""Small @triton.jit helpers shared by the attention kernels.

`mma` exists because Triton 3.8's interpreter (TRITON_INTERPRET=1, how the
kernels are tested on CPU) returns garbage from `tl.dot` on bfloat16 operands;
under the interpreter bf16 tiles are multiplied in float32 instead. On a GPU
`UPCAST` is False and the dot runs on the native bf16 tensor cores.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglang_amd.target_info import triton_interpret


@triton.jit
def mma(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


def dot_flags(*dtypes: torch.dtype) -> dict[str, object]:
    """PRECISION/UPCAST constexprs for kernels whose tiles have these dtypes.

    PRECISION is "ieee" everywhere: float32 tiles must multiply exactly (they are
    how the float32 path matches HF to 1e-3), and for bf16/fp16 tiles Triton
    ignores it, while "tf32" is not a valid value at all on gfx950 (MI355X
    accepts only ieee, bf16x3, bf16x6), where it stopped every kernel compiling.
    """
    return {
        "PRECISION": "ieee",
        # The interpreter's bf16 dot is wrong (see above) and it has no float8 dot.
        "UPCAST": triton_interpret()
        and any(d in (torch.bfloat16, torch.float8_e4m3fn) for d in dtypes),
    }


@triton.jit
def scale_scores(s, scale_log2, logit_cap, HAS_CAP: tl.constexpr):
    """Raw q.k scores -> base-2 logits; with HAS_CAP, cap * tanh(score / cap) first
    (tanh(y) = 2 sigmoid(2y) - 1; Triton has no tanh on every backend)."""
    if HAS_CAP:
        s = s * (scale_log2 * 0.6931471805599453)
        s = logit_cap * (2.0 * tl.sigmoid(2.0 * s / logit_cap) - 1.0)
        return s * 1.4426950408889634
    return s * scale_log2
