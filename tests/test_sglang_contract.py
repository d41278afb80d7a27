"""The SGLang internals sglang-amd relies on, pinned to 0.5.23.

If SGLang changes under us, these fail with the name of what moved, instead of
the plugin silently not registering (SGLang logs plugin errors and goes on).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest

from sglang_amd import SGLANG_VERSION

pytestmark = [pytest.mark.sglang]


def test_pinned_version():
    assert version("sglang") == SGLANG_VERSION


def test_extension_points_exist():
    from sglang.srt.arg_groups import choices
    from sglang.srt.arg_groups.resolution_hooks import _OVERRIDABLE_HOOKS, register_resolution_hook
    from sglang.srt.layers.attention.attention_registry import register_attention_backend

    assert callable(choices.add_attention_backend_choices)
    assert callable(register_attention_backend) and callable(register_resolution_hook)
    assert "handle_attention_backend_compatibility" in _OVERRIDABLE_HOOKS


def test_resolution_helpers_we_call_exist():
    from sglang.srt.arg_groups.model_override_base import model_config_of
    from sglang.srt.arg_groups.overrides import resolved_view

    assert callable(model_config_of) and callable(resolved_view)


def test_attention_backend_interface_we_override():
    from sglang.srt.layers.attention.base_attn_backend import AttentionBackend

    for name in (
        "init_forward_metadata",
        "forward_extend",
        "forward_decode",
        "get_cuda_graph_seq_len_fill_value",
        "support_triton",
    ):
        assert hasattr(AttentionBackend, name), name
    params = inspect.signature(AttentionBackend.forward_extend).parameters
    assert list(params)[:7] == ["self", "q", "k", "v", "layer", "forward_batch", "save_kv_cache"]


def test_platform_base_we_subclass():
    from sglang.srt.platforms.cpu import CpuSRTPlatform
    from sglang.srt.platforms.device_mixin import PlatformEnum

    assert hasattr(PlatformEnum, "OOT")
    for name in ("get_default_attention_backend", "apply_server_args_defaults"):
        assert hasattr(CpuSRTPlatform, name), name
