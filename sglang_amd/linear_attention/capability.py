"""Linear attention as a capability: Gated DeltaNet (Qwen3-Next) on our CPU platform.

Selected by the platform, not by a flag: SGLang has Triton kernels only for a
hybrid GDN model's linear-attention layers, so on our CPU reference platform
(`SGLANG_PLATFORM=sglang_amd_cpu`) this family serves them with our torch tier,
whatever `--attention-backend` serves the full-attention layers (`amd` by
default there). Its registration installs `patches/cpu_gdn.py` in that
platform's processes only; on a GPU SGLang's own fla kernels stay. The start
rules refuse, naming the flag, what the torch tier does not serve. Never
imports sglang.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sglang_amd.capability import Capability
from sglang_amd.flags import CPU_PLATFORM, server_device

PLATFORM_FLAG = f"SGLANG_PLATFORM={CPU_PLATFORM}"
GDN_OPS = tuple(
    f"linear_attention.{name}"
    for name in (
        "gdn_chunked",
        "gdn_recurrent",
        "gating",
        "conv1d",
        "conv1d_update",
        "gated_rmsnorm",
        "split_qkvzba",
        "copy_slots",
        "commit_steps",
    )
)
# SGLang's GDN kernel choice: its Triton kernels are the ones we stand in for.
_KERNEL_FLAGS = (
    "linear_attn_backend",
    "linear_attn_decode_backend",
    "linear_attn_prefill_backend",
    "linear_attn_verify_backend",
)
_SERVED_KERNEL = "triton"
# SGLang keeps each GDN layer's conv window (the last inputs) in this dtype, bfloat16
# unless set, whatever --dtype says; at another model dtype the windows would be
# rounded and its prefix-cache snapshot (a tensor assignment) fails on the mismatch.
CONV_DTYPE_ENV = "SGLANG_MAMBA_CONV_DTYPE"
_SGLANG_CONV_DEFAULT = "bfloat16"
_prepared: dict[str, str] = {}  # {"value": what `prepare` last put in CONV_DTYPE_ENV}

_GDN_FIELDS = ("linear_num_value_heads", "linear_key_head_dim", "linear_conv_kernel_dim")


def is_gdn_model(model_config: Any) -> bool:
    """A model with Gated DeltaNet layers (Qwen3-Next, Qwen3.5), by its config's fields."""
    hf = getattr(model_config, "hf_config", None)
    if hf is None:
        return False
    text = hf.get_text_config() if hasattr(hf, "get_text_config") else hf
    return all(getattr(text, name, None) is not None for name in _GDN_FIELDS)


def _checkpoint_has_gdn(model_path: Any) -> bool | None:
    """Whether a local checkpoint's config.json declares GDN layers; None when there is
    no local config to read (a hub id: the start rules then ask the model config)."""
    config = Path(str(model_path or "")) / "config.json"
    if not config.is_file():
        return None
    fields = json.loads(config.read_text())
    text = fields.get("text_config") or fields
    return all(text.get(name) is not None for name in _GDN_FIELDS)


def _users_conv_dtype() -> str | None:
    value = os.environ.get(CONV_DTYPE_ENV)
    return None if not value or value == _prepared.get("value") else value


def conv_state_dtype(server_args: Any) -> str:
    """The GDN conv-window dtype the server will get: the user's SGLANG_MAMBA_CONV_DTYPE,
    else --dtype when it is float32 or float16 (`prepare` sets it), else SGLang's bfloat16."""
    dtype = str(getattr(server_args, "dtype", None) or "auto")
    own = dtype if dtype in ("float32", "float16") else _SGLANG_CONV_DEFAULT
    return _users_conv_dtype() or own


def prepare(server_args: Any) -> None:
    """In the launcher: SGLANG_MAMBA_CONV_DTYPE (inherited by the scheduler) follows
    --dtype float32 / float16 unless the user set it; a value set here for an earlier
    engine of the same process is taken back when this one needs SGLang's default."""
    if _users_conv_dtype():
        return
    want = conv_state_dtype(server_args)
    if want == _SGLANG_CONV_DEFAULT:
        os.environ.pop(CONV_DTYPE_ENV, None)
        _prepared.pop("value", None)
    else:
        os.environ[CONV_DTYPE_ENV] = _prepared["value"] = want


def _used(server_args: Any) -> list[str]:
    """In use on our CPU platform for a model with GDN layers (or one not readable here)."""
    on_platform = os.environ.get("SGLANG_PLATFORM") == CPU_PLATFORM
    if not on_platform or server_device(server_args) != "cpu":
        return []
    gdn = _checkpoint_has_gdn(getattr(server_args, "model_path", None))
    return [] if gdn is False else [PLATFORM_FLAG]


def _problems(server_args: Any, model_config: Any) -> list[str]:
    if model_config is not None and not is_gdn_model(model_config):
        return []
    out = []
    model_dtype = str(getattr(model_config, "dtype", "")).removeprefix("torch.")
    conv = conv_state_dtype(server_args)
    if model_dtype in ("float32", "float16", "bfloat16") and conv != model_dtype:
        out.append(
            f"{CONV_DTYPE_ENV}={conv} with a {model_dtype} model: the Gated DeltaNet conv "
            f"windows would be stored in another dtype than the model computes in; set "
            f"{CONV_DTYPE_ENV}={model_dtype} (or --dtype {model_dtype})"
        )
    for name in _KERNEL_FLAGS:
        value = getattr(server_args, name, None)
        if value not in (None, _SERVED_KERNEL):
            flag = "--" + name.replace("_", "-")
            out.append(
                f"{flag} {value}: on {PLATFORM_FLAG} sglang-amd's torch tier serves the "
                f"Gated DeltaNet layers in place of SGLang's {_SERVED_KERNEL} kernels; "
                f"drop {flag}"
            )
    for name in ("enable_linear_replayssm", "enable_linear_replayssm_spec", "enable_mis"):
        if getattr(server_args, name, False):
            flag = "--" + name.replace("_", "-")
            out.append(f"{flag}: not served by sglang-amd's GDN torch tier; drop {flag}")
    topk = getattr(server_args, "speculative_eagle_topk", None) or 1
    if getattr(server_args, "speculative_algorithm", None) and topk > 1:
        out.append(
            f"--speculative-eagle-topk {topk}: tree drafts over Gated DeltaNet layers are not "
            "served by sglang-amd's GDN torch tier; use --speculative-eagle-topk 1"
        )
    return out


def _model_ops(model_config: Any) -> tuple[str, ...]:
    return GDN_OPS if model_config is None or is_gdn_model(model_config) else ()


CAPABILITY = Capability(
    name="linear_attention",
    flags=(PLATFORM_FLAG,),
    ops=GDN_OPS,
    used=_used,
    problems=_problems,
    registration="sglang_amd.linear_attention.sglang_registration:register",
    model_ops=_model_ops,
    prepare=f"{__name__}:prepare",
)
