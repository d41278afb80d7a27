"""SGLang registration of the attention family (called by `plugin.register`).

  --attention-backend amd                 the attention backend registry, factory
                                          below (sglang_backend.AmdAttnBackend)
  --speculative-draft-attention-backend   the draft choice list, and
                                          patches/draft_backends.py for SGLang's
                                          closed draft-backend dicts
  patches/torch_native_mla.py             SGLang's torch_native on MLA prefill
  patches/cpu_speculative.py              EAGLE/MTP helpers on a CPU platform

Light at import: the backend classes import when SGLang builds them. Imports sglang.
"""

from __future__ import annotations

from typing import Any

from sglang_amd.flags import ATTENTION_BACKEND


def create_backend(model_runner: Any) -> Any:
    """The factory SGLang's attention registry calls for `amd`."""
    from sglang_amd.attention.sglang_backend import AmdAttnBackend

    return AmdAttnBackend(model_runner)


def register() -> None:
    """Add `amd` to SGLang's attention choices and registry. Idempotent."""
    from sglang.srt.arg_groups.choices import (
        ATTENTION_BACKEND_CHOICES,
        DRAFT_ATTENTION_BACKEND_CHOICES,
        add_attention_backend_choices,
        add_draft_attention_backend_choices,
    )
    from sglang.srt.layers.attention.attention_registry import register_attention_backend

    from sglang_amd.patches import cpu_speculative, draft_backends, torch_native_mla

    if ATTENTION_BACKEND not in ATTENTION_BACKEND_CHOICES:
        add_attention_backend_choices([ATTENTION_BACKEND])
    if ATTENTION_BACKEND not in DRAFT_ATTENTION_BACKEND_CHOICES:
        add_draft_attention_backend_choices([ATTENTION_BACKEND])
    register_attention_backend(ATTENTION_BACKEND)(create_backend)
    torch_native_mla.register()
    draft_backends.register()
    cpu_speculative.register()
