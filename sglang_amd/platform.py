"""CPU reference platform: SGLang on a machine without an accelerator.

Selected only with `SGLANG_PLATFORM=sglang_amd_cpu` (the entry point name in
group `sglang.srt.platforms`); `activate()` returns None otherwise, so a GPU
machine is never taken over. It is SGLang's in-tree CPU platform marked
out-of-tree, which routes layers such as rotary embedding to their native torch
paths (the in-tree CPU path needs sgl-kernel's CPU build, not on PyPI), with our
attention backend as the default.
"""

from __future__ import annotations

import functools
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

# A hybrid model's state pool (--max-mamba-cache-size: the per-request recurrent and
# conv states of its linear-attention layers, e.g. Qwen3-Next's Gated DeltaNet) is
# sized by SGLang from free memory, which on this platform is RAM: 5.4 GB on a
# 24 GB machine, allocated and zeroed at every start. Here an unset size is derived
# from the token pool instead: MAMBA_SLOTS_PER_REQUEST slots (SGLang's most per
# running request: 3, plus 2 extra_buffer tracking slots under the overlap
# schedule) for each request the server can run at once (--max-running-requests,
# else one per 2 tokens of --max-total-tokens, SGLang's own bound, at most
# DEFAULT_MAX_RUNNING_REQUESTS). A size the user gives stands. Ignored by models
# without such layers.
MAMBA_SLOTS_PER_REQUEST = 5
DEFAULT_MAX_RUNNING_REQUESTS = 256

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

    def support_mamba_cache_extra_buffer(self) -> bool:
        # SGLang's extra_buffer strategy (its default for hybrid models under the
        # overlap schedule or pages > 1) snapshots the linear-attention states at
        # track points for the radix cache. Its snapshot copies are plain tensor
        # copies here, or the torch tier of patches/cpu_gdn.py where SGLang calls
        # a Triton kernel; served and checked against HF (test_e2e_qwen3_next.py).
        return True

    def init_backend(self) -> None:
        cpu_current_device()
        no_pinning_without_cuda()

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
        if getattr(server_args, "max_mamba_cache_size", None) is None:
            server_args.max_mamba_cache_size = mamba_cache_size(
                server_args.max_total_tokens, getattr(server_args, "max_running_requests", None)
            )
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


def mamba_cache_size(max_total_tokens: int, max_running_requests: int | None) -> int:
    """State slots of a hybrid model's pool on this platform (see MAMBA_SLOTS_PER_REQUEST)."""
    requests = max_running_requests or min(
        max(1, max_total_tokens // 2), DEFAULT_MAX_RUNNING_REQUESTS
    )
    return MAMBA_SLOTS_PER_REQUEST * requests


class _CpuDefaultDeviceModule:
    """`torch.get_device_module()` in this platform's processes: the module torch
    would return (torch.cuda in a CUDA build, GPU or not) with `current_device()`
    naming the CPU, the device this platform serves on."""

    def __init__(self, module) -> None:
        self._module = module

    def current_device(self) -> torch.device:
        return torch.device("cpu")

    def __getattr__(self, name: str):
        return getattr(self._module, name)


def cpu_current_device() -> None:
    """Make `torch.get_device_module().current_device()` answer the CPU. Idempotent.

    SGLang's model code places some parameters there at build (Qwen3-Next's gated
    RMSNorm in each Gated DeltaNet layer). With the CUDA build of torch SGLang
    installs, the default device module is torch.cuda even on a machine with no
    GPU, so that call raises "Found no NVIDIA driver" (and on a GPU machine would
    put those weights on cuda:0 beside a CPU model). Only the no-argument form
    changes; `get_device_module("cuda")` and every other attribute are torch's.
    """
    original = torch.get_device_module
    if getattr(original, "_sglang_amd_cpu", False):
        return

    # functools.wraps keeps `__wrapped__`: torch.compile (SGLang's compiled top-k and
    # activations) registers its handler through `torch.get_device_module.__wrapped__`.
    @functools.wraps(original)
    def get_device_module(device=None):
        module = original(device)
        return _CpuDefaultDeviceModule(module) if device is None else module

    get_device_module._sglang_amd_cpu = True
    torch.get_device_module = get_device_module


def no_pinning_without_cuda() -> None:
    """Where torch has no CUDA device, `Tensor.pin_memory()` returns the tensor. Idempotent.

    Pinned host memory only speeds up copies to a GPU; without one torch raises
    ("Found no NVIDIA driver") instead. SGLang pins without asking first on one
    path this platform serves: the extra_buffer decode step of a hybrid model
    (`ScheduleBatch.prepare_for_decode`, the radix cache's track mask). Its copy
    to the CPU device is then a plain one. With a CUDA device nothing changes.
    """
    if torch.cuda.is_available() or getattr(torch.Tensor.pin_memory, "_sglang_amd_cpu", False):
        return

    def pin_memory(self, *args, **kwargs):
        return self

    pin_memory._sglang_amd_cpu = True
    torch.Tensor.pin_memory = pin_memory


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
