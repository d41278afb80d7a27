"""The collectives under the communicator: torch.distributed's all-to-all.

The tier every machine has: NCCL on NVIDIA, RCCL on ROCm (both as "nccl"), gloo
on CPU, across nodes with torch's own launcher. MoRI (ROCm's IntraNode and
InterNode kernels) is the tier above it and not built yet; nothing here is a
hand-made transport. `bytes_sent` counts every byte this rank puts on the wire
(rows to itself included, as each token goes once to each destination rank
whoever that is), so `sglang-amd bench ep` and the tests can hold the
high-throughput mode to the ideal exactly. Never imports sglang.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


class TorchTransport:
    """all_to_all_single over a process group (None: the default group)."""

    name = "torch"

    def __init__(self, group: Any = None) -> None:
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.bytes_sent = 0

    def all_to_all(
        self,
        inp: torch.Tensor,
        out: torch.Tensor,
        in_splits: list[int] | None = None,
        out_splits: list[int] | None = None,
        *,
        control: bool = False,
    ) -> torch.Tensor:
        """Rows of `inp` (split by `in_splits`, equal when None) to each rank; `out`
        receives each rank's rows in rank order. `control`: counts and sizes, kept
        out of `bytes_sent` (the ideal counts token rows only)."""
        dist.all_to_all_single(out, inp, out_splits, in_splits, group=self.group)
        if not control:
            self.bytes_sent += inp.numel() * inp.element_size()
        return out

    def reset_counters(self) -> None:
        self.bytes_sent = 0
