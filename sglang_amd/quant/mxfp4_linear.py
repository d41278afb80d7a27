"""Dense linear with MXFP4 weights: y = x @ dequant(W)^T + b, with tier dispatch.

Where it sits: `--quantization amd_mxfp4` serves dense linears (online option,
or Quark exports that quantize them) through `Mxfp4LinearOp`. Tiers
(`tiers.OPS["quant.mxfp4_linear"]`, whose entries name the functions here):
  triton  the weight is decoded inside the GEMM (`gemm/grouped_gemm.py` with one
          group: 4.25 bits per weight read, no full-precision copy); with
          act_mxfp4 both operands go through tl.dot_scaled (A4W4); decode-sized
          inputs (<= 16 rows) are rounded to MXFP4 inside the GEMM (one launch),
          taller ones by a quantizer launch first.
  torch   decode the weight, then F.linear (the oracle).
Never imports sglang.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sglang_amd.gemm.opt_flags import linear_block_m, quantize_a_in_gemm
from sglang_amd.quant.mxfp4 import BLOCK, dequantize_mxfp4, fake_quantize_mxfp4
from sglang_amd.target_info import current_target
from sglang_amd.tiers import Selection, TieredOp

OP = "quant.mxfp4_linear"
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def mxfp4_linear_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    act_mxfp4: bool = False,
) -> torch.Tensor:
    """x [..., K] float; weight [N, K // 2] uint8; weight_scale [N, K // 32] uint8 E8M0;
    bias [N] or None. Returns [..., N] in x's dtype."""
    if act_mxfp4:
        x = fake_quantize_mxfp4(x)
    return F.linear(x, dequantize_mxfp4(weight, weight_scale, x.dtype), bias)


def mxfp4_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    weight_scale: torch.Tensor,
    bias: torch.Tensor | None = None,
    act_mxfp4: bool = False,
) -> torch.Tensor:
    """Triton tier; arguments as `mxfp4_linear_reference`. Accumulates in float32."""
    from sglang_amd.gemm.grouped_gemm import grouped_gemm
    from sglang_amd.quant.mxfp4_triton import a4w4_operand

    n, k = weight.shape[0], weight.shape[1] * 2
    if x.shape[-1] != k or weight_scale.shape != (n, k // BLOCK):
        raise ValueError(
            f"mxfp4_linear: x [..., {x.shape[-1]}], weight {tuple(weight.shape)}, "
            f"weight_scale {tuple(weight_scale.shape)} do not describe one [N, K] MXFP4 weight"
        )
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    rows = x2.shape[0]
    # With a bias the GEMM writes float32 and the bias joins before the one rounding
    # (as a GEMM epilogue would); without one it writes x's dtype directly.
    acc_dtype = torch.float32 if bias is not None else x.dtype
    out = torch.empty(rows, n, dtype=acc_dtype, device=x.device)
    if rows:
        block_m = linear_block_m(current_target(x.device), rows)
        blocks = -(-rows // block_m)
        slots = torch.arange(blocks * block_m, dtype=torch.int32, device=x.device)
        a, a_scale = x2, None
        if act_mxfp4:
            a, a_scale = a4w4_operand(x2, quantize_a_in_gemm("linear", rows))
        grouped_gemm(
            a,
            weight.unsqueeze(0),
            weight_scale.unsqueeze(0),
            slots,
            torch.zeros(blocks, dtype=torch.int32, device=x.device),
            num_slots=rows,
            n=n,
            k=k,
            row_div=1,
            block_m=block_m,
            out=out,
            a_scale=a_scale,
            quantize_a=act_mxfp4 and a_scale is None,
        )
    if bias is not None:
        out = (out + bias.float()).to(x.dtype)
    return out.view(*x.shape[:-1], n)


def triton_refusal(
    x: torch.Tensor, weight: torch.Tensor, *args: object, **kwargs: object
) -> str | None:
    """Why the Triton tier cannot take this call (None: it can)."""
    if x.dtype not in _FLOAT_DTYPES:
        return f"activation dtype {x.dtype}"
    if weight.device != x.device:
        return "weight and activations on different devices"
    return None


def trace_fields(*args: object, act_mxfp4: bool = False, **kwargs: object) -> dict[str, bool]:
    return {"a4w4": act_mxfp4}


class Mxfp4LinearOp(TieredOp):
    """The tier for dense MXFP4 linears on one device, chosen once; called as
    `mxfp4_linear_reference`."""

    def __init__(
        self, device: torch.device | str | None = None, selection: Selection | None = None
    ):
        super().__init__(OP, device, selection)

    def __call__(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None = None,
        act_mxfp4: bool = False,
    ) -> torch.Tensor:
        return super().__call__(x, weight, weight_scale, bias, act_mxfp4=act_mxfp4)
