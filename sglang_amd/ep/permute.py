"""The Triton tier of the communicator's two local permutes (`ep_permute.pack`/`.combine`).

Where it sits: `dispatch_combine.py` calls the tiered ops around its all-to-alls;
the torch tier (the oracle) is `permute_reference.py`, and both hand back the
same bytes and the same sums.

  pack_triton(x [T, H], weights [T, k], indices [T, k], layout, E_local, W, capacity)
      -> plan.Packed, in two launches: `_ep_plan_kernel` (one program: each token's
         slot per rank as a running count over the tokens, the counts; no host
         read), then `_ep_pack_kernel` writing each token's wire record straight
         into its row of every destination rank (high throughput: the exact send
         buffer, rank-grouped, sized by the one host read of the counts the
         all-to-all needs anyway; low latency: W blocks of `capacity` rows, the
         padding zeroed by the same launch, nothing read on the host, so it can be
         captured in a CUDA graph)
  combine_triton(back [R, H], plan, x_dtype, capacity) -> [T, H] x_dtype, one launch
         (`_ep_combine_kernel`): each token's returned rows summed in rank order,
         rounded to x_dtype after each add as the torch tier's `out +=` does

`capacity` None is the high-throughput layout, an int the low-latency one.
Launch flags: `ep/opt_flags.py`. Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.ep import wire
from sglang_amd.ep.config import FP8_BLOCK, MXFP4_BLOCK
from sglang_amd.ep.opt_flags import PermuteFlags, permute_flags
from sglang_amd.ep.permute_details._combine import _ep_combine_kernel
from sglang_amd.ep.permute_details._pack import _ep_pack_kernel
from sglang_amd.ep.permute_details._plan import _ep_plan_kernel
from sglang_amd.ep.plan import Packed, SendPlan
from sglang_amd.target_info import current_target

__all__ = [
    "combine_refusal",
    "combine_triton",
    "pack_refusal",
    "pack_rows_triton",
    "pack_triton",
    "plan_triton",
]

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
_WIRE = {"none": 0, "fp8": 1, "mxfp4": 2}
_ROUND = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def pack_refusal(
    x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, *args: object, **kw: object
) -> str | None:
    """Why the Triton pack cannot take this call (None: it can)."""
    if x.dtype not in _FLOATS:
        return f"x is {x.dtype}; the Triton pack takes float32, bfloat16 or float16"
    if not weights.is_floating_point():
        return f"routing weights are {weights.dtype}; the Triton pack takes a float dtype"
    if indices.dtype not in (torch.int32, torch.int64):
        return f"expert ids are {indices.dtype}; the Triton pack takes int32 or int64"
    return None


def combine_refusal(
    back: torch.Tensor, plan: SendPlan, x_dtype: torch.dtype, *args: object, **kw: object
) -> str | None:
    """Why the Triton combine cannot take this call (None: it can)."""
    for what, dtype in (("returned rows", back.dtype), ("token dtype", x_dtype)):
        if dtype not in _FLOATS:
            return f"{what} {dtype}; the Triton combine takes float32, bfloat16 or float16"
    return None


def _gaps(layout: wire.RowLayout) -> tuple[tuple[int, int], ...]:
    """(byte offset, length) of each run of padding in a record: between fields (to
    4-byte starts) and after the last (to the 16-byte row); each under 16 bytes."""
    spans = sorted((start, start + size) for start, size, _ in layout.offsets().values())
    ends = [s for s, _ in spans[1:]] + [layout.row_bytes]
    return tuple((end, nxt - end) for (_, end), nxt in zip(spans, ends, strict=True) if nxt > end)


def _block_h(flags: PermuteFlags, hidden: int, wire_fmt: str) -> int:
    least = {"fp8": FP8_BLOCK, "mxfp4": MXFP4_BLOCK}.get(wire_fmt, 1)
    return max(least, min(flags.block_h, triton.next_power_of_2(hidden)))


def plan_triton(
    indices: torch.Tensor, experts_per_rank: int, world_size: int, flags: PermuteFlags
) -> SendPlan:
    """indices [T, k] int (-1: none) -> SendPlan (slot int32, counts int64), one launch."""
    tokens, k = indices.shape
    ids = indices if indices.stride(1) == 1 else indices.contiguous()
    slot = torch.empty(tokens, world_size, dtype=torch.int32, device=ids.device)
    counts = torch.empty(world_size, dtype=torch.int64, device=ids.device)
    k_pad, w_pad = triton.next_power_of_2(k), triton.next_power_of_2(world_size)
    block_t = min(256, max(16, triton.next_power_of_2(flags.plan_tile // (k_pad * w_pad))))
    _ep_plan_kernel[(1,)](
        ids, slot, counts, tokens, ids.stride(0), experts_per_rank,
        TOPK=k, K_PAD=k_pad, WORLD=world_size, W_PAD=w_pad, BLOCK_T=block_t,
        num_warps=flags.plan_warps,
    )  # fmt: skip
    return SendPlan(slot=slot, counts=counts)


def pack_triton(
    x: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    layout: wire.RowLayout,
    experts_per_rank: int,
    world_size: int,
    capacity: int | None = None,
    *,
    out: torch.Tensor | None = None,
    flags: PermuteFlags | None = None,
) -> Packed:
    """The send buffer of one dispatch (see `plan.Packed` for its two layouts). `out`:
    a uint8 [>= rows, row_bytes] buffer to write into (its first rows are returned)."""
    if capacity is not None and x.shape[0] > capacity:
        raise ValueError(f"pack: {x.shape[0]} tokens past the low-latency capacity {capacity}")
    flags = flags or permute_flags(current_target(x.device))
    plan = plan_triton(indices, experts_per_rank, world_size, flags)
    send_counts = None
    if capacity is None:
        send_counts = plan.counts.tolist()  # the all-to-all's split sizes
        rows = sum(send_counts)
    else:
        rows = world_size * capacity
    if out is None:
        out = torch.empty(rows, layout.row_bytes, dtype=torch.uint8, device=x.device)
    elif out.dtype != torch.uint8 or out.shape[0] < rows or out.shape[1:] != (layout.row_bytes,):
        raise ValueError(f"pack: out {tuple(out.shape)} {out.dtype}; need uint8 [>= {rows}, "
                         f"{layout.row_bytes}]")  # fmt: skip
    buf = out[:rows]
    pack_rows_triton(x, weights, indices, plan, layout, buf, capacity, flags)
    return Packed(buf, plan, send_counts)


def pack_rows_triton(
    x: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    plan: SendPlan,
    layout: wire.RowLayout,
    buf: torch.Tensor,
    capacity: int | None,
    flags: PermuteFlags,
) -> None:
    """The pack launch alone: every token's record into `buf` [rows, row_bytes] uint8
    at the rows `plan` gives it (low latency: the padding rows zeroed too)."""
    tokens, hidden = x.shape
    programs = tokens if capacity is None else capacity
    if not (buf.shape[0] and programs):
        return
    x = x if x.stride(1) == 1 else x.contiguous()
    weights = weights if weights.stride(1) == 1 else weights.contiguous()
    indices = indices if indices.stride(1) == 1 else indices.contiguous()
    offsets = layout.offsets()
    block_h = _block_h(flags, hidden, layout.wire)
    view_f32 = buf.view(torch.float32)
    k = indices.shape[1]
    _ep_pack_kernel[(programs, triton.cdiv(hidden, block_h))](
        x, weights, indices, plan.slot.contiguous(), plan.counts,
        buf.view(x.dtype) if layout.wire == "none" else buf,
        buf if layout.wire == "mxfp4" else view_f32,
        view_f32, buf.view(torch.int32), buf,
        tokens, hidden, x.stride(0), weights.stride(0), indices.stride(0), capacity or 0,
        ROW_BYTES=layout.row_bytes,
        X_OFF=offsets["x"][0],
        S_OFF=offsets["scales"][0] if "scales" in offsets else 0,
        W_OFF=offsets["weights"][0],
        I_OFF=offsets["ids"][0],
        GAPS=_gaps(layout),
        WIRE=_WIRE[layout.wire],
        TOPK=k,
        K_PAD=triton.next_power_of_2(k),
        WORLD=plan.world_size,
        LOW_LATENCY=capacity is not None,
        BLOCK_H=block_h,
        num_warps=flags.num_warps,
    )  # fmt: skip


def combine_triton(
    back: torch.Tensor,
    plan: SendPlan,
    x_dtype: torch.dtype,
    capacity: int | None = None,
    *,
    out: torch.Tensor | None = None,
    flags: PermuteFlags | None = None,
) -> torch.Tensor:
    """back: the rows the ranks returned, grouped by rank as `plan` sent them (high
    throughput: sum(counts) rows; low latency: W * capacity) -> [T, H] x_dtype
    (`out` if given, overwritten)."""
    tokens, world = plan.slot.shape
    hidden = back.shape[1]
    if out is None:
        out = torch.empty(tokens, hidden, dtype=x_dtype, device=back.device)
    if not tokens:
        return out
    if not back.shape[0]:  # nothing was sent: every slot is -1, no row is read
        back = back.new_zeros(1, hidden)
    if back.stride(1) != 1:
        back = back.contiguous()
    if out.stride(1) != 1:
        raise ValueError(f"combine: out must have unit stride along H, got {out.stride()}")
    flags = flags or permute_flags(current_target(back.device))
    block_h = min(flags.block_h, triton.next_power_of_2(hidden))
    _ep_combine_kernel[(tokens, triton.cdiv(hidden, block_h))](
        back, plan.slot.contiguous(), plan.counts, out, hidden, back.stride(0), out.stride(0), capacity or 0,
        WORLD=world, LOW_LATENCY=capacity is not None, ROUND=_ROUND[x_dtype], BLOCK_H=block_h,
        num_warps=flags.num_warps,
    )  # fmt: skip
    return out
