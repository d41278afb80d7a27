"""Fused-MoE entry point with tier dispatch: what the SGLang runner and the bench call.

  ExpertsOp(device)               -> picks the moe.fused tier once (tiers.select)
  op(x, w13, w2, weights, ids)    -> Triton grouped GEMM (moe/fused.py) when it can
                                     serve the request, else the torch reference
                                     (moe/reference.py) with one log line per reason

Weights are bf16/fp16/fp32 tensors in SGLang's layout (w13 [E, 2I, H], w2
[E, H, I]) or an `Mxfp4Experts` (W4A16: MXFP4 weights, activations unquantized;
with act_mxfp4, A4W4 numerics).
Never imports sglang.
"""

from __future__ import annotations

import torch

from sglang_amd import trace
from sglang_amd.moe.reference import Mxfp4Experts, fused_moe_reference
from sglang_amd.tiers import Selection, Tier, fallback_once, select

OP = "moe.fused"


def triton_refusal(x: torch.Tensor, w13: torch.Tensor | Mxfp4Experts) -> str | None:
    """Why the Triton tier cannot take this request (None: it can)."""
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"activation dtype {x.dtype}"
    weight = w13.w13 if isinstance(w13, Mxfp4Experts) else w13
    if weight.device != x.device:
        return "weights and activations on different devices"
    return None


class ExpertsOp:
    """Routed experts on one device: gate_up -> SiLU-and-mul -> down, weighted sum."""

    def __init__(
        self, device: torch.device | str | None = None, selection: Selection | None = None
    ):
        self.selection = selection or select(OP, device)

    @property
    def tier(self) -> Tier:
        return self.selection.tier

    def __call__(
        self,
        x: torch.Tensor,
        w13: torch.Tensor | Mxfp4Experts,
        w2: torch.Tensor | None,
        topk_weights: torch.Tensor,
        topk_ids: torch.Tensor,
        act_mxfp4: bool = False,
    ) -> torch.Tensor:
        """x [T, H]; topk_weights [T, k] float; topk_ids [T, k] int (-1: routed nowhere).

        Returns [T, H] in x's dtype: sum_j topk_weights[t, j] * expert_{ids[t, j]}(x[t]).
        act_mxfp4: A4W4 numerics (GEMM inputs rounded to MXFP4 per 32).
        """
        kind = "mxfp4" if isinstance(w13, Mxfp4Experts) else str(x.dtype).removeprefix("torch.")
        kind += "+a_mxfp4" if act_mxfp4 else ""
        if x.shape[0] == 0:
            return torch.zeros_like(x)
        if self.tier is Tier.TRITON:
            reason = triton_refusal(x, w13)
            if reason is None:
                from sglang_amd.moe.fused import fused_moe

                trace.record("forward_moe", tier=Tier.TRITON.value, weights=kind)
                return fused_moe(x, w13, w2, topk_weights, topk_ids, act_mxfp4=act_mxfp4)
            fallback_once(OP, self.tier, reason)
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                f"sglang-amd: {OP} runs on the torch tier here, which reads expert ids on "
                "the host and cannot be captured in a CUDA graph; start with "
                "--disable-cuda-graph, or select the Triton tier "
                "(SGLANG_AMD_MOE_FUSED_TIER=triton)"
            )
        trace.record("forward_moe", tier=Tier.TORCH.value, weights=kind)
        return fused_moe_reference(x, w13, w2, topk_weights, topk_ids, act_mxfp4=act_mxfp4)
