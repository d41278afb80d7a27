"""The torch tier of the communicator's two local permutes: the oracle of the Triton tier.

Where it sits: `tiers.OPS["ep_permute.pack"]` / `["ep_permute.combine"]` run these
on any device (and `ep/permute.py`'s Triton kernels where Triton runs); the
communicator (`dispatch_combine.py`) calls the op, never a tier.

  pack_torch(x [T, H], weights [T, k], indices [T, k], layout, E_local, W, capacity)
      -> Packed: plan_sends (owner per slot, a [T, W + 1] scatter, a cumsum),
         wire.encode (one [T, row_bytes] record a token), then the high-throughput
         gather of the rows grouped by rank (a host read: their number), or the
         low-latency scatter of each record, repeated W times, into a zeroed
         [W * capacity + 1] buffer whose last row takes the pairs not sent
  combine_torch(back [R, H], plan, x_dtype, capacity) -> [T, H] in x_dtype: back
         converted to x_dtype, a zero row appended, then one gather and one add a
         rank, in rank order (so both modes and every device sum alike)

`capacity` None is the high-throughput layout, an int the low-latency one.
Never imports sglang.
"""

from __future__ import annotations

import torch

from sglang_amd.ep import wire
from sglang_amd.ep.plan import Packed, SendPlan, plan_sends


def pack_torch(
    x: torch.Tensor,
    weights: torch.Tensor,
    indices: torch.Tensor,
    layout: wire.RowLayout,
    experts_per_rank: int,
    world_size: int,
    capacity: int | None = None,
) -> Packed:
    """The send buffer of one dispatch (see `plan.Packed` for its two layouts)."""
    plan = plan_sends(indices, experts_per_rank, world_size)
    rows = wire.encode(layout, x, weights, indices)
    if capacity is None:
        return Packed(rows[plan.grouped_tokens()], plan, plan.counts.tolist())
    if x.shape[0] > capacity:
        raise ValueError(f"pack: {x.shape[0]} tokens past the low-latency capacity {capacity}")
    buf = rows.new_zeros(world_size * capacity + 1, rows.shape[1])
    flat = plan.flat_slots(capacity)
    buf[flat.reshape(-1)] = rows.repeat_interleave(world_size, 0)
    return Packed(buf[:-1], plan)


def combine_torch(
    back: torch.Tensor, plan: SendPlan, x_dtype: torch.dtype, capacity: int | None = None
) -> torch.Tensor:
    """back: the rows the ranks returned, grouped by rank as `plan` sent them
    (high throughput: sum(counts) rows; low latency: W * capacity) -> [T, H]."""
    hidden = back.shape[1]
    if capacity is None:
        starts = plan.counts.cumsum(0) - plan.counts
        slots = plan.rows_in(starts, spare=back.shape[0])
    else:
        slots = plan.flat_slots(capacity)
    back = torch.cat([back.to(x_dtype), back.new_zeros(1, hidden, dtype=x_dtype)])
    # One add per rank in rank order: both modes and every device sum alike.
    out = torch.zeros(plan.num_tokens, hidden, dtype=x_dtype, device=back.device)
    for r in range(plan.world_size):
        out += back[slots[:, r]]
    return out
