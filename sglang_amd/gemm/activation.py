"""The gated activations the grouped GEMM's first (gated) launch applies in its epilogue.

Where it sits: the MoE's first GEMM computes gate_up = x @ W13^T (+ b13) and
turns its 2I columns into I activations. `GatedActivation` says how: which
columns are the gate and which the up projection, and the function that joins
them. `moe/` passes it to `gemm/grouped_gemm.py` (Triton tier, the jit
functions in `grouped_gemm_details/_activation.py`) and `moe/reference.py`
(torch tier, `GatedActivation.__call__` below, the definition both are judged by).

  silu     SiLU(gate) * up                              (Llama, Qwen, DeepSeek)
  gpt_oss  g = min(gate, limit); u = clamp(up, -limit, limit);
           g * sigmoid(alpha * g) * (u + 1)              (gpt-oss: alpha 1.702, limit 7)

as transformers' `GptOssExperts._apply_gate` and SGLang's
`swiglu_gpt_oss_sigmoid_alpha` define the second. Column layout of W13's 2I rows:
halves (gate rows [0, I), up rows [I, 2I): SGLang's standard w13) or interleaved
(gate row 2i, up row 2i + 1: gpt-oss's checkpoints and SGLang's w13 for gpt-oss,
`MoeRunnerConfig.gate_up_interleaved`). Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

ActivationKind = Literal["silu", "gpt_oss"]
GPT_OSS_ALPHA = 1.702
GPT_OSS_LIMIT = 7.0


@dataclass(frozen=True)
class GatedActivation:
    """How the gated GEMM joins its gate and up columns (see the module docstring).

    kind: "silu" or "gpt_oss"; alpha, limit: gpt_oss's sigmoid gain and clamp
    (silu takes neither); interleaved: W13's gate and up rows alternate.
    """

    kind: ActivationKind = "silu"
    alpha: float | None = None
    limit: float | None = None
    interleaved: bool = False

    def __post_init__(self) -> None:
        if self.kind == "silu":
            if self.alpha is not None or self.limit is not None:
                raise ValueError("silu takes no alpha or limit (gpt_oss does)")
        elif self.kind == "gpt_oss":
            if self.alpha is None or self.limit is None:
                raise ValueError("gpt_oss needs alpha and limit")
            if not self.limit > 0:
                raise ValueError(f"gpt_oss limit must be > 0, got {self.limit}")
        else:
            raise ValueError(f"unknown gated activation {self.kind!r}; have silu, gpt_oss")

    def split(self, gate_up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[..., 2I] GEMM output -> (gate, up), each [..., I]."""
        if self.interleaved:
            return gate_up[..., 0::2], gate_up[..., 1::2]
        return gate_up.chunk(2, dim=-1)

    def __call__(self, gate_up: torch.Tensor) -> torch.Tensor:
        """[..., 2I] -> [..., I], in gate_up's dtype (the torch tier passes float32)."""
        gate, up = self.split(gate_up)
        if self.kind == "silu":
            return F.silu(gate) * up
        gate = gate.clamp(max=self.limit)
        up = up.clamp(min=-self.limit, max=self.limit)
        return gate * torch.sigmoid(gate * self.alpha) * (up + 1)

    def label(self) -> str:
        """Short text for traces and audit rows."""
        if self.kind == "silu":
            return "silu" + (" interleaved" if self.interleaved else "")
        layout = ", interleaved" if self.interleaved else ""
        return f"gpt_oss(alpha={self.alpha:g}, limit={self.limit:g}{layout})"


SILU = GatedActivation()


def gpt_oss_swiglu(
    alpha: float = GPT_OSS_ALPHA, limit: float = GPT_OSS_LIMIT, interleaved: bool = True
) -> GatedActivation:
    """gpt-oss's clamped SwiGLU, by default over its interleaved gate/up rows."""
    return GatedActivation("gpt_oss", float(alpha), float(limit), interleaved)
