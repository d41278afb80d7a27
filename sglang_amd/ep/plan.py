"""Where each local token goes: once to every rank owning at least one of its experts.

Input: the router's global expert ids [T, k] (-1: no expert). Global expert e
lives on rank e // experts_per_rank. Output, all on the tokens' device and of
fixed shape (no host read, so the low-latency mode stays capturable):

  slot   [T, W] int   token t's row among the rows sent to rank r (token order),
                      -1 where t is not sent to r
  counts [W] int64    rows sent to each rank

A token with two experts on one rank is sent there once; the receiving rank sees
both ids and sums both experts' weighted outputs into the one row it returns.
`plan_sends` is the torch tier's plan (the oracle); the Triton tier's plan kernel
(`permute_details/_plan.py`) writes the same slot (int32) and counts. `Packed`
is what either tier of the `ep_permute.pack` op hands the communicator.
Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SendPlan:
    """slot [T, W] (-1: not sent) and counts [W] int64."""

    slot: torch.Tensor
    counts: torch.Tensor

    @property
    def dest(self) -> torch.Tensor:
        """[T, W] bool: token t is sent to rank r."""
        return self.slot >= 0

    @property
    def num_tokens(self) -> int:
        return self.slot.shape[0]

    @property
    def world_size(self) -> int:
        return self.slot.shape[1]

    def grouped_tokens(self) -> torch.Tensor:
        """Token index of each sent row, grouped by destination rank then token order
        (the high-throughput send order). Reads the host (its length)."""
        return self.dest.t().nonzero()[:, 1]

    def rows_in(self, starts: torch.Tensor, spare: int) -> torch.Tensor:
        """[T, W] row of each (token, rank) in a buffer where rank r's rows begin at
        starts[r]; pairs not sent land on row `spare`."""
        rows = self.slot + starts
        return torch.where(self.dest, rows, torch.full_like(rows, spare))

    def flat_slots(self, capacity: int) -> torch.Tensor:
        """`rows_in` for a [W * capacity (+1)] buffer of `capacity` rows a rank, the
        spare row last (the low-latency layout)."""
        world = self.world_size
        ranks = torch.arange(world, device=self.slot.device)
        return self.rows_in(ranks * capacity, world * capacity)


@dataclass(frozen=True)
class Packed:
    """The send side of one dispatch, as either tier of `ep_permute.pack` builds it.

    buf: [rows, row_bytes] uint8, every row a `wire.RowLayout` record: high
    throughput, sum(counts) rows grouped by destination rank (rank r's at
    starts[r] + slot, starts the exclusive prefix sum of counts); low latency,
    world x capacity rows, rank r's block from r * capacity, its rows past
    counts[r] all zero. plan: where each token went. send_counts: rows to each rank
    read on the host (high throughput only; the all-to-all's split sizes)."""

    buf: torch.Tensor
    plan: SendPlan
    send_counts: list[int] | None = None


def plan_sends(indices: torch.Tensor, experts_per_rank: int, world_size: int) -> SendPlan:
    """indices: [T, k] integer global expert ids, -1 for an empty slot."""
    if indices.dim() != 2:
        raise ValueError(f"plan_sends: indices must be [T, k], got {tuple(indices.shape)}")
    ids = indices.long()
    owner = torch.where(ids >= 0, ids // experts_per_rank, torch.full_like(ids, world_size))
    owner = owner.clamp(max=world_size)  # ids past the last expert: sent nowhere
    hit = torch.zeros(ids.shape[0], world_size + 1, dtype=torch.bool, device=ids.device)
    dest = hit.scatter_(1, owner, True)[:, :world_size]
    slot = torch.where(dest, dest.long().cumsum(0) - 1, -1)
    return SendPlan(slot=slot, counts=dest.sum(0))


def local_expert_ids(indices: torch.Tensor, rank: int, experts_per_rank: int) -> torch.Tensor:
    """Global ids [R, k] -> this rank's local ids (0 .. E_local-1), -1 for experts elsewhere."""
    ids = indices.long()
    first = rank * experts_per_rank
    mine = (ids >= first) & (ids < first + experts_per_rank)
    return torch.where(mine, ids - first, torch.full_like(ids, -1))
