"""`sglang-amd doctor`'s memory adapter: linear-attention state and GPU budget as SGLang sizes them.

Where it sits: between `sglang_probe.py` and SGLang, beside `gpu_budget.py` (the
arithmetic). The per-request linear-attention state comes from SGLang's own
config classes (`mambaish_config(...).mamba2_cache_params`, the shapes and dtypes
its state pool allocates), asked under a parallel override for the planned TP
since no process group exists here; the state slots a request takes come from
SGLang's own strategy resolution. The launch's memory flags are read off the
parsed, not yet resolved, server arguments: the user's values, None where SGLang
would pick a default.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from sglang_amd.doctor import gpu_budget


def _dtype(t: Any) -> str:
    return str(t).replace("torch.", "")


def linear_state(model_config: Any, view: Any, tp: int) -> dict | None:
    """Conv + SSM state one request keeps on one rank, over the linear-attention layers
    (BaseLinearStateParams.mamba_cache_per_req); None for a model without such layers."""
    from sglang.srt.configs.hybrid_arch import mambaish_config
    from sglang.srt.environ import envs
    from sglang.srt.runtime_context import get_parallel

    # --mamba-ssm-dtype reaches the state classes through this variable
    # (serving_hook.handle_environment_variables), above the config's own field.
    ssm = view.mamba_ssm_dtype
    ssm_env = envs.SGLANG_MAMBA_SSM_DTYPE.override(ssm) if ssm else contextlib.nullcontext()
    # linear_attn_tp_size() is the attention-TP width: tp, without DP attention or CP.
    with get_parallel().override(attn_tp_size=tp, enable_cp_tp_group_sharing=False), ssm_env:
        config = mambaish_config(model_config)
        if config is None:
            return None
        # On a CPU host SGLang pads indivisible linear heads into the config in place.
        config = copy.deepcopy(config)
        try:
            params = config.mamba2_cache_params
        except Exception as exc:  # noqa: BLE001 - e.g. heads that do not divide over tp
            return {"error": f"SGLang cannot shard the linear-attention state over tp {tp}: {exc}"}
    shape = params.shape
    return {
        "layers": len(params.layers),
        "conv_shapes_per_layer": [list(s) for s in shape.conv],
        "conv_dtype": _dtype(params.dtype.conv),
        "ssm_shape_per_layer": list(shape.temporal),
        "ssm_dtype": _dtype(params.dtype.temporal),
        "bytes_per_request_per_rank": int(params.mamba_cache_per_req),
        "sglang_config": f"{type(config).__module__}.{type(config).__qualname__}.mamba2_cache_params",
    }


def slots_per_request(view: Any) -> int:
    """State slots SGLang budgets per running request: KVCacheConfigurator._calculate_mamba_ratio,
    after the radix-cache strategy SGLang resolves (overrides._mamba_radix_cache_resolution)."""
    from sglang.srt.arg_groups.overrides import _mamba_radix_cache_resolution
    from sglang.srt.environ import envs
    from sglang.srt.mem_cache.allocation_sizing import get_mamba_tracking_slots
    from sglang.srt.mem_cache.kv_cache_configurator import (
        MAMBA_CACHE_BASE_RATIO_DROP_ON_SKIP,
        MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO,
        MAMBA_CACHE_V2_ADDITIONAL_RATIO_NO_BUFFER,
    )

    if view.disable_radix_cache:
        return 1
    declared = _mamba_radix_cache_resolution(view)
    strategy = declared.get("mamba_radix_cache_strategy", view.mamba_radix_cache_strategy)
    overlap = not declared.get("disable_overlap_schedule", view.disable_overlap_schedule)
    skip_lock = envs.SGLANG_OPT_MAMBA_SKIP_DECODE_LOCK.get()
    base = MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO - (
        MAMBA_CACHE_BASE_RATIO_DROP_ON_SKIP if skip_lock else 0
    )
    if strategy in ("extra_buffer", "extra_buffer_lazy"):
        return base + get_mamba_tracking_slots(
            extra_buffer=True, overlap=overlap, lazy=strategy == "extra_buffer_lazy"
        )
    return base + (MAMBA_CACHE_V2_ADDITIONAL_RATIO_NO_BUFFER if skip_lock else 0)


def _phase_on(backend: str | None, off: bool) -> bool | None:
    """A graph phase as the flags give it (cuda_graph_hook.parse_cuda_graph_config: the
    backend flag above the off switches); None where SGLang's default decides."""
    if backend:
        return backend != "disabled"
    return False if off else None


def launch_shape(view: Any, mla: bool) -> gpu_budget.LaunchShape:
    """The flags SGLang's default --mem-fraction-static reads, as given (None: its default)."""
    off = view.disable_cuda_graph
    decode = _phase_on(view.cuda_graph_backend_decode, off or view.disable_decode_cuda_graph)
    return gpu_budget.LaunchShape(
        tp=view.tp_size,
        pp=view.pp_size,
        mla=mla,
        chunked_prefill_size=view.chunked_prefill_size,
        max_prefill_tokens=view.max_prefill_tokens,
        max_running_requests=view.max_running_requests,
        max_total_tokens=view.max_total_tokens,
        decode_graph=decode is not False,  # decode graphs are on by default everywhere
        prefill_graph=_phase_on(
            view.cuda_graph_backend_prefill, off or view.disable_prefill_cuda_graph
        ),
        decode_max_bs=view.cuda_graph_max_bs_decode,
    )


def graph_phases(view: Any, device: str, gpu: gpu_budget.Gpu | None) -> dict[str, str]:
    """Decode and prefill CUDA graphs as the launch will have them, read from the flags
    (SGLang resolves `cuda_graph_config` only inside the server, after this report):
    a backend flag names the phase's backend; the off switches turn it off; else
    SGLang's default, decode graphs on every GPU and prefill graphs on CUDA only
    (`cuda_graph_config.default_prefill_backend`). A CPU server has none."""
    if device == "cpu" and gpu is None:
        return {"decode": "disabled (CPU server)", "prefill": "disabled (CPU server)"}
    off = view.disable_cuda_graph
    decode = view.cuda_graph_backend_decode
    prefill = view.cuda_graph_backend_prefill
    out = {}
    for phase, backend, switch in (
        ("decode", decode, off or view.disable_decode_cuda_graph),
        ("prefill", prefill, off or view.disable_prefill_cuda_graph),
    ):
        if backend:
            out[phase] = str(backend)
        elif switch:
            out[phase] = "disabled (flag)"
        elif phase == "decode":
            out[phase] = "on (SGLang default)"
        elif view.pp_size > 1:
            out[phase] = "off (SGLang default under pipeline parallelism)"
        else:  # as gpu_budget.default_mem_fraction_static reads the same default
            cuda = gpu is None or gpu.platform == "cuda"
            out[phase] = "on (SGLang default on CUDA)" if cuda else "off (SGLang default on ROCm)"
    return out


def unmirrored(view: Any, model_config: Any) -> list[str]:
    """What the launch uses that the budget's arithmetic leaves out."""
    checks = (
        (view.speculative_algorithm, "speculative decoding (draft weights, KV and state)"),
        (view.disaggregation_mode != "null", "PD disaggregation"),
        (view.enable_dp_attention, "DP attention"),
        (view.moe_a2a_backend == "deepep", "DeepEP buffers"),
        (view.enable_kv_cache_sharding, "KV-cache sharding"),
        (view.enable_unified_memory, "the unified memory pool"),
        (model_config.is_multimodal, "the multimodal reserve"),
    )
    return [what for on, what in checks if on]


def add_budget(report: dict, view: Any, model_config: Any, gpu: gpu_budget.Gpu) -> None:
    """report["gpu_budget"], and a blocking reason where SGLang would refuse to start."""
    notes = report["notes"]
    weights = report.get("weights") or {}
    if "per_rank_bytes" not in weights:
        notes.append("no GPU budget without the weight estimate")
        return
    att = report["attention"]
    if view.pp_size > 1 or att["layers"].get("sliding"):
        notes.append(
            "no GPU budget: pipeline parallelism and sliding-window pools are not mirrored"
        )
        return
    state = report.get("linear_state")
    if state and "error" in state:
        notes.append(f"no GPU budget: {state['error']}")
        return
    left_out = unmirrored(view, model_config)
    if left_out:
        notes.append(f"the GPU budget leaves out {', '.join(left_out)}")
    fraction = given = view.mem_fraction_static
    if given is None:
        shape = launch_shape(view, mla=bool(att.get("kv_lora_rank")))
        fraction = gpu_budget.default_mem_fraction_static(gpu, shape)
    plan = None
    if state:
        plan = gpu_budget.LinearStatePlan(
            bytes_per_request=state["bytes_per_request_per_rank"],
            slots_per_request=slots_per_request(view),
            full_memory_ratio=view.mamba_full_memory_ratio or 0.9,  # SGLang's fallback
            max_mamba_cache_size=view.max_mamba_cache_size,
            radix_disabled_running=view.max_running_requests if view.disable_radix_cache else None,
        )
    kv = report["kv_cache"]
    budget, blocking = gpu_budget.kv_budget(
        gpu,
        fraction,
        weights["per_rank_bytes"],
        sum(kv["bytes_per_token_per_rank"].values()),
        kv["context_length"],
        tp=view.tp_size,
        page_size=view.page_size or 1,  # SGLang's default off MUSA (_page_size_default)
        max_total_tokens=view.max_total_tokens,
        requested_running=view.max_running_requests,
        state=plan,
    )
    budget["mem_fraction_static_from"] = (
        "SGLang's default rule" if given is None else "--mem-fraction-static"
    )
    report["gpu_budget"] = budget
    report["blocking"] += blocking
