"""What `--attention-backend amd` serves, checked once at server start.

Two callers share these rules: the resolution hook `plugin.py` registers (runs
in the launcher while ServerArgs resolve, so a bad flag fails before any process
or weight is loaded) and `AmdAttnBackend.__init__` (the same rules against the
live ModelRunner, for engines built without the launcher). Every message names
the flag or value to change. Imports nothing from sglang at import time.
"""

from __future__ import annotations

import os
from typing import Any

from sglang_amd.attention.head_dims import unsupported_dims
from sglang_amd.flags import (
    ATTENTION_BACKEND,
    SPECULATIVE_ALGORITHMS,
    UnsupportedConfigError,
    env_on,
    server_device,
)
from sglang_amd.model_info import text_config

# KV-cache dtypes the pool stores as plain floats; the quantized ones need
# scale handling our kernels do not have yet.
_FLOAT_KV_DTYPES = {"auto", "bf16", "bfloat16", "fp16", "float16", "half", "fp32", "float32"}


def backend_flags_using_amd(server_args: Any) -> list[str]:
    """The attention flags of `server_args` that select our backend."""
    flags = []
    for field, flag in (
        ("attention_backend", "--attention-backend"),
        ("prefill_attention_backend", "--prefill-attention-backend"),
        ("decode_attention_backend", "--decode-attention-backend"),
        ("speculative_draft_attention_backend", "--speculative-draft-attention-backend"),
    ):
        if getattr(server_args, field, None) == ATTENTION_BACKEND:
            flags.append(flag)
    return flags


def unsupported_reasons(server_args: Any, model_config: Any | None) -> list[str]:
    """Why `server_args` (+ the model) cannot run on the amd backend; empty when it can."""
    flags = backend_flags_using_amd(server_args)
    if not flags:
        return []
    flag = flags[0]
    reasons = []
    kv = str(getattr(server_args, "kv_cache_dtype", "auto") or "auto").lower()
    if kv not in _FLOAT_KV_DTYPES:
        reasons.append(
            f"{flag} {ATTENTION_BACKEND} does not support --kv-cache-dtype {kv} yet; "
            "use --kv-cache-dtype auto (or bf16)"
        )
    spec = getattr(server_args, "speculative_algorithm", None)
    if spec and str(spec).upper() not in SPECULATIVE_ALGORITHMS:
        reasons.append(
            f"{flag} {ATTENTION_BACKEND} serves --speculative-algorithm "
            f"{'/'.join(sorted(SPECULATIVE_ALGORITHMS))}, not {spec}; pick one of those "
            "or another --attention-backend"
        )
    elif spec and env_on("SGLANG_ENABLE_OVERLAP_PLAN_STREAM"):
        reasons.append(
            f"{flag} {ATTENTION_BACKEND} builds verify metadata after the draft stage; unset "
            "SGLANG_ENABLE_OVERLAP_PLAN_STREAM (it plans verify before the draft finishes)"
        )
    elif spec and server_device(server_args) == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        reasons.append(
            f"--speculative-algorithm {spec} on the CPU runs SGLang's speculative helper "
            "kernels (Triton) in Triton's interpreter: set TRITON_INTERPRET=1 in the "
            "server's environment (add SGLANG_AMD_TIER=torch to keep sglang-amd's own "
            "ops on the torch tier)"
        )
    if model_config is not None:
        reasons.extend(_model_reasons(model_config, flag, server_args))
    return reasons


def _model_reasons(model_config: Any, flag: str, server_args: Any) -> list[str]:
    reasons = []
    if getattr(model_config, "is_encoder_decoder", False):
        reasons.append(
            f"{flag} {ATTENTION_BACKEND} does not serve encoder-decoder models; "
            "pick another --attention-backend for this model"
        )
    if getattr(model_config, "is_hybrid_swa", False) and not getattr(
        server_args, "disable_hybrid_swa_memory", False
    ):  # declared by attention/sglang_registration.full_pool_for_amd
        reasons.append(
            f"{flag} {ATTENTION_BACKEND} does not serve hybrid sliding-window KV pools yet; "
            "pick another --attention-backend for this model"
        )
    if is_dsa_model(model_config):
        reasons.extend(_dsa_reasons(server_args, flag))
    return reasons


# The ops a DSA model adds (attention/dsa.py).
DSA_OPS = ("attention.indexer", "attention.sparse")


def is_dsa_model(model_config: Any | None) -> bool:
    """DeepSeek sparse attention (V3.2, GLM-5): SGLang's own test, an index_topk."""
    hf_config = getattr(model_config, "hf_config", None)
    return hf_config is not None and getattr(text_config(hf_config), "index_topk", None) is not None


def _dsa_reasons(server_args: Any, flag: str) -> list[str]:
    """What the DSA path (`attention/sglang_dsa.py`) does not serve yet."""
    reasons = []
    what = f"{flag} {ATTENTION_BACKEND} serves DeepSeek sparse attention (DSA)"
    if server_device(server_args) != "cpu":
        # The indexer's forward is installed for the CPU platform only so far.
        reasons.append(
            f"{what} on the CPU platform only so far; on a GPU leave --attention-backend "
            "unset (SGLang picks its dsa backend)"
        )
    if (
        getattr(server_args, "speculative_algorithm", None)
        and (getattr(server_args, "speculative_eagle_topk", None) or 1) > 1
    ):
        # SGLang 0.5.23 takes tree drafts over paged KV (DSA's 64-token pages) on
        # flashinfer/fa3/triton only, none of which serves DSA; our indexer's causal
        # limit is a prefix length, right for chains.
        reasons.append(
            f"{what} with chain drafts (SGLang allows tree drafts over DSA's 64-token "
            "pages on no DSA backend); set --speculative-eagle-topk 1"
        )
    for field, option in (
        ("enable_prefill_cp", "--enable-prefill-cp"),
        ("enable_dsa_cache_layer_split", "--enable-dsa-cache-layer-split"),
        ("enable_hisparse", "--enable-hisparse"),
    ):
        if getattr(server_args, field, False):
            reasons.append(f"{what} without {option}; drop it")
    if (getattr(server_args, "dcp_size", 1) or 1) > 1:
        reasons.append(f"{what} without decode context parallelism; drop --dcp-size")
    from sglang_amd.attention.dsa import indexer_mode_refusal

    if why := indexer_mode_refusal():
        reasons.append(why)
    return reasons


def dsa_kv_cache_dtype(server_args: Any, resolved: str | None) -> str | None:
    """The KV-cache dtype to give back after SGLang's DSA resolution, or None.

    SGLang imposes bfloat16 (or fp8) on a DSA model for its own DSA kernels, even
    under --dtype float32; ours serve the model's dtype like any MLA model, so the
    user's --kv-cache-dtype (default auto: the model's dtype) stands.
    """
    asked = str(getattr(server_args, "kv_cache_dtype", "auto") or "auto")
    return asked if resolved != asked else None


def refusals_before_model_hooks(server_args: Any, model_config: Any | None) -> list[str]:
    """The refusals that must come before SGLang's per-model resolution hooks: for a
    DSA model those pick SGLang's own DSA kernels for the device and may fail on
    flags we refuse anyway, so our reason would never be shown."""
    flags = backend_flags_using_amd(server_args)
    if not flags or not is_dsa_model(model_config):
        return []
    return _dsa_reasons(server_args, flags[0])


def check_server_args(server_args: Any, model_config: Any | None) -> None:
    """Raise one `UnsupportedConfigError` listing every problem, or return.

    Also resolves the kernel tier for the server's device, so a forced tier
    that cannot run here (SGLANG_AMD_ATTENTION_TIER=triton on a CPU) fails now
    with `TierUnavailableError` rather than in the scheduler process.
    """
    reasons = unsupported_reasons(server_args, model_config)
    if reasons:
        raise UnsupportedConfigError("sglang-amd: " + "; ".join(reasons))
    if backend_flags_using_amd(server_args):
        from sglang_amd.tiers import select

        for op in ("attention.extend", "attention.decode") + (
            DSA_OPS if is_dsa_model(model_config) else ()
        ):
            select(op, server_device(server_args))


def check_model_runner(model_runner: Any) -> None:
    """The same rules against a live ModelRunner (scheduler process)."""
    check_server_args(model_runner.server_args, model_runner.model_config)


def check_model_layers(model: Any) -> None:
    """Refuse, when the backend is built (the model is loaded by then), attention
    layers that ask for math our kernels do not do, rather than serve them wrong."""
    if model is None or not hasattr(model, "modules"):
        return
    reasons = set()
    for module in model.modules():
        if not hasattr(module, "logit_capping_method") or not hasattr(module, "tp_q_head_num"):
            continue  # not a RadixAttention layer
        if (getattr(module, "xai_temperature_len", -1) or -1) > 0:
            reasons.add("Grok's length-scaled query temperature (xai_temperature_len)")
        method = module.logit_capping_method
        if (module.logit_cap or 0) > 0 and method not in (None, "tanh"):
            reasons.add(f"logit capping method {method!r} (only tanh)")
    if reasons:
        raise UnsupportedConfigError(
            f"sglang-amd: --attention-backend {ATTENTION_BACKEND} does not compute "
            + "; ".join(sorted(reasons))
            + "; pick another --attention-backend for this model"
        )


def decode_head_dims(model_config: Any) -> tuple[int, int] | None:
    """(qk, v) head dims our decode kernels see for this model, or None if unknown.
    MLA decodes in absorbed form over the latent: [kv_lora_rank + rope] / kv_lora_rank."""
    if model_config is None:
        return None
    if getattr(model_config, "kv_lora_rank", None) and getattr(
        model_config, "qk_rope_head_dim", None
    ):
        rank = int(model_config.kv_lora_rank)
        return rank + int(model_config.qk_rope_head_dim), rank
    head = getattr(model_config, "head_dim", None)
    if not head:
        return None
    return int(head), int(getattr(model_config, "v_head_dim", None) or head)


def _decode_backend_is_amd(server_args: Any) -> bool:
    decode = getattr(server_args, "decode_attention_backend", None)
    return (decode or getattr(server_args, "attention_backend", None)) == ATTENTION_BACKEND


def cuda_graph_refusals(
    server_args: Any,
    graphs: Any,
    decode_tier: str,
    extend_tier: str = "triton",
    model_config: Any | None = None,
) -> dict[str, str]:
    """Graph phases our backend cannot capture, each with why; SGLang then runs eager.

    `graphs` is SGLang's resolved cuda_graph_config (`.decode.backend`,
    `.prefill.backend`: "full" | "breakable" | "disabled" | ...); `decode_tier` and
    `extend_tier` the tiers `tiers.select` picked. Full decode graphs are served by
    the Triton tier: its kernels read lengths and slots from device buffers and
    size their grid from the capacity. With speculative decoding the decode phase
    covers target verify (Triton extend kernels, planned on the device) and the
    draft's multi-step decode. Prefill stays eager: a full prefill graph would
    freeze extend launches planned on the host, and SGLang's breakable prefill
    graph (attention eager between captured segments, so it very likely works)
    has never been run with this backend on a GPU. Head dims
    the Triton kernels cannot take (`model_config`) send decode to the torch tier,
    which is not graph-safe either.
    """
    if not backend_flags_using_amd(server_args):
        return {}
    refusals = {}
    spec = getattr(server_args, "speculative_algorithm", None)
    draft_is_amd = (
        spec
        and (
            getattr(server_args, "speculative_draft_attention_backend", None)
            or getattr(server_args, "attention_backend", None)
        )
        == ATTENTION_BACKEND
    )
    for phase in ("decode", "prefill"):
        kind = str(getattr(getattr(graphs, phase), "backend", "disabled"))
        if kind == "disabled":
            continue
        if phase == "prefill":
            # Ours runs prefill as the target's backend, or as the draft's (draft extend).
            if ATTENTION_BACKEND in (
                getattr(server_args, "prefill_attention_backend", None),
                getattr(server_args, "attention_backend", None),
                getattr(server_args, "speculative_draft_attention_backend", None),
            ):
                refusals[phase] = (
                    "full prefill graphs would freeze extend launches planned on the host"
                    if kind == "full"
                    else f"{kind} prefill graphs are not yet validated with this backend on a GPU"
                )
            continue
        if not (_decode_backend_is_amd(server_args) or draft_is_amd):
            continue
        if server_device(server_args) == "cpu":
            refusals[phase] = "CPU graphs (torch.compile) are not supported"
        elif kind != "full":
            refusals[phase] = f"{kind} decode graphs are not supported (full graphs are)"
        elif decode_tier != "triton":
            refusals[phase] = (
                f"the decode tier is {decode_tier}, and only the Triton tier is "
                "graph-safe (set SGLANG_AMD_ATTENTION_DECODE_TIER=triton)"
            )
        elif spec and _decode_backend_is_amd(server_args) and extend_tier != "triton":
            refusals[phase] = (
                f"target verify runs on the extend tier, {extend_tier}, and only the "
                "Triton tier is graph-safe (set SGLANG_AMD_ATTENTION_EXTEND_TIER=triton)"
            )
        elif (dims := decode_head_dims(model_config)) and (bad := unsupported_dims(*dims)):
            refusals[phase] = (
                f"this model's {bad}, so decode runs on the torch tier, which is not graph-safe"
            )
        elif spec and env_on("SGLANG_ENABLE_METADATA_GLUE_GRAPH"):
            refusals[phase] = (
                "SGLANG_ENABLE_METADATA_GLUE_GRAPH would capture our verify / draft "
                "metadata prep, which reads host lengths"
            )
    return refusals
