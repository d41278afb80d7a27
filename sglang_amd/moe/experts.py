"""The `moe.fused` op: what the SGLang runner and the bench call, tiers from `tiers.py`.

  ExpertsOp(device)               -> the moe.fused tier chosen once (tiers.TieredOp)
  op(x, w13, w2, weights, ids,    -> Triton grouped GEMMs (moe/fused.py) when the
     activation=, b13=, b2=)         call suits them, else the torch reference
                                     (moe/reference.py), one log line per reason

This module holds the op's per-call refusals and trace fields, which `tiers.OPS`
names. Weights are bf16/fp16/fp32 tensors in SGLang's layout (w13 [E, 2I, H], w2
[E, H, I]) or an `Mxfp4Experts` (W4A16: MXFP4 weights, activations unquantized;
with act_mxfp4, A4W4 numerics); optional biases b13 [E, 2I], b2 [E, H]; the
gated activation a `GatedActivation` (SiLU, or gpt-oss's clamped SwiGLU). Both
tiers compute every combination. Never imports sglang.
"""

from __future__ import annotations

import torch

from sglang_amd.gemm.activation import SILU, GatedActivation
from sglang_amd.moe.weights import Mxfp4Experts
from sglang_amd.tiers import Selection, TieredOp

OP = "moe.fused"


def triton_refusal(
    x: torch.Tensor, w13: torch.Tensor | Mxfp4Experts, *args: object, **kwargs: object
) -> str | None:
    """Why the Triton tier cannot take this call (None: it can)."""
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"activation dtype {x.dtype}"
    weight = w13.w13 if isinstance(w13, Mxfp4Experts) else w13
    biases = [kwargs.get(name) for name in ("b13", "b2")]
    if any(t is not None and t.device != x.device for t in (weight, *biases)):
        return "weights and activations on different devices"
    return None


def torch_refusal(*args: object, **kwargs: object) -> str | None:
    """The torch tier reads expert ids on the host: never inside a graph capture."""
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return (
            "the torch tier reads expert ids on the host and cannot be captured in a "
            "CUDA graph; start with --disable-cuda-graph, or select the Triton tier "
            "(SGLANG_AMD_MOE_FUSED_TIER=triton)"
        )
    return None


def trace_fields(
    x: torch.Tensor,
    w13: torch.Tensor | Mxfp4Experts,
    *args: object,
    act_mxfp4: bool = False,
    activation: GatedActivation = SILU,
    b13: torch.Tensor | None = None,
    b2: torch.Tensor | None = None,
) -> dict[str, str]:
    kind = "mxfp4" if isinstance(w13, Mxfp4Experts) else str(x.dtype).removeprefix("torch.")
    fields = {"weights": kind + ("+a_mxfp4" if act_mxfp4 else "")}
    if activation != SILU:
        fields["activation"] = activation.label()
    if b13 is not None or b2 is not None:
        fields["bias"] = "+".join(n for n, b in (("b13", b13), ("b2", b2)) if b is not None)
    return fields


class ExpertsOp(TieredOp):
    """Routed experts on one device: gate_up (+ bias) -> gated activation -> down
    (+ bias), weighted sum."""

    def __init__(
        self, device: torch.device | str | None = None, selection: Selection | None = None
    ):
        super().__init__(OP, device, selection)

    def __call__(
        self,
        x: torch.Tensor,
        w13: torch.Tensor | Mxfp4Experts,
        w2: torch.Tensor | None,
        topk_weights: torch.Tensor,
        topk_ids: torch.Tensor,
        act_mxfp4: bool = False,
        activation: GatedActivation = SILU,
        b13: torch.Tensor | None = None,
        b2: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [T, H]; topk_weights [T, k] float; topk_ids [T, k] int (-1: routed nowhere).

        Returns [T, H] in x's dtype: sum_j topk_weights[t, j] * expert_{ids[t, j]}(x[t]),
        expert_e(x) = (activation(x @ w13[e]^T + b13[e])) @ w2[e]^T + b2[e].
        act_mxfp4: A4W4 numerics (GEMM inputs rounded to MXFP4 per 32).
        """
        if x.shape[0] == 0:
            return torch.zeros_like(x)
        return super().__call__(
            x,
            w13,
            w2,
            topk_weights,
            topk_ids,
            act_mxfp4=act_mxfp4,
            activation=activation,
            b13=b13,
            b2=b2,
        )
