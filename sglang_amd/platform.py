"""CPU reference platform: SGLang on a machine without an accelerator.

Selected only with `SGLANG_PLATFORM=sglang_amd_cpu` (the entry point name in
group `sglang.srt.platforms`); `activate()` returns None otherwise, so a GPU
machine is never taken over. It is SGLang's in-tree CPU platform marked
out-of-tree, which routes layers such as rotary embedding to their native torch
paths (the in-tree CPU path needs sgl-kernel's CPU build, not on PyPI), with our
attention backend as the default.
"""

from __future__ import annotations

import logging
import os

import torch
from sglang.srt.platforms.cpu import CpuSRTPlatform
from sglang.srt.platforms.device_mixin import PlatformEnum

from sglang_amd.flags import (
    ATTENTION_BACKEND,
    CPU_PLATFORM,
    MOE_RUNNER_BACKEND,
    SPECULATIVE_ALGORITHMS,
)

logger = logging.getLogger(__name__)

PLATFORM_NAME = CPU_PLATFORM
THREADS_BIND_ENV = "SGLANG_CPU_OMP_THREADS_BIND"

# SGLang sizes the KV pool from free RAM (14 GB on a 24 GB machine, 20 s to
# allocate). A reference platform serves small models for correctness work, so
# an unset --max-total-tokens defaults to this.
DEFAULT_MAX_TOTAL_TOKENS = 32768

# intel_amx (SGLang's default on x86 CPUs) needs sgl-kernel's CPU build, which
# this platform exists to avoid; an explicit choice of it is replaced too.
_CPU_BACKENDS_NEEDING_SGL_KERNEL = {None, "intel_amx"}


def activate() -> str | None:
    """Entry point: our platform class when selected by SGLANG_PLATFORM, else None."""
    if os.environ.get("SGLANG_PLATFORM") != PLATFORM_NAME:
        return None
    return f"{__name__}.AmdCpuReferencePlatform"


class AmdCpuReferencePlatform(CpuSRTPlatform):
    """SGLang's CPU platform, out of tree, defaulting to `--attention-backend amd`."""

    _enum = PlatformEnum.OOT

    def get_default_attention_backend(self) -> str:
        return ATTENTION_BACKEND

    def get_default_speculative_draft_attention_backend(self, algorithm: str) -> str:
        return ATTENTION_BACKEND

    def supports_speculative_algorithm(self, algorithm: str) -> bool:
        return str(algorithm).upper() in SPECULATIVE_ALGORITHMS

    def supports_speculative_draft_attention_backend(self, algorithm: str, backend: str) -> bool:
        return backend == ATTENTION_BACKEND and self.supports_speculative_algorithm(algorithm)

    def get_speculative_cache_locs_fn(self):
        return speculative_cache_locs

    def apply_server_args_defaults(self, server_args) -> None:
        if server_args.attention_backend in _CPU_BACKENDS_NEEDING_SGL_KERNEL:
            if server_args.attention_backend is not None:
                logger.info(
                    "sglang-amd cpu platform: --attention-backend %s needs sgl-kernel's "
                    "CPU build; using %s",
                    server_args.attention_backend,
                    ATTENTION_BACKEND,
                )
            server_args.attention_backend = ATTENTION_BACKEND
        if server_args.max_total_tokens is None:
            server_args.max_total_tokens = DEFAULT_MAX_TOTAL_TOKENS
        ranks = 1
        for name in ("tp_size", "pp_size", "dp_size"):
            ranks *= getattr(server_args, name, 1) or 1
        if ranks > 1 and not os.environ.get(THREADS_BIND_ENV):
            # SGLang asserts one NUMA node per rank unless told which cores each
            # rank owns; the servers here are small, so ranks share the machine.
            os.environ[THREADS_BIND_ENV] = cpu_binds(ranks, sorted(os.sched_getaffinity(0)))
            logger.info(
                "sglang-amd cpu platform: %s=%s", THREADS_BIND_ENV, os.environ[THREADS_BIND_ENV]
            )
        ep, runner = (
            getattr(server_args, "ep_size", 1),
            getattr(server_args, "moe_runner_backend", None),
        )
        if ep > 1 and runner == "auto":
            # SGLang's native CPU MoE cannot take the -1 ids of experts on other ranks.
            logger.info(
                "sglang-amd cpu platform: --ep-size > 1 uses --moe-runner-backend %s",
                MOE_RUNNER_BACKEND,
            )
            server_args.moe_runner_backend = MOE_RUNNER_BACKEND


def cpu_binds(ranks: int, cpus: list[int]) -> str:
    """SGLANG_CPU_OMP_THREADS_BIND for `ranks` ranks: contiguous equal shares of
    `cpus` when there are enough, else every rank on all of them."""
    if len(cpus) < ranks:
        share = [cpus] * ranks
    else:
        size = len(cpus) // ranks
        share = [cpus[r * size : (r + 1) * size] for r in range(ranks)]
    return "|".join(",".join(str(c) for c in part) for part in share)


def speculative_cache_locs(
    *,
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    batch_size: int,
    draft_token_num: int,
    device,
) -> torch.Tensor:
    """KV slots of the verify window: req_to_token[row_b, start_b : start_b + n], flat int64.

    SGLang's seam for out-of-tree platforms (its own versions are Triton, NPU or
    sgl-kernel CPU ops); every row spans `draft_token_num` = end - start tokens.
    """
    del end_offset, device
    cols = start_offset.long().view(-1, 1) + torch.arange(
        draft_token_num, device=start_offset.device
    )
    rows = req_pool_indices.long().view(-1, 1)[:batch_size]
    return req_to_token[rows, cols[:batch_size]].reshape(-1).to(torch.int64)
