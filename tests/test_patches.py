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
    cpu_gdn,
    cpu_speculative,
    draft_backends,
    ep_dispatcher,
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
        *ep_dispatcher.TARGETS.items(),
        *cpu_gdn.TARGETS.items(),
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
    import importlib

    from sglang.kernels.ops.speculative import spec_tree

    for target in (cpu_speculative.SET_EMBED_AND_HEAD, *cpu_speculative.SET_EMBED_AND_HEAD_ALSO):
        module, cls, fn = target.rsplit(".", 2)
        method = getattr(getattr(importlib.import_module(module), cls), fn)
        assert "torch.cuda.synchronize()" in inspect.getsource(inspect.unwrap(method)), target
    for fn in (spec_tree.build_tree_kernel_efficient_func, spec_tree.verify_tree_greedy_func):
        assert "reject_out_of_tree_path" in inspect.getsource(inspect.unwrap(fn))


def test_sampled_speculative_verify_has_no_kernel_off_cuda():
    """When SGLang ships a tree sampling kernel for this platform, the greedy fallback in
    patches/cpu_speculative.py stops applying by itself (it checks the kernel); this says so."""
    import torch
    from sglang.srt.speculative import eagle_utils

    if torch.version.cuda and torch.cuda.is_available():
        pytest.skip("SGLang's CUDA build has the kernel: the hook leaves it alone")
    assert eagle_utils.tree_speculative_sampling_target_only is None
    greedy = dict(is_cpu=False, is_hip=False, is_xpu=False, use_rejection_sampling=False)
    # SGLang alone would take the sampling path and call None; the hook verifies greedily.
    assert not inspect.unwrap(eagle_utils._verify_uses_greedy)(is_all_greedy=False, **greedy)
    assert eagle_utils._verify_uses_greedy(is_all_greedy=False, **greedy)
    # Rejection sampling has its own (Triton) kernel: left to SGLang.
    rejection = {**greedy, "use_rejection_sampling": True}
    assert not eagle_utils._verify_uses_greedy(is_all_greedy=False, **rejection)


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
    def __init__(
        self,
        mm: bool = False,
        input_embeds=None,
        return_logprob: bool = False,
        top_logprobs_num: int = 0,
        **sampling_params,
    ):
        self._mm, self.input_embeds = mm, input_embeds
        self.return_logprob, self.top_logprobs_num = return_logprob, top_logprobs_num
        self.sampling_params = sampling_params

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


@pytest.mark.parametrize(
    "request_kwargs,ids,why",
    [
        ({}, [], "holds no token after tokenization"),
        ({"mm": True}, [], "holds no token after tokenization"),
        ({"return_logprob": True, "top_logprobs_num": 11}, [1], "asks for 11 alternatives"),
        ({"stop_regex": "(("}, [1], r"stop_regex\[0\] '\(\(' is not a valid regular"),
        ({"stop_regex": ["a", 5]}, [1], r"stop_regex\[1\] must be a string"),
        ({"logit_bias": {"5": 1e308}}, [1], r"logit_bias\['5'\] is 1e\+308"),
        ({"logit_bias": {"5": -2e9}}, [1], r"logit_bias\['5'\] is -2000000000"),
        ({"logit_bias": {"5": "x"}}, [1], r"logit_bias\['5'\] must be a number"),
        # a prompt given as embeddings skips the id checks only
        ({"input_embeds": [[0.0]], "stop_regex": "(("}, None, "stop_regex"),
    ],
)
def test_request_validation_refuses_requests_that_killed_or_fooled_the_server(
    request_kwargs, ids, why
):
    calls = []
    with pytest.raises(ValueError, match=why):
        request_validation._validate_one_request(
            lambda *a: calls.append(a), _manager(10), _Request(**request_kwargs), ids
        )
    assert not calls


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"return_logprob": True, "top_logprobs_num": 10},  # the whole vocabulary: served
        {"return_logprob": False, "top_logprobs_num": 10**6},  # unused without logprobs
        {"stop_regex": [r"\d+\.", "end$"]},
        {"logit_bias": {"5": -1e9, "6": 100.0}},
        {"logit_bias": None, "stop_regex": None},
    ],
)
def test_request_validation_passes_requests_sglang_serves_right(request_kwargs):
    calls = []
    original = lambda self, obj, ids: calls.append(ids)  # noqa: E731
    request_validation._validate_one_request(
        original, _manager(10), _Request(**request_kwargs), [1]
    )
    assert calls == [[1]]


def test_the_cpu_dsa_resolution_answer_is_still_needed():
    """patches/cpu_dsa_resolution.py answers torch's capability question inside these
    SGLang functions; each must still ask it, or the patch is dead."""
    from sglang_amd.patches import cpu_dsa_resolution

    for target, call in cpu_dsa_resolution.TARGETS.items():
        assert call in inspect.getsource(_resolve(target)), f"{target} no longer calls {call}"


def test_the_cpu_dsa_resolution_answer_is_scoped():
    import torch

    from sglang_amd.patches.cpu_dsa_resolution import NO_CAPABILITY, no_cuda_capability

    before = torch.cuda.get_device_capability
    with no_cuda_capability():
        if not torch.cuda.is_available():
            assert torch.cuda.get_device_capability() == NO_CAPABILITY
    assert torch.cuda.get_device_capability is before
