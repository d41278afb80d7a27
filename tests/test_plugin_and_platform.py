"""Registration with SGLang: idempotent, through the extension points, and the
CPU platform never activates unless selected."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.sglang]


def test_register_is_idempotent_and_reaches_sglang():
    from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES
    from sglang.srt.arg_groups.resolution_hooks import _HOOKS
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS

    from sglang_amd import plugin
    from sglang_amd.attention import sglang_registration

    for _ in range(3):
        plugin.register()
    assert ATTENTION_BACKEND_CHOICES.count("amd") == 1
    assert ATTENTION_BACKENDS["amd"] is sglang_registration.create_backend
    hooks = _HOOKS["handle_attention_backend_compatibility"]
    assert hooks.count(plugin._validate_flags) == 1
    assert _HOOKS[plugin.MODEL_STEP].count(plugin._around_model_hooks) == 1


def test_entry_points_are_installed():
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="sglang.srt.plugins")}
    platforms = {ep.name: ep.value for ep in entry_points(group="sglang.srt.platforms")}
    assert plugins["sglang_amd"] == "sglang_amd.plugin:register"
    assert platforms["sglang_amd_cpu"] == "sglang_amd.platform:activate"


def test_platform_activates_only_when_selected(monkeypatch):
    from sglang_amd import platform

    monkeypatch.delenv("SGLANG_PLATFORM", raising=False)
    assert platform.activate() is None
    monkeypatch.setenv("SGLANG_PLATFORM", "some_other_platform")
    assert platform.activate() is None
    monkeypatch.setenv("SGLANG_PLATFORM", "sglang_amd_cpu")
    assert platform.activate() == "sglang_amd.platform.AmdCpuReferencePlatform"


def test_platform_class_and_defaults():
    from sglang.srt.platforms.cpu import CpuSRTPlatform
    from sglang.srt.platforms.device_mixin import PlatformEnum

    from sglang_amd.platform import DEFAULT_MAX_TOTAL_TOKENS, AmdCpuReferencePlatform

    plat = AmdCpuReferencePlatform()
    assert isinstance(plat, CpuSRTPlatform) and plat.is_out_of_tree()
    assert AmdCpuReferencePlatform._enum is PlatformEnum.OOT
    assert plat.get_default_attention_backend() == "amd"
    for given, want in ((None, "amd"), ("intel_amx", "amd"), ("torch_native", "torch_native")):
        args = SimpleNamespace(attention_backend=given, max_total_tokens=None)
        plat.apply_server_args_defaults(args)
        assert args.attention_backend == want
        assert args.max_total_tokens == DEFAULT_MAX_TOTAL_TOKENS
    args = SimpleNamespace(attention_backend="amd", max_total_tokens=1234)
    plat.apply_server_args_defaults(args)
    assert args.max_total_tokens == 1234


def test_platform_speculative_seams():
    import torch

    from sglang_amd.platform import AmdCpuReferencePlatform

    plat = AmdCpuReferencePlatform()
    assert plat.supports_speculative_algorithm("NEXTN") and plat.supports_speculative_algorithm(
        "EAGLE"
    )
    assert not plat.supports_speculative_algorithm("NGRAM")
    assert plat.supports_speculative_draft_attention_backend("EAGLE", "amd")
    assert not plat.supports_speculative_draft_attention_backend("EAGLE", "triton")
    table = torch.arange(4 * 32, dtype=torch.int32).view(4, 32) * 3
    rows, start = torch.tensor([2, 0, 3]), torch.tensor([5, 0, 17])
    got = plat.get_speculative_cache_locs_fn()(
        req_pool_indices=rows,
        req_to_token=table,
        start_offset=start,
        end_offset=start + 4,
        batch_size=3,
        draft_token_num=4,
        device="cpu",
    )
    want = torch.cat(
        [table[r, s : s + 4] for r, s in zip(rows.tolist(), start.tolist(), strict=True)]
    )
    assert got.dtype == torch.int64 and torch.equal(got, want.long())
