"""EpDispatchCombine: tokens to the ranks that own their experts, and the results back.

  dispatch(x [T, H], weights [T, k], indices [T, k] global ids)
      -> EpDispatchOutput: rows this rank received, their routing weights, their
         expert ids made local (-1: an expert on another rank, or a padding row),
         the wire scales, and total_recv (a device tensor)
  combine(expert_out [R, H])   (R: the dispatch's received rows, each row the
                                receiving rank's weighted sum over its experts)
      -> [T, H]: per source token, the sum over the ranks it went to

Modelled on MoRI's `EpDispatchCombineOp` (one op object per layer group, the
last dispatch's routing kept for its combine). The local work on either side of
the all-to-alls is two tiered ops (`tiers.OPS`): `ep_permute.pack` (the plan and
every token's wire record written into its destinations' rows: Triton in
`permute.py`, torch in `permute_reference.py`) and `ep_permute.combine` (each
token's returned rows summed in rank order). Both modes give identical results;
see config.py for when each runs. A batch with more tokens than
`max_tokens_per_rank` raises `EpCapacityError`: in high_throughput on every rank
(the sizes travel with the counts), in low_latency before anything is sent when
the caller's `tokens_bound` (alike on every rank) exceeds the capacity.
Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_amd.ep import wire
from sglang_amd.ep.config import (
    LOW_LATENCY_MAX_TOKENS_ENV,
    EpCapacityError,
    EpConfig,
    EpError,
    Mode,
    choose_mode,
)
from sglang_amd.ep.plan import Packed, SendPlan, local_expert_ids
from sglang_amd.ep.transport import TorchTransport
from sglang_amd.tiers import TieredOp


@dataclass(frozen=True)
class EpDispatchOutput:
    """x: [R, H] received rows (wire dtype: the caller's dtype, float8, or packed
    MXFP4); scales: [R, H/128] float32 | [R, H/32] uint8 | None; weights: [R, k]
    float32; local_ids: [R, k] int64, -1 where the expert is elsewhere or the row is
    padding; total_recv: [] int64 rows that carry a token (low_latency: R is
    world x capacity, the rest padding); mode: the mode this batch took."""

    x: torch.Tensor
    scales: torch.Tensor | None
    weights: torch.Tensor
    local_ids: torch.Tensor
    total_recv: torch.Tensor
    mode: Mode

    def dequantized(self, layout: wire.RowLayout) -> torch.Tensor:
        return wire.dequantize(layout, self.x, self.scales)


@dataclass
class _Pending:
    plan: SendPlan
    mode: Mode
    x_dtype: torch.dtype
    send_counts: list[int] | None = None
    recv_counts: list[int] | None = None


class EpDispatchCombine:
    """One communicator for an EP group; `transport` defaults to torch.distributed's
    default group."""

    def __init__(self, config: EpConfig, transport: TorchTransport | None = None) -> None:
        self.config = config
        self.transport = transport if transport is not None else TorchTransport()
        if self.transport.world_size != config.world_size:
            raise EpError(
                f"EpConfig world size {config.world_size} but the process group has "
                f"{self.transport.world_size} ranks"
            )
        self._pending: _Pending | None = None
        self._ops: dict[tuple[str, torch.device], TieredOp] = {}

    def _op(self, name: str, device: torch.device) -> TieredOp:
        """The tiered local op `ep_permute.<name>` on `device`, chosen once."""
        key = (name, device)
        if key not in self._ops:
            self._ops[key] = TieredOp(f"ep_permute.{name}", device)
        return self._ops[key]

    def layout(self, x_dtype: torch.dtype) -> wire.RowLayout:
        c = self.config
        return wire.RowLayout(c.hidden_size, c.topk, c.wire, x_dtype)

    def dispatch(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        indices: torch.Tensor,
        *,
        is_decode: bool = False,
        tokens_bound: int | None = None,
        mode: Mode | None = None,
    ) -> EpDispatchOutput:
        """x [T, H] float, weights [T, k] float, indices [T, k] int global ids (-1 none).

        `tokens_bound`: the most tokens any rank holds this batch, alike on every
        rank (default the capacity); with `is_decode` it picks the mode under
        `auto`. `mode` overrides the choice (it must be alike on every rank too)."""
        c = self.config
        if x.dim() != 2 or x.shape[1] != c.hidden_size:
            raise EpError(f"dispatch: x must be [T, {c.hidden_size}], got {tuple(x.shape)}")
        if weights.shape != indices.shape or indices.shape != (x.shape[0], c.topk):
            raise EpError(
                f"dispatch: weights {tuple(weights.shape)} and indices {tuple(indices.shape)} "
                f"must both be [{x.shape[0]}, {c.topk}]"
            )
        bound = c.max_tokens_per_rank if tokens_bound is None else tokens_bound
        mode = mode or choose_mode(c, is_decode=is_decode, tokens_bound=bound)
        pack = self._op("pack", x.device)
        args = (x, weights, indices, self.layout(x.dtype), c.experts_per_rank, c.world_size)
        if mode == "low_latency":
            seen = max(x.shape[0], tokens_bound or 0)
            self._check_capacity(seen, "low_latency", c.low_latency_capacity)
            return self._dispatch_low_latency(pack(*args, c.low_latency_capacity), x.dtype)
        return self._dispatch_high_throughput(pack(*args), x.dtype)

    def _check_capacity(self, tokens: int, where: str, capacity: int | None = None) -> None:
        capacity = self.config.max_tokens_per_rank if capacity is None else capacity
        if tokens > capacity:
            fix = (
                f"raise {LOW_LATENCY_MAX_TOKENS_ENV} or use --deepep-mode auto"
                if where == "low_latency"
                else "lower --chunked-prefill-size or --max-running-requests"
            )
            raise EpCapacityError(
                f"expert-parallel dispatch ({where}): {tokens} tokens on a rank, built for "
                f"{capacity} (EpConfig.max_tokens_per_rank; in SGLang {fix})"
            )

    def _dispatch_high_throughput(self, packed: Packed, x_dtype: torch.dtype) -> EpDispatchOutput:
        t, plan, send = self.transport, packed.plan, packed.buf
        header = torch.stack([plan.counts, torch.full_like(plan.counts, plan.num_tokens)], 1)
        recv_header = t.all_to_all(header, torch.empty_like(header), control=True)
        recv_counts, senders_tokens = recv_header[:, 0].tolist(), recv_header[:, 1].tolist()
        self._check_capacity(max(senders_tokens), "high_throughput")
        send_counts = packed.send_counts
        recv = send.new_empty(sum(recv_counts), send.shape[1])
        t.all_to_all(send, recv, send_counts, recv_counts)
        self._pending = _Pending(plan, "high_throughput", x_dtype, send_counts, recv_counts)
        total = torch.tensor(sum(recv_counts), dtype=torch.long, device=send.device)
        return self._output(recv, None, total, "high_throughput", x_dtype)

    def _dispatch_low_latency(self, packed: Packed, x_dtype: torch.dtype) -> EpDispatchOutput:
        t, plan, buf = self.transport, packed.plan, packed.buf
        cap = self.config.low_latency_capacity
        recv_counts = torch.empty_like(plan.counts)
        t.all_to_all(plan.counts, recv_counts, control=True)
        recv = torch.empty_like(buf)
        t.all_to_all(buf, recv)
        valid = (torch.arange(cap, device=buf.device) < recv_counts.unsqueeze(1)).reshape(-1)
        self._pending = _Pending(plan, "low_latency", x_dtype)
        return self._output(recv, valid, recv_counts.sum(), "low_latency", x_dtype)

    def _output(
        self,
        recv: torch.Tensor,
        valid: torch.Tensor | None,
        total: torch.Tensor,
        mode: Mode,
        x_dtype: torch.dtype,
    ) -> EpDispatchOutput:
        c = self.config
        layout = self.layout(x_dtype)
        ids = local_expert_ids(wire.field(layout, recv, "ids"), c.rank, c.experts_per_rank)
        weights = wire.field(layout, recv, "weights")
        if valid is not None:
            ids = torch.where(valid.unsqueeze(1), ids, torch.full_like(ids, -1))
            weights = weights * valid.unsqueeze(1)
        scales = wire.field(layout, recv, "scales") if layout.scale_dtype is not None else None
        return EpDispatchOutput(
            x=wire.field(layout, recv, "x"),
            scales=scales,
            weights=weights,
            local_ids=ids,
            total_recv=total,
            mode=mode,
        )

    def combine(self, expert_out: torch.Tensor) -> torch.Tensor:
        """expert_out [R, H] (the last dispatch's received rows, in order) -> [T, H]
        in the dispatched x's dtype."""
        p = self._pending
        if p is None:
            raise EpError("combine called without a dispatch before it")
        self._pending = None
        c, t = self.config, self.transport
        send = expert_out.to(c.combine_dtype or expert_out.dtype).contiguous()
        if p.mode == "high_throughput":
            back = send.new_empty(sum(p.send_counts), c.hidden_size)
            t.all_to_all(send, back, p.recv_counts, p.send_counts)
            capacity = None
        else:
            back = t.all_to_all(send, torch.empty_like(send))
            capacity = c.low_latency_capacity
        # Each token's rows summed in rank order: both modes and every device sum alike.
        return self._op("combine", send.device)(back, p.plan, p.x_dtype, capacity)
