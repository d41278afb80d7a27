"""What `--moe-a2a-backend customized` (our communicator) serves, checked at start.

Called through `ep/capability.py` from the resolution hook, in the launcher, so a
configuration the communicator cannot serve fails before any process starts, with
one message naming the flag. The transport tier and the wire format are chosen
here too, from the environment (`sglang-amd env` prints them):

  SGLANG_AMD_EP_TIER   auto | torch      (mori: not built yet, refused by name)
  SGLANG_AMD_EP_WIRE   none | fp8 | mxfp4  (dispatch payload; combine travels in
                                            the experts' output dtype)
  SGLANG_AMD_EP_LOW_LATENCY_MAX_TOKENS     the `--deepep-mode auto` threshold

The local permutes around the all-to-alls are tiered ops (`tiers.OPS`:
ep_permute.pack / ep_permute.combine, forced with SGLANG_AMD_EP_PERMUTE_TIER or
each op's own variable); the capability owns them, so a forced tier that cannot
run here is refused at start like any family's.

Never imports sglang.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from sglang_amd.ep.config import (
    DEEPEP_MODES,
    FP8_BLOCK,
    LOW_LATENCY_MAX_TOKENS_ENV,
    MXFP4_BLOCK,
    WIRES,
    EpError,
    low_latency_max_tokens,
)
from sglang_amd.flags import EP_A2A_BACKEND, MOE_RUNNER_BACKEND, QUANTIZATION, server_device
from sglang_amd.model_info import text_config

A2A_BACKEND = EP_A2A_BACKEND
FLAG = f"--moe-a2a-backend {A2A_BACKEND}"
TIER_ENV = "SGLANG_AMD_EP_TIER"
WIRE_ENV = "SGLANG_AMD_EP_WIRE"
TIERS = ("auto", "torch", "mori")
PERMUTE_OPS = ("ep_permute.pack", "ep_permute.combine")


def ep_flags_used(server_args: Any) -> list[str]:
    return [FLAG] if getattr(server_args, "moe_a2a_backend", None) == A2A_BACKEND else []


def wire_format() -> str:
    wire = os.environ.get(WIRE_ENV, "none") or "none"
    if wire not in WIRES:
        raise EpError(f"{WIRE_ENV}={wire!r}: expected one of {', '.join(WIRES)}")
    return wire


def transport_tier() -> tuple[str, str]:
    """(tier, why) the communicator runs on; raises EpError for a tier that cannot."""
    asked = os.environ.get(TIER_ENV, "auto") or "auto"
    if asked not in TIERS:
        raise EpError(f"{TIER_ENV}={asked!r}: expected one of {', '.join(TIERS)}")
    mori = importlib.util.find_spec("mori") is not None
    if asked == "mori":
        raise EpError(
            f"{TIER_ENV}=mori: sglang-amd has no MoRI tier yet "
            f"({'mori imports here' if mori else 'mori is not installed'}); use {TIER_ENV}=torch"
        )
    note = " (mori imports, but sglang-amd has no MoRI tier yet)" if mori else ""
    return "torch", "torch.distributed all_to_all (NCCL/RCCL on GPUs, gloo on CPU)" + note


def ep_problems(server_args: Any, model_config: Any | None) -> list[str]:
    """Why our communicator cannot serve these flags; empty when it can."""
    if not ep_flags_used(server_args):
        return []
    problems = []
    tp, ep = getattr(server_args, "tp_size", 1), getattr(server_args, "ep_size", 1)
    if ep != tp:
        problems.append(f"{FLAG} needs --ep-size equal to --tp-size for now (got {ep} and {tp})")
    if getattr(server_args, "enable_dp_attention", False):
        problems.append(f"{FLAG} does not serve DP attention yet; drop --enable-dp-attention")
    for name in ("enable_two_batch_overlap", "enable_single_batch_overlap"):
        if getattr(server_args, name, False):
            flag = "--" + name.replace("_", "-")
            problems.append(f"{FLAG} does not overlap batches yet; drop {flag}")
    runner = getattr(server_args, "moe_runner_backend", None)
    if runner != MOE_RUNNER_BACKEND and getattr(server_args, "quantization", None) != QUANTIZATION:
        problems.append(
            f"{FLAG} feeds our MoE runner; add --moe-runner-backend {MOE_RUNNER_BACKEND} "
            f"(got {runner})"
        )
    mode = getattr(server_args, "deepep_mode", "auto")
    if mode not in DEEPEP_MODES:
        problems.append(f"--deepep-mode {mode}: expected one of {', '.join(DEEPEP_MODES)}")
    for check in (wire_format, transport_tier, low_latency_max_tokens):
        try:
            check()
        except EpError as e:
            problems.append(str(e))
    hf = getattr(model_config, "hf_config", None)
    if hf is not None and not problems:
        problems.extend(_shape_problems(text_config(hf)))
    return problems


def _shape_problems(config: Any) -> list[str]:
    hidden, wire = getattr(config, "hidden_size", None), wire_format()
    block = {"fp8": FP8_BLOCK, "mxfp4": MXFP4_BLOCK}.get(wire)
    if block and hidden and hidden % block:
        return [f"{WIRE_ENV}={wire} needs hidden_size a multiple of {block} (got {hidden})"]
    return []


def ep_graph_refusals(server_args: Any, graphs: Any) -> dict[str, str]:
    """High-throughput batches read the counts on the host, so a phase is captured
    only when every batch in it takes the low-latency mode."""
    if not ep_flags_used(server_args) or server_device(server_args) == "cpu":
        return {}
    refusals = {}
    mode = getattr(server_args, "deepep_mode", "auto")
    for phase in ("decode", "prefill"):
        if str(getattr(getattr(graphs, phase), "backend", "disabled")) == "disabled":
            continue
        if phase == "decode" and mode == "low_latency":
            continue
        refusals[phase] = f"{FLAG}'s high-throughput mode reads token counts on the host" + (
            " (--deepep-mode low_latency keeps decode graphs)" if phase == "decode" else ""
        )
    return refusals


def env_lines() -> list[str]:
    """`sglang-amd env`: the transport tier, wire and mode rule the communicator would use."""
    try:
        tier, why = transport_tier()
    except EpError as e:
        tier, why = "ERROR", str(e)
    try:
        wire = wire_format()
    except EpError as e:
        wire = f"ERROR: {e}"
    try:
        threshold = str(low_latency_max_tokens())
    except EpError as e:
        threshold = f"ERROR: {e}"
    return [
        f"expert parallelism ({FLAG} --ep-size N):",
        f"  transport {tier}: {why} (force with {TIER_ENV}=auto|torch)",
        f"  wire      {wire} (dispatch payload; {WIRE_ENV}=none|fp8|mxfp4)",
        f"  mode      --deepep-mode auto: extend and decode above {threshold} tokens a rank ->"
        f" high_throughput, smaller decode -> low_latency ({LOW_LATENCY_MAX_TOKENS_ENV})",
    ]
