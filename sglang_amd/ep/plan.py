"""Where each local token goes: once to every rank owning at least one of its experts.

Input: the router's global expert ids [T, k] (-1: no expert). Global expert e
lives on rank e // experts_per_rank. Output, all on the tokens' device and of
fixed shape (no host read, so the low-latency mode stays capturable):

  dest  [T, W] bool   token t is sent to rank r
  slot  [T, W] int64  its row among the rows sent to r (token order), where dest
  counts [W] int64    rows sent to each rank

A token with two experts on one rank is sent there once; the receiving rank sees
both ids and sums both experts' weighted outputs into the one row it returns.
Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SendPlan:
    dest: torch.Tensor
    slot: torch.Tensor
    counts: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.dest.shape[0]

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
        world = self.dest.shape[1]
        ranks = torch.arange(world, device=self.dest.device)
        return self.rows_in(ranks * capacity, world * capacity)


def plan_sends(indices: torch.Tensor, experts_per_rank: int, world_size: int) -> SendPlan:
    """indices: [T, k] integer global expert ids, -1 for an empty slot."""
    if indices.dim() != 2:
        raise ValueError(f"plan_sends: indices must be [T, k], got {tuple(indices.shape)}")
    ids = indices.long()
    owner = torch.where(ids >= 0, ids // experts_per_rank, torch.full_like(ids, world_size))
    owner = owner.clamp(max=world_size)  # ids past the last expert: sent nowhere
    hit = torch.zeros(ids.shape[0], world_size + 1, dtype=torch.bool, device=ids.device)
    dest = hit.scatter_(1, owner, True)[:, :world_size]
    slot = dest.long().cumsum(0) - 1
    return SendPlan(dest=dest, slot=slot, counts=dest.sum(0))


def local_expert_ids(indices: torch.Tensor, rank: int, experts_per_rank: int) -> torch.Tensor:
    """Global ids [R, k] -> this rank's local ids (0 .. E_local-1), -1 for experts elsewhere."""
    ids = indices.long()
    first = rank * experts_per_rank
    mine = (ids >= first) & (ids < first + experts_per_rank)
    return torch.where(mine, ids - first, torch.full_like(ids, -1))
