"""SGLang adapter: our communicator as the MoE dispatcher of `--moe-a2a-backend customized`.

  FusedMoE.forward_impl
    -> AmdEpDispatcher.dispatch(hidden_states [T, H], topk_output: global expert ids)
       -> EpDispatchCombine.dispatch: rows to the ranks owning their experts
       -> StandardDispatchOutput(received rows in the model dtype, local ids, -1 elsewhere)
    -> quant_method.apply -> our MoE runner (the standard dispatch, unchanged)
    -> AmdEpDispatcher.combine(StandardCombineInput [R, H]) -> [T, H], each token's
       sum over the ranks it went to

Built by `patches/ep_dispatcher.py` in place of SGLang's NotImplementedError for
`customized`. SGLang feeds a customized a2a backend the attention-TP-scattered
tokens and gathers after combine, and with --ep-size equal to --tp-size (checked
at start) each rank holds whole experts, so nothing else is reduced. The mode of a
batch follows `--deepep-mode` (auto: extend and large decode batches high
throughput, small decode batches low latency), decided from numbers every rank
shares. Imports sglang.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from sglang.srt.layers.moe.token_dispatcher.base import BaseDispatcher
from sglang.srt.layers.moe.token_dispatcher.standard import (
    StandardCombineInput,
    StandardDispatchOutput,
)
from sglang.srt.layers.moe.topk import StandardTopKOutput, TopKOutputChecker

from sglang_amd import trace
from sglang_amd.ep.config import DEEPEP_MODES, EpConfig, low_latency_max_tokens
from sglang_amd.ep.dispatch_combine import EpDispatchCombine
from sglang_amd.ep.support import FLAG, transport_tier, wire_format
from sglang_amd.ep.transport import TorchTransport
from sglang_amd.flags import UnsupportedConfigError


def max_tokens_per_rank(server_args: Any) -> int:
    """The most tokens one forward can put on a rank: the larger of a prefill chunk
    and a full decode batch with its draft tokens (before the attention-TP split,
    so a bound, not an estimate)."""
    chunk = getattr(server_args, "chunked_prefill_size", None) or 0
    prefill = getattr(server_args, "max_prefill_tokens", None) or 0
    running = getattr(server_args, "max_running_requests", None) or 256
    drafts = getattr(server_args, "speculative_num_draft_tokens", None) or 1
    return max(chunk, prefill, running * drafts, 1)


def _tokens_bound(world: int) -> int | None:
    """The most tokens any rank holds this batch, alike on every rank: the batch's
    tokens split evenly over the attention-TP ranks (None when SGLang has not
    published the count for this forward)."""
    from sglang.srt.layers.dp_attention import get_dp_global_num_tokens

    try:
        counts = get_dp_global_num_tokens()
    except Exception:  # noqa: BLE001 -- not published outside an MLP-sync forward
        return None
    if not counts:
        return None
    return math.ceil(sum(int(c) for c in counts) / world)


class AmdEpDispatcher(BaseDispatcher):
    """One per FusedMoE layer; the communicators (and their buffers) are per layer
    too, as SGLang's DeepEP dispatchers are."""

    def __init__(self, moe_runner_config: Any) -> None:
        super().__init__()
        from sglang.srt.runtime_context import get_parallel, get_server_args

        par = get_parallel()
        server_args = get_server_args()
        if moe_runner_config.num_fused_shared_experts:
            raise UnsupportedConfigError(
                f"{FLAG} does not dispatch fused shared experts yet; serve with "
                "--disable-shared-experts-fusion"
            )
        tier, _ = transport_tier()
        group = par.moe_ep_group
        self.world = group.world_size
        mode = DEEPEP_MODES[getattr(server_args, "deepep_mode", "auto")]
        self.config = EpConfig(
            rank=group.rank_in_group,
            world_size=self.world,
            hidden_size=moe_runner_config.hidden_size,
            max_tokens_per_rank=max_tokens_per_rank(server_args),
            experts_per_rank=moe_runner_config.num_local_experts,
            topk=moe_runner_config.top_k,
            wire=wire_format(),
            mode=mode,
            low_latency_max_tokens=low_latency_max_tokens(),
        )
        self.op = EpDispatchCombine(self.config, TorchTransport(group.device_group))
        trace.record("ep_dispatcher_init", tier=tier, wire=self.config.wire, mode=mode)

    def dispatch(self, hidden_states: torch.Tensor, topk_output: Any) -> StandardDispatchOutput:
        from sglang.srt.layers.dp_attention import get_is_extend_in_batch

        if TopKOutputChecker.format_is_bypassed(topk_output):
            topk_output = topk_output.to_standard()
        if not TopKOutputChecker.format_is_standard(topk_output):
            raise UnsupportedConfigError(
                f"{FLAG} needs the standard top-k output, got {type(topk_output).__name__}"
            )
        ids = topk_output.topk_ids
        d = self.op.dispatch(
            hidden_states,
            topk_output.topk_weights,
            ids,
            is_decode=not get_is_extend_in_batch(),
            tokens_bound=_tokens_bound(self.world),
        )
        trace.record("ep_dispatch", mode=d.mode, wire=self.config.wire, ranks=self.world)
        x = d.dequantized(self.op.layout(hidden_states.dtype))
        topk = StandardTopKOutput(
            topk_weights=d.weights.to(topk_output.topk_weights.dtype),
            topk_ids=d.local_ids.to(ids.dtype),
            router_logits=None,
        )
        return StandardDispatchOutput(hidden_states=x, hidden_states_scale=None, topk_output=topk)

    def combine(self, combine_input: StandardCombineInput) -> torch.Tensor:
        (hidden_states,) = combine_input
        return self.op.combine(hidden_states)
