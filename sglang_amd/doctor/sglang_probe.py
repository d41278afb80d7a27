"""`sglang-amd doctor`'s SGLang adapter: resolve a model's launch as SGLang would, load nothing.

Where it sits: between the CLI and SGLang. The arguments go through exactly
what `sglang-amd serve` runs (`cli.serve_args`, then SGLang's
`prepare_server_args`, whose resolution hook runs every start-time check of
ours, as the launcher does), so a refusal here is the refusal the server would
give. From the resolved arguments it asks SGLang for the model class (its own
registry, or the Transformers fallback), the draft class when the checkpoint
declares MTP layers, the CUDA-graph phases left on, and asks `tiers` which
implementation serves each of our ops on this machine. The sglang-free facts
(attention path, MoE shape, KV bytes) come from `model_facts.py`; the weight
estimate counts parameters on the meta device (no memory, no weights); the
linear-attention state and the GPU budget come from `sglang_memory.py`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
from typing import Any

from sglang_amd.doctor import model_facts, sglang_memory
from sglang_amd.doctor.gpu_budget import Gpu
from sglang_amd.flags import ATTENTION_BACKEND

# A representative linear of an MTP layer, per part, for the exclude-list check.
_MTP_PARTS = (
    "eh_proj",
    "self_attn.o_proj",
    "mlp.experts.0.down_proj",
    "mlp.shared_experts.down_proj",
)
_FP8_BYTES = 1 + 4 / (128 * 128)  # e4m3 weight + one fp32 scale per 128x128 block
_MXFP4_BYTES = 0.5 + 1 / 32  # e2m1 weight + one e8m0 scale per 32


def _launch(model_dir: str, flags: list[str], tp: int, ep: int) -> list[str]:
    argv = ["--model-path", model_dir, *flags]
    if tp > 1:
        argv += ["--tp-size", str(tp)]
    if ep > 1:
        argv += ["--ep-size", str(ep)]
    return argv


def _quiet(fn, *args, **kwargs):
    """SGLang prints while resolving; the report is the output."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _class_name(cls: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _quant(hf_config: Any, resolved: str | None, mtp: int) -> dict | None:
    q = getattr(hf_config, "quantization_config", None)
    if not q and not resolved:
        return None
    q = q if isinstance(q, dict) else (q.to_dict() if hasattr(q, "to_dict") else {})
    out = {"checkpoint_method": q.get("quant_method"), "served_by": resolved}
    exclude = (
        q.get("exclude")
        or q.get("ignore")
        or q.get("modules_to_not_convert")
        or q.get("ignored_layers")
    )
    if exclude is not None:
        out["exclude_entries"] = len(exclude)
        out["exclude"] = list(exclude)
    if mtp and exclude is not None:
        from sglang.srt.layers.quantization.quark.utils import should_ignore_layer

        first = int(model_facts.text_config(hf_config).num_hidden_layers)
        names = [f"model.layers.{first + i}.{part}" for i in range(mtp) for part in _MTP_PARTS]
        kept = [n for n in names if should_ignore_layer(n, ignore=list(exclude), fused_mapping={})]
        out["mtp_layers_excluded"] = len(kept) == len(names)
    return out


def _transformers_config(model_dir: str, hf_config: Any) -> Any:
    """transformers' own config class when it has one (SGLang substitutes its own
    for some models, which transformers' model classes do not fully read)."""
    import copy

    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    except Exception:  # noqa: BLE001 - remote-code configs (kimi_k2): SGLang's alias
        return copy.copy(hf_config)


def weight_bytes_per_rank(
    model_dir: str, hf_config: Any, elem: int, quant: dict | None, tp: int, ep: int
) -> dict:
    """Parameter bytes per rank, counted on the meta device (an estimate: SGLang
    replicates a few small projections that this counts as sharded)."""
    import torch
    import transformers

    arch = (getattr(hf_config, "architectures", None) or ["?"])[0]
    config = _transformers_config(model_dir, hf_config)
    # SGLang's loader leaves out token ids some transformers classes read at build.
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if not hasattr(config, name):
            setattr(config, name, None)
    try:
        # By name, not AutoModel: SGLang aliases some config classes (kimi_k2 ->
        # DeepseekV3) that transformers' auto mapping does not know.
        with torch.device("meta"):
            model = getattr(transformers, arch)(config)
    except Exception as exc:  # noqa: BLE001 - transformers may not have the architecture
        return {"error": f"transformers cannot build {arch}: {str(exc)[:200]}"}
    method = (quant or {}).get("checkpoint_method")
    exclude = (quant or {}).get("exclude") or []
    if exclude:
        from sglang.srt.layers.quantization.quark.utils import should_ignore_layer
    total = per_rank = 0.0
    for name, p in model.named_parameters():
        n = p.numel()
        expert = ".experts." in name or name.endswith(".experts")
        module = name.rsplit(".", 1)[0]
        weight = (
            p.dim() >= 2 and "embed" not in name and "lm_head" not in name and ".layers." in name
        )
        if weight and exclude and should_ignore_layer(module, ignore=exclude, fused_mapping={}):
            weight = False  # kept in float by the checkpoint's exclude list
        if method == "fp8" and weight:
            size = n * _FP8_BYTES
        elif method == "mxfp4" and weight and expert:
            size = n * _MXFP4_BYTES
        elif method == "quark" and weight:
            size = n * _MXFP4_BYTES
        else:
            size = n * elem
        total += size
        if p.dim() < 2:
            per_rank += size  # norms, biases, sinks: replicated
        elif expert:
            per_rank += size / (ep if ep > 1 else tp)
        else:
            per_rank += size / tp
    return {"total_gib": round(total / 2**30, 2), "per_rank_gib": round(per_rank / 2**30, 2),
            "per_rank_bytes": int(per_rank),
            "method": "meta-device parameter count (MTP layers not counted)"}  # fmt: skip


def probe(
    model_dir: str,
    flags: list[str],
    tp: int = 1,
    ep: int = 1,
    weights: bool = True,
    gpu: Gpu | None = None,
) -> dict:
    """The doctor's report for one model directory (config.json; no weights read), with
    the GPU budget on `gpu` when one is named."""
    from sglang_amd.cli import serve_args

    launch = _launch(model_dir, flags, tp, ep)
    argv, env = serve_args(launch)
    os.environ.update(env)  # before SGLang resolves its platform, as `serve` does
    from sglang.srt.configs.model_config import ModelConfig
    from sglang.srt.model_loader.utils import get_model_architecture
    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import prepare_server_args
    from sglang.srt.utils.hf_transformers_utils import get_config

    from sglang_amd import capability
    from sglang_amd.flags import server_device
    from sglang_amd.tiers import select

    load_plugins()
    report: dict[str, Any] = {
        "model": model_dir,
        "launch": "sglang-amd serve " + shlex.join(launch),
        "blocking": [],
        "notes": [],
    }
    trust = "--trust-remote-code" in flags
    hf = get_config(model_dir, trust_remote_code=trust)
    report["architectures"] = list(getattr(hf, "architectures", None) or [])
    att = model_facts.attention(hf)
    report["attention"] = att.as_dict()
    moe = model_facts.moe(hf)
    report["moe"] = moe.__dict__ if moe else None
    mtp = model_facts.mtp_layers(hf)
    report["mtp_layers"] = mtp
    from sglang.srt.arg_groups.overrides import resolved_view

    try:
        sa = _quiet(prepare_server_args, argv)
        view = resolved_view(sa)
        tp, ep = view.tp_size, view.ep_size  # --flags may set them too: serve what SGLang parsed
        mc = ModelConfig.from_server_args(sa)
        # The launcher may resolve before the model config exists; the model runner
        # then runs these same checks with it. Run them here with it.
        capability.check_start(view, mc)
    except Exception as exc:  # noqa: BLE001 - every refusal, ours or SGLang's, blocks serving
        report["blocking"].append(f"{type(exc).__name__}: {exc}")
        return report
    cls, arch = get_model_architecture(mc)
    report["sglang_class"] = _class_name(cls)
    report["native"] = not arch.startswith("Transformers")
    if not report["native"]:
        report["notes"].append(f"SGLang has no native class for {report['architectures']}: "
                               f"it would serve the Transformers fallback {arch}")  # fmt: skip
    if mtp:
        try:
            draft = ModelConfig.from_server_args(sa, model_path=model_dir, is_draft_model=True)
            report["draft_class"] = _class_name(get_model_architecture(draft)[0])
        except Exception as exc:  # noqa: BLE001
            report["draft_class"] = None
            report["notes"].append(f"MTP layers declared but SGLang has no draft class: {exc}")
    report["dtype"] = str(mc.dtype).replace("torch.", "")
    kv_dtype = str(view.kv_cache_dtype)
    elem = 1 if "fp8" in kv_dtype else mc.dtype.itemsize
    kv_heads = mc.get_num_kv_heads(tp)
    report["kv_cache"] = {
        "dtype": kv_dtype if kv_dtype != "auto" else report["dtype"],
        "page_size": view.page_size,
        "kv_heads_per_rank": None if att.kv_lora_rank else kv_heads,
        "bytes_per_token_per_rank": model_facts.kv_bytes_per_token(
            att, kv_heads, getattr(mc, "v_head_dim", None), elem
        ),
        "context_length": mc.context_len,
    }
    if att.index_topk and view.attention_backend == ATTENTION_BACKEND:
        from sglang_amd.attention.dsa import INDEX_HEAD_DIM, indexer_mode

        if indexer_mode() == "float":
            keys = INDEX_HEAD_DIM * mc.dtype.itemsize * att.layers.get("full", 0)
            report["notes"].append(
                f"DSA's float indexer keeps its keys beside SGLang's pool: {keys:,} B a token "
                "per rank, outside the KV budget above (SGLANG_AMD_DSA_INDEXER=fp8 keeps "
                "them in SGLang's index-K pool, counted above)"
            )
    report["kv_cache"]["one_request_at_context_gib_per_rank"] = round(
        model_facts.kv_bytes_per_request(
            att, report["kv_cache"]["bytes_per_token_per_rank"], mc.context_len
        )
        / 2**30,
        3,
    )
    state = sglang_memory.linear_state(mc, view, tp)
    if state is not None:
        report["linear_state"] = state
    report["quantization"] = _quant(hf, mc.quantization, mtp)
    if report["quantization"] and report["quantization"].get("mtp_layers_excluded") is False:
        report["notes"].append(
            "the exclude list does not cover the MTP layers: they load quantized"
        )
    device = server_device(view)
    caps = capability.active(view)
    report["ours"] = {cap.name: cap.used(view) for cap in caps}
    report["tiers"] = {op: select(op, device).tier.value for cap in caps for op in cap.ops_for(mc)}
    report["backends"] = {"attention": view.attention_backend, "moe_runner": view.moe_runner_backend,
                          "device": device}  # fmt: skip
    report["cuda_graphs"] = sglang_memory.graph_phases(view, device, gpu)
    if weights:
        report["weights"] = weight_bytes_per_rank(
            model_dir, hf, mc.dtype.itemsize, report["quantization"], tp, ep
        )
    if gpu is not None:
        sglang_memory.add_budget(report, view, mc, gpu)
    return report
