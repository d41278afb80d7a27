"""How weights, KV cache and linear-attention state share one GPU, by SGLang's own arithmetic.

Where it sits: the sglang-free half of `sglang-amd doctor`'s GPU budget.
`sglang_memory.py` reads the launch flags and the per-request linear-attention
state from SGLang and hands the numbers here. Each function mirrors the SGLang
0.5.23 function named in its docstring, for the launch the doctor plans: one GPU
per rank, aggregated serving (no PD disaggregation), no speculative decoding, no
DP attention, text only; `sglang_memory.unmirrored` names a launch outside that.
Never imports sglang.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 1 << 30


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    # SGLang's graph defaults differ by platform: prefill graphs are on by default
    # on CUDA only (cuda_graph_config.default_prefill_backend).
    platform: str  # "rocm" or "cuda"


# The vendors' HBM capacities: AMD Instinct MI300X 192 GB and MI355X 288 GB, NVIDIA
# H100 (SXM) 80 GB, H200 141 GB, B200 180 GB. HBM stacks come in binary sizes, so the
# figures are read as GiB. The driver reports a little less (SGLang measures what is
# free before loading: an H200 shows about 139-140 GiB), so a budget from this table
# is an upper bound by that margin; --gpu-memory takes a measured figure instead.
GPUS = {
    "MI300X": Gpu("MI300X", 192, "rocm"),
    "MI355X": Gpu("MI355X", 288, "rocm"),
    "H100": Gpu("H100", 80, "cuda"),
    "H200": Gpu("H200", 141, "cuda"),
    "B200": Gpu("B200", 180, "cuda"),
}


@dataclass(frozen=True)
class LaunchShape:
    """The serve flags SGLang's default `--mem-fraction-static` reads (None: not given)."""

    tp: int = 1
    pp: int = 1
    mla: bool = False  # SGLang's use_mla_backend: MLA prefill graphs reserve more
    chunked_prefill_size: int | None = None
    max_prefill_tokens: int = 16384
    max_running_requests: int | None = None
    max_total_tokens: int | None = None
    decode_graph: bool = True
    prefill_graph: bool | None = None  # None: the platform's default
    decode_max_bs: int | None = None


def capacity_defaults(gpu_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, decode CUDA-graph max batch) SGLang picks by GPU memory:
    the "GPU-dependent capacity defaults" of memory_hook.handle_gpu_memory_settings."""
    if gpu_mib < 20 * 1024:
        return 2048, 8
    if gpu_mib < 35 * 1024:
        return 4096, 48 if tp < 4 else 160
    if gpu_mib < 60 * 1024:
        return 4096, 32 if tp < 4 else 160
    if gpu_mib < 160 * 1024:  # SGLang's <90 GiB and <160 GiB branches pick the same
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def prefill_graph_sizes(max_bs: int) -> list[int]:
    """cuda_graph_hook.generate_prefill_cuda_graph_batch_sizes (its length sets a reserve)."""
    sizes = (
        list(range(4, 33, 4))
        + list(range(48, 257, 16))
        + list(range(288, 513, 32))
        + list(range(576, 1024 + 1, 64))
        + list(range(1280, 4096 + 1, 256))
        + list(range(4608, max_bs + 1, 512))
    )
    return [s for s in sizes if s <= max_bs]


def default_mem_fraction_static(gpu: Gpu, launch: LaunchShape) -> float:
    """SGLang's `--mem-fraction-static` when none is given: memory_hook.handle_gpu_memory_settings
    with reserve_for_graph_mb, on the branch SGLang takes by default (post-capture KV sizing
    off, SGLANG_ENABLE_POST_CAPTURE_KV_SIZING's default; not a PD decode server)."""
    gpu_mib = gpu.memory_gib * 1024
    chunked, max_bs = capacity_defaults(gpu_mib, launch.tp)
    if launch.chunked_prefill_size is not None:
        chunked = launch.chunked_prefill_size
    if launch.decode_max_bs is not None:
        max_bs = launch.decode_max_bs
    elif launch.max_running_requests is not None and max_bs > launch.max_running_requests:
        max_bs = launch.max_running_requests
    activation_tokens = max(chunked if chunked > 0 else launch.max_prefill_tokens, 2048)
    reserved = 512 + activation_tokens * 1.5 + launch.tp * launch.pp / 8 * 1024
    # reserve_for_graph_mb: the phases still on when the default is computed (before
    # our backend turns any off, which happens later in resolution).
    if launch.decode_graph:
        reserved += max_bs * 2
    prefill_graph = launch.prefill_graph
    if prefill_graph is None:  # breakable on CUDA, off elsewhere; off by default under PP
        prefill_graph = gpu.platform == "cuda" and launch.pp == 1
    if prefill_graph:
        if launch.mla:
            reserved += 1.5 * 1024
        else:
            prefill_max_bs = chunked
            if launch.max_total_tokens is not None:
                prefill_max_bs = min(prefill_max_bs, launch.max_total_tokens)
            reserved += len(prefill_graph_sizes(prefill_max_bs)) * 8
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mib - reserved) / gpu_mib, 3)


@dataclass(frozen=True)
class LinearStatePlan:
    """The per-request linear-attention state and the flags that size its pool."""

    bytes_per_request: int  # BaseLinearStateParams.mamba_cache_per_req, this rank
    slots_per_request: int  # kv_cache_configurator._calculate_mamba_ratio
    full_memory_ratio: float = 0.9  # --mamba-full-memory-ratio (SGLang's fallback)
    max_mamba_cache_size: int | None = None  # --max-mamba-cache-size
    radix_disabled_running: int | None = None  # --max-running-requests under --disable-radix-cache


def linear_state_slots(rest_gib: float, plan: LinearStatePlan) -> int:
    """State slots in the pool (max_mamba_cache_size): KVCacheConfigurator._handle_max_mamba_cache
    without speculative decoding or ReplaySSM (no intermediate state, no ring)."""
    if plan.max_mamba_cache_size is not None:
        return plan.max_mamba_cache_size
    if plan.radix_disabled_running is not None:
        return max(1, plan.radix_disabled_running)
    # mamba_full_memory_ratio splits what the weights leave between state and KV.
    budget = rest_gib * plan.full_memory_ratio / (1 + plan.full_memory_ratio) * GIB
    return int((budget - plan.bytes_per_request) // plan.bytes_per_request)


def max_running_requests(
    tokens: int, context_len: int, requested: int | None, state_cap: int | None
) -> int:
    """KVCacheConfigurator.resolve_max_num_reqs (one DP worker)."""
    estimated = max(min(int(tokens / context_len * 512), 4096), 2048)
    running = min(max(1, requested) if requested is not None else estimated, tokens // 2)
    return running if state_cap is None else min(running, state_cap)


def _no_room(weights_gib: float, gpu: Gpu, fraction: float, tp: int) -> str:
    # SGLang's own refusal (_profile_available_bytes) and its suggestion: raise the
    # fraction above 1 - available/pre-load memory, which is weights / GPU memory here.
    need = math.ceil(weights_gib / gpu.memory_gib * 1000) / 1000
    fix = (f"raise --tp-size (the weights shard over it) or --mem-fraction-static above {need:.3f}"
           if need < 1 else
           f"raise --tp-size (the weights shard over it); no --mem-fraction-static can help, "
           f"they exceed the GPU's {gpu.memory_gib:g} GiB")  # fmt: skip
    return (f"weights do not fit: {weights_gib:.2f} GiB per rank against {fraction} x {gpu.memory_gib:g} GiB "
            f"= {fraction * gpu.memory_gib:.2f} GiB static on {gpu.name} at --tp-size {tp}, so SGLang "
            f"stops at start (\"Loaded weights leave no GPU memory for the KV cache\"): {fix}")  # fmt: skip


def kv_budget(
    gpu: Gpu,
    fraction: float,
    weights_bytes: float,
    kv_bytes_per_token: int,
    context_len: int,
    *,
    tp: int = 1,
    page_size: int = 1,
    max_total_tokens: int | None = None,
    requested_running: int | None = None,
    state: LinearStatePlan | None = None,
) -> tuple[dict, list[str]]:
    """Tokens the KV pool holds per rank, and the reasons SGLang would refuse to start.

    KVCacheConfigurator._profile_available_bytes (free memory after loading minus the
    slack pre-load memory x (1 - fraction), the GPU's capacity standing for both
    measurements), _handle_max_mamba_cache for hybrid models, then
    DefaultPoolConfigurator.calculate_pool_sizes (bytes // per-token bytes, page-aligned)
    and _apply_token_constraints (--max-total-tokens)."""
    weights_gib = weights_bytes / GIB
    rest_gib = (gpu.memory_gib - weights_gib) - gpu.memory_gib * (1 - fraction)
    out: dict = {"gpu": gpu.name, "gpu_memory_gib": gpu.memory_gib, "mem_fraction_static": fraction,
                 "static_gib_per_rank": round(gpu.memory_gib * fraction, 2),
                 "weights_gib_per_rank": round(weights_gib, 2)}  # fmt: skip
    if rest_gib <= 0:
        # For a hybrid model SGLang fails first sizing the state pool from this
        # negative rest; the cause and the fix are the same.
        return out, [_no_room(weights_gib, gpu, fraction, tp)]
    blocking: list[str] = []
    state_cap = None
    if state is not None:
        slots = linear_state_slots(rest_gib, state)
        state_cap = slots // state.slots_per_request
        # +1: each state pool keeps a padding slot (memory_pool.py).
        state_gib = (slots + 1) * state.bytes_per_request / GIB
        out["linear_state"] = {"slots": slots, "slots_per_request": state.slots_per_request,
                               "requests": state_cap, "gib_per_rank": round(state_gib, 2)}  # fmt: skip
        if slots <= 0 or state_cap <= 0:
            blocking.append(f"the linear-attention state pool holds {slots} slots ({state.slots_per_request} "
                            "per request): SGLang stops at start; raise --mem-fraction-static or --tp-size, "
                            "or --mamba-full-memory-ratio")  # fmt: skip
            return out, blocking
        rest_gib -= state_gib
        if rest_gib <= 0:  # an explicit --max-mamba-cache-size can leave no room
            blocking.append(f"the linear-attention state ({slots} slots, {state_gib:.2f} GiB per rank) leaves "
                            "no memory for the KV cache: SGLang stops at start; lower --max-mamba-cache-size")  # fmt: skip
            return out, blocking
    kv_bytes = int(rest_gib * GIB)
    tokens = kv_bytes // kv_bytes_per_token // page_size * page_size
    if max_total_tokens is not None:
        tokens = min(tokens, max_total_tokens) // page_size * page_size
    out["kv_pool_gib_per_rank"] = round(kv_bytes / GIB, 2)
    out["kv_tokens_per_rank"] = tokens
    if tokens <= 0:  # MemoryPoolConfig's refusal
        blocking.append("the KV pool holds no token: SGLang stops at start ('Not enough memory'); "
                        "raise --mem-fraction-static or --tp-size")  # fmt: skip
        return out, blocking
    out["requests_at_full_context"] = tokens // context_len
    out["max_running_requests"] = max_running_requests(
        tokens, context_len, requested_running, state_cap
    )
    return out, blocking
