"""Top-k combine of the fused MoE: out[t] = sum_j y[t * k + j], in float32.

Where it sits: the last of `moe/fused.py`'s launches. The second grouped GEMM
has already multiplied each slot's row by its router weight and stored it in
the activation dtype; here one Triton launch (`combine_details/_combine.py`)
adds the k rows of each token in a fixed order (deterministic, no atomics) and
writes [T, H] in the output dtype. Slots routed nowhere (ids outside [0, E))
hold no data and are skipped. Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.gemm.opt_flags import moe_combine_flags
from sglang_amd.moe.combine_details._combine import _combine_kernel
from sglang_amd.target_info import current_target


def combine_topk(
    y: torch.Tensor, topk_ids: torch.Tensor, num_experts: int, out: torch.Tensor
) -> torch.Tensor:
    """y [T * k, H] float (unrouted rows may hold anything); topk_ids [T, k] int;
    out [T, H] float, overwritten with the per-token sums. Returns out."""
    tokens, k = topk_ids.shape
    hidden = y.shape[1]
    ids = topk_ids.reshape(-1)
    if ids.stride(0) != 1:
        ids = ids.contiguous()
    if tokens:
        flags = moe_combine_flags(current_target(y.device))
        block_h = min(flags.block_h, triton.next_power_of_2(hidden))
        _combine_kernel[(tokens, triton.cdiv(hidden, block_h))](
            y,
            ids,
            out,
            num_experts,
            hidden,
            y.stride(0),
            out.stride(0),
            TOPK=k,
            BLOCK_H=block_h,
            num_warps=flags.num_warps,
        )
    return out
