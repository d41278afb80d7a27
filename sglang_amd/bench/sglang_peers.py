"""SGLang's own kernels as benchmark peers, loaded when SGLang is installed.

`sglang-amd bench` compares ours with these in the same run; the bench modules
stay importable without SGLang (the GPU test image), so every SGLang import of
theirs lives here and a missing or changed SGLang is a reason in the table, not
a crash. Imports sglang (lazily).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import partial

import torch


def sglang_moe_peer(x, w13, w2, weights, ids) -> tuple[Callable[[], object] | None, str]:
    """SGLang's fused_experts (its Triton MoE kernel) on these tensors, or None and why."""
    if importlib.util.find_spec("sglang") is None:
        return None, "not installed here"
    try:
        from sglang.srt.layers.moe.moe_runner.base import MoeRunnerConfig
        from sglang.srt.layers.moe.moe_runner.triton_utils.fused_moe import fused_experts
        from sglang.srt.layers.moe.topk import StandardTopKOutput

        if x.device.type != "cuda":
            return None, "not run: SGLang's Triton MoE kernel needs a GPU"
        topk = StandardTopKOutput(weights, ids.to(torch.int32), None)
        config = MoeRunnerConfig(num_experts=w13.shape[0], inplace=False, top_k=ids.shape[1])
        return partial(fused_experts, x, w13, w2, topk, config), ""
    except Exception as exc:  # an API it does not offer here is reported, not fatal
        return None, f"unavailable: {type(exc).__name__}: {exc}"[:120]
