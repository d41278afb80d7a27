"""The gated GEMM's activations as jit functions, handed to the kernels as a constexpr.

`gemm/grouped_gemm.py` passes one of these as the kernels' `GLU` argument (the
way triton_kernels passes a fused activation), so both grouped GEMM kernels share
one definition and a launch compiles only the one it uses. Each takes the float32
gate and up tiles (bias already added) and two runtime scalars. The definitions
are `gemm/activation.py`'s; NaN propagates through the clamps (an E8M0 NaN scale
must reach the output as in the torch tier).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def silu_glu(gate, up, alpha, limit):
    """SiLU(gate) * up (alpha, limit unused)."""
    return gate * tl.sigmoid(gate) * up


@triton.jit
def gpt_oss_glu(gate, up, alpha, limit):
    """gpt-oss: g = min(gate, limit); u = clamp(up, -limit, limit); g * sigmoid(alpha g) * (u + 1)."""
    gate = tl.minimum(gate, limit, propagate_nan=tl.PropagateNan.ALL)
    up = tl.clamp(up, -limit, limit, propagate_nan=tl.PropagateNan.ALL)
    return gate * tl.sigmoid(gate * alpha) * (up + 1.0)
