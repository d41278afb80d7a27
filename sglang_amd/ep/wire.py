"""The bytes one dispatched token row travels as, and their decoding on arrival.

A row is one uint8 record, so one collective carries everything about a token:

  x        [H] in the caller's dtype (wire "none"), float8 e4m3fn (wire "fp8")
           or packed E2M1 pairs [H/2] (wire "mxfp4")
  scales   [H/128] float32 (fp8) or [H/32] E8M0 uint8 (mxfp4); absent for "none"
  weights  [k] float32 routing weights
  ids      [k] int32 global expert ids (-1: none)

Fields start on 4-byte boundaries and rows are padded to 16 bytes so each field
is a zero-copy view of the received buffer. The FP8 rounding is the one SGLang's
per-token-group quantizer uses (amax/448 per block of 128); MXFP4 is
quant/mxfp4.py's (OCP MX, scale rounded to even). Never imports sglang.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang_amd.ep.config import FP8_BLOCK, MXFP4_BLOCK
from sglang_amd.fp8_blocks import dequantize_fp8, quantize_fp8
from sglang_amd.quant.mxfp4 import dequantize_mxfp4, quantize_mxfp4

_ALIGN = 16


def _up(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class RowLayout:
    """Byte offsets of one row's fields for a (hidden, topk, wire, x dtype)."""

    hidden: int
    topk: int
    wire: str
    x_dtype: torch.dtype

    @property
    def wire_dtype(self) -> torch.dtype:
        return {"none": self.x_dtype, "fp8": torch.float8_e4m3fn, "mxfp4": torch.uint8}[self.wire]

    @property
    def x_elems(self) -> int:
        return self.hidden // 2 if self.wire == "mxfp4" else self.hidden

    @property
    def scale_dtype(self) -> torch.dtype | None:
        return {"none": None, "fp8": torch.float32, "mxfp4": torch.uint8}[self.wire]

    @property
    def scale_elems(self) -> int:
        return {"none": 0, "fp8": self.hidden // FP8_BLOCK, "mxfp4": self.hidden // MXFP4_BLOCK}[
            self.wire
        ]

    def _fields(self) -> list[tuple[str, torch.dtype, int]]:
        fields = [("x", self.wire_dtype, self.x_elems)]
        if self.scale_dtype is not None:
            fields.append(("scales", self.scale_dtype, self.scale_elems))
        fields += [("weights", torch.float32, self.topk), ("ids", torch.int32, self.topk)]
        return fields

    def offsets(self) -> dict[str, tuple[int, int, torch.dtype]]:
        """field -> (start byte, byte length, dtype)."""
        out, at = {}, 0
        for name, dtype, n in self._fields():
            size = n * dtype.itemsize
            out[name] = (at, size, dtype)
            at = _up(at + size, 4)
        return out

    @property
    def row_bytes(self) -> int:
        start, size, _ = list(self.offsets().values())[-1]
        return _up(start + size, _ALIGN)

    @property
    def payload_bytes(self) -> int:
        """Bytes of a row that carry data (without padding)."""
        return sum(size for _, size, _ in self.offsets().values())


def encode(
    layout: RowLayout, x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor:
    """x [T, H], weights [T, k], indices [T, k] -> rows [T, row_bytes] uint8."""
    rows = torch.zeros(x.shape[0], layout.row_bytes, dtype=torch.uint8, device=x.device)
    if not x.shape[0]:  # (an empty [0, 1] scale tensor may not view as bytes)
        return rows
    if layout.wire == "fp8":
        xq, scales = quantize_fp8(x, block=FP8_BLOCK)
    elif layout.wire == "mxfp4":
        xq, scales = quantize_mxfp4(x)
    else:
        xq, scales = x, None
    values = {
        "x": xq,
        "scales": scales,
        "weights": weights.float(),
        "ids": indices.to(torch.int32),
    }
    for name, (start, size, dtype) in layout.offsets().items():
        part = values[name].to(dtype).contiguous().view(torch.uint8).reshape(x.shape[0], size)
        rows[:, start : start + size] = part
    return rows


def field(layout: RowLayout, rows: torch.Tensor, name: str) -> torch.Tensor:
    """One field of received rows [R, row_bytes] as [R, n] of its dtype (a view)."""
    start, size, dtype = layout.offsets()[name]
    return rows[:, start : start + size].view(dtype)


def dequantize(layout: RowLayout, x: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
    """Wire rows back to [R, H] in the caller's dtype."""
    if layout.wire == "none":
        return x
    if layout.wire == "fp8":
        return dequantize_fp8(x, scales, layout.x_dtype)
    return dequantize_mxfp4(x, scales).to(layout.x_dtype)
