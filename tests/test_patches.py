"""Every HookRegistry patch in sglang_amd/patches/ still lands where it was written to.

SGLang logs a hook it cannot apply and goes on; these fail instead, naming the
target that moved or changed signature, so a SGLang upgrade cannot silently
disable a fix.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from sglang_amd.patches import (
    cpu_speculative,
    draft_backends,
    request_validation,
    rocm_quantization,
    torch_native_mla,
    unquantized_moe,
)

pytestmark = [pytest.mark.sglang]


@pytest.fixture(scope="module", autouse=True)
def applied():
    from sglang.srt.plugins.hook_registry import HookRegistry

    from sglang_amd import plugin

    plugin.register()
    HookRegistry.apply_hooks()


def _resolve(target: str):
    """module.Class.attr or module.function, whichever the target names."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(target)


@pytest.mark.parametrize(
    "target,params",
    [
        *unquantized_moe.TARGETS.items(),
        *torch_native_mla.TARGETS.items(),
        *draft_backends.TARGETS.items(),
        *cpu_speculative.TARGETS.items(),
        *rocm_quantization.TARGETS.items(),
        *request_validation.TARGETS.items(),
    ],
)
def test_patch_targets_exist_with_the_signature_we_wrap(target, params):
    from sglang.srt.plugins.hook_registry import HookRegistry

    fn = _resolve(target)
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


def test_cpu_speculative_blockers_are_still_there():
    """When SGLang fixes one of these, the matching hook in patches/cpu_speculative.py can go."""
    from sglang.kernels.ops.speculative import spec_tree
    from sglang.srt.models import deepseek_v2

    src = inspect.getsource(inspect.unwrap(deepseek_v2.DeepseekV2ForCausalLM.set_embed_and_head))
    assert "torch.cuda.synchronize()" in src
    for fn in (spec_tree.build_tree_kernel_efficient_func, spec_tree.verify_tree_greedy_func):
        assert "reject_out_of_tree_path" in inspect.getsource(inspect.unwrap(fn))


def test_draft_backend_maps_are_still_closed():
    """SGLang still picks draft backends from literal dicts (no registry to join)."""
    from sglang.srt.speculative.draft_utils import DraftBackendFactory

    for name in ("create_decode_backend", "create_draft_extend_backend"):
        src = inspect.getsource(getattr(DraftBackendFactory, name))
        assert "backend_map = {" in src and '"amd"' not in src


def _verify(quantization: str) -> None:
    import types

    from sglang.srt.configs.model_config import ModelConfig

    config = types.SimpleNamespace(
        quantization=quantization,
        is_draft_model=False,
        _parse_quant_hf_config=lambda: None,
        _find_quant_modelslim_config=lambda: None,
    )
    ModelConfig._verify_quantization(config)


@pytest.mark.parametrize("hip", [False, True])
def test_rocm_gate_lets_our_method_through_and_no_other(monkeypatch, hip):
    """SGLang's local ROCm allow-list refuses out-of-tree methods; ours must pass it on a
    ROCm machine (simulated: the module's is_hip answering True), others keep the gate."""
    from sglang.srt.configs import model_config

    from sglang_amd.flags import QUANTIZATION

    fake_is_hip = lambda: hip  # noqa: E731
    monkeypatch.setattr(model_config, "is_hip", fake_is_hip)
    _verify(QUANTIZATION)
    assert model_config.is_hip is fake_is_hip, "the hook must restore is_hip"
    if hip:
        with pytest.raises(ValueError, match="not supported in ROCm"):
            _verify("modelopt_fp4")
    else:
        _verify("modelopt_fp4")


def test_rocm_gate_is_still_a_local_list():
    """If SGLang lets registered methods through on ROCm, patches/rocm_quantization.py can go."""
    from sglang.srt.configs.model_config import ModelConfig

    from sglang_amd.flags import QUANTIZATION

    src = inspect.getsource(inspect.unwrap(ModelConfig._verify_quantization))
    assert "rocm_supported_quantization = [" in src and QUANTIZATION not in src


class _Request:
    def __init__(self, mm: bool = False, input_embeds=None):
        self._mm, self.input_embeds = mm, input_embeds

    def contains_mm_input(self) -> bool:
        return self._mm


def _manager(vocab: int):
    from types import SimpleNamespace

    return SimpleNamespace(model_config=SimpleNamespace(vocab_size=vocab))


@pytest.mark.parametrize(
    "ids,why",
    [
        ([1, 10, 2], "token id 10 at position 1"),
        ([-3], "token id -3 at position 0"),
        ([1, 2.5], "must be integers; position 1 holds float"),
        ([True], "must be integers; position 0 holds bool"),
    ],
)
def test_request_validation_refuses_ids_the_embedding_cannot_take(ids, why):
    calls = []
    with pytest.raises(ValueError, match=why) as err:
        request_validation._validate_one_request(
            lambda *a: calls.append(a), _manager(10), _Request(), ids
        )
    assert "input_ids" in str(err.value) and "[0, 10)" in str(err.value) or "integers" in why
    assert not calls  # SGLang's own checks (and the scheduler) never see it


def test_request_validation_passes_good_and_multimodal_requests_to_sglang():
    calls = []
    original = lambda self, obj, ids: calls.append(ids)  # noqa: E731
    request_validation._validate_one_request(original, _manager(10), _Request(), [0, 9])
    # Multimodal prompts hold processor placeholders; text given as embeddings has no ids.
    request_validation._validate_one_request(original, _manager(10), _Request(mm=True), [99])
    embeds = _Request(input_embeds=[[0.0]])
    request_validation._validate_one_request(original, _manager(10), embeds, None)
    assert calls == [[0, 9], [99], None]
