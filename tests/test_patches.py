"""Every HookRegistry patch in sglang_amd/patches/ still lands where it was written to.

SGLang logs a hook it cannot apply and goes on; these fail instead, naming the
target that moved or changed signature, so a SGLang upgrade cannot silently
disable a fix.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from sglang_amd.patches import torch_native_mla, unquantized_moe

pytestmark = [pytest.mark.sglang]


@pytest.fixture(scope="module", autouse=True)
def applied():
    from sglang.srt.plugins.hook_registry import HookRegistry

    from sglang_amd import plugin

    plugin.register()
    HookRegistry.apply_hooks()


@pytest.mark.parametrize(
    "target,params",
    [*unquantized_moe.TARGETS.items(), *torch_native_mla.TARGETS.items()],
)
def test_patch_targets_exist_with_the_signature_we_wrap(target, params):
    from sglang.srt.plugins.hook_registry import HookRegistry

    module_name, cls_name, attr = target.rsplit(".", 2)
    cls = getattr(importlib.import_module(module_name), cls_name)
    fn = getattr(cls, attr)
    assert target in HookRegistry._patched, f"{target} was not patched"
    original = inspect.unwrap(fn)
    assert original is not fn, f"{target} is not wrapped"
    assert tuple(inspect.signature(original).parameters)[: len(params)] == params, target


def test_torch_native_bug_is_still_there():
    """If SGLang fixes torch_native itself, this fails: then drop patches/torch_native_mla.py."""
    from sglang.srt.layers.attention import torch_native_backend

    source = inspect.getsource(torch_native_backend.TorchNativeAttnBackend.forward_extend)
    assert "self.token_to_kv_pool.get_key_buffer(layer.layer_id)" in source
    assert "kv_lora_rank" not in source
