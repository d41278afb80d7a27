"""What one expert-parallel communicator is built for, and which mode a batch takes.

An `EpConfig` fixes the shapes every rank agrees on (hidden size, experts per
rank, top-k, the most tokens a rank may dispatch), the wire format of dispatched
rows and the mode. The two modes, as in DeepEP and MoRI:

  high_throughput  counts exchanged first (one host read), then exact-size
                   buffers: bytes moved = each token once per destination rank
  low_latency      a fixed capacity of `max_tokens_per_rank` rows per source rank,
                   counts travel beside the rows and stay on the device: no host
                   read, so it can be captured in a CUDA graph; every rank ships
                   its full capacity whatever it holds

`choose_mode` is SGLang's `--deepep-mode auto` rule: extend batches and decode
batches above a threshold of tokens per rank take high_throughput, small decode
batches low_latency. Its inputs (forward mode, the bound on any rank's tokens)
are the same on every rank, so every rank picks the same mode; a mode chosen
from one rank's own count could differ across ranks and hang the collective.
Never imports sglang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

from sglang_amd.flags import SglangAmdError

Mode = Literal["high_throughput", "low_latency"]
MODES: tuple[str, ...] = ("auto", "high_throughput", "low_latency")
# SGLang's --deepep-mode spellings -> ours.
DEEPEP_MODES = {"auto": "auto", "normal": "high_throughput", "low_latency": "low_latency"}
WIRES: tuple[str, ...] = ("none", "fp8", "mxfp4")
FP8_BLOCK = 128
MXFP4_BLOCK = 32

# Decode batches with at most this many tokens on any rank take low_latency under
# `auto`. Not yet justified by a measurement: on gloo (BENCHMARKS.md, bench ep) the
# low-latency mode never wins (a host read costs nothing there, and the bench sized
# every buffer for its largest case); on GPUs DeepEP and MoRI size their
# low-latency kernels for 128 tokens. 64 keeps decode buffers small until a GPU run
# of `sglang-amd bench ep` places the switch.
LOW_LATENCY_MAX_TOKENS_ENV = "SGLANG_AMD_EP_LOW_LATENCY_MAX_TOKENS"
DEFAULT_LOW_LATENCY_MAX_TOKENS = 64


class EpError(SglangAmdError):
    """An expert-parallel call that cannot run as asked; the message names what to change."""


class EpCapacityError(EpError):
    """A rank holds more tokens than the communicator was built for (raised on every rank)."""


def low_latency_max_tokens() -> int:
    raw = os.environ.get(LOW_LATENCY_MAX_TOKENS_ENV, "")
    if not raw:
        return DEFAULT_LOW_LATENCY_MAX_TOKENS
    if not raw.isdigit() or int(raw) < 1:
        raise EpError(f"{LOW_LATENCY_MAX_TOKENS_ENV}={raw!r}: expected a positive integer")
    return int(raw)


@dataclass(frozen=True)
class EpConfig:
    """rank/world_size: this rank in the EP group. hidden_size: H of dispatched rows.
    max_tokens_per_rank: the most tokens any rank dispatches in one call (the
    low-latency capacity). experts_per_rank: E_local (global expert e lives on rank
    e // E_local). topk: expert slots per token. wire: "none" (rows as given), "fp8"
    (float8 e4m3, one float32 scale per 128) or "mxfp4" (E2M1 pairs, one E8M0 scale
    per 32). mode: "auto" | "high_throughput" | "low_latency". combine_dtype: the
    dtype expert outputs travel back in (None: as the expert produced them).
    low_latency_max_tokens: the `auto` threshold (tokens on any rank)."""

    rank: int
    world_size: int
    hidden_size: int
    max_tokens_per_rank: int
    experts_per_rank: int
    topk: int
    wire: str = "none"
    mode: str = "auto"
    combine_dtype: torch.dtype | None = None
    low_latency_max_tokens: int = DEFAULT_LOW_LATENCY_MAX_TOKENS

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise EpError(f"EpConfig: rank {self.rank} outside world size {self.world_size}")
        if self.wire not in WIRES:
            raise EpError(f"EpConfig: wire {self.wire!r}; expected one of {WIRES}")
        if self.mode not in MODES:
            raise EpError(f"EpConfig: mode {self.mode!r}; expected one of {MODES}")
        block = {"fp8": FP8_BLOCK, "mxfp4": MXFP4_BLOCK}.get(self.wire)
        if block and self.hidden_size % block:
            raise EpError(
                f"EpConfig: {self.wire} wire needs hidden size a multiple of {block}, "
                f"got {self.hidden_size}"
            )
        for name in ("max_tokens_per_rank", "experts_per_rank", "topk", "hidden_size"):
            if getattr(self, name) < 1:
                raise EpError(f"EpConfig: {name} must be positive")

    @property
    def low_latency_capacity(self) -> int:
        """Rows per source rank in a low-latency buffer (DeepEP's
        num_max_dispatch_tokens_per_rank): the `auto` threshold, at most the
        high-throughput bound, so a large prefill bound never sizes the decode path."""
        return min(self.low_latency_max_tokens, self.max_tokens_per_rank)


def choose_mode(config: EpConfig, *, is_decode: bool, tokens_bound: int) -> Mode:
    """The mode for one batch. `tokens_bound`: the most tokens any rank holds in this
    batch, a number every rank computes alike (SGLang: the batch's token count
    split over the attention-TP ranks). A forced mode is returned as is."""
    if config.mode != "auto":
        return config.mode  # type: ignore[return-value]
    small = tokens_bound <= config.low_latency_capacity
    return "low_latency" if is_decode and small else "high_throughput"
