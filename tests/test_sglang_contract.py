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
    assert "handle_model_specific_adjustments" in _OVERRIDABLE_HOOKS  # the DSA refusal's step


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
        "shared_read_ends",
    ):
        assert hasattr(AttentionBackend, name), name
    from sglang.srt.layers.attention.base_attn_backend import SharedReadEnds

    assert SharedReadEnds.POST_REPLAY.value > SharedReadEnds.IN_REPLAY.value
    params = inspect.signature(AttentionBackend.forward_extend).parameters
    assert list(params)[:7] == ["self", "q", "k", "v", "layer", "forward_batch", "save_kv_cache"]


def test_decode_graph_protocol_we_implement():
    """The decode graph runner's calls our CUDA-graph hooks answer (sglang_backend.py) and
    the graph config names the resolution hook edits (plugin.py)."""
    from sglang.srt.layers.attention.base_attn_backend import AttentionBackend
    from sglang.srt.model_executor.cuda_graph_config import Backend, Phase, with_phase
    from sglang.srt.model_executor.runner import decode_cuda_graph_runner

    params = inspect.signature(AttentionBackend.init_forward_metadata_out_graph).parameters
    assert list(params) == ["self", "forward_batch", "in_capture"]
    assert list(inspect.signature(AttentionBackend.init_cuda_graph_state).parameters) == [
        "self",
        "max_bs",
        "max_num_tokens",
    ]
    source = inspect.getsource(decode_cuda_graph_runner)
    for call in (
        "attn_backend.init_cuda_graph_state(self.max_bs, self.max_num_token)",
        "attn_backend.init_forward_metadata_out_graph(forward_batch, in_capture=True)",
        "attn_backend.init_forward_metadata_in_graph(forward_batch)",
        "attn_backend.init_forward_metadata_out_graph(fb_view)",
        "get_cuda_graph_seq_len_fill_value()",
    ):
        assert call in source, call
    assert (Phase.DECODE, Phase.PREFILL) == ("decode", "prefill")
    assert {Backend.FULL, Backend.DISABLED} <= set(Backend.ALL) and callable(with_phase)


def test_speculative_graph_protocol_we_implement():
    """What our verify / draft-decode graph hooks rely on (sglang_backend.py, sglang_draft_backend.py):
    the EAGLE worker writes the tree into the target backend's `verify_mask` buffer
    when it fits, in the mask's layout; the draft-decode runner drives the multi-step
    container; draft-extend graphs are limited to a closed list of SGLang backends
    (so ours stays eager there); SGLang's runners fill seq_lens with our fill value."""
    from sglang.srt.layers.attention.verify_mask import VerifyMask
    from sglang.srt.model_executor.runner import decode_cuda_graph_runner
    from sglang.srt.speculative import (
        eagle_draft_cuda_graph_runner,
        eagle_worker_common,
        eagle_worker_v2,
    )
    from sglang.srt.speculative.eagle_utils import TreeMaskMode

    assert set(VerifyMask.__struct_fields__) == {"buffer", "mode", "max_bs", "is_read"}
    assert TreeMaskMode.QLEN_ONLY != TreeMaskMode.FULL_MASK
    common = inspect.getsource(eagle_worker_common)
    for text in (
        "verify_mask = target_attn_backend.verify_mask",
        "mask_mode, fill_mask = verify_mask.mode, verify_mask.is_read",
        "tree_mask_buf = verify_mask.buffer if verify_mask.fits(bs) else None",
    ):
        assert text in common, text
    draft = inspect.getsource(eagle_draft_cuda_graph_runner)
    for text in (
        "self.draft_attn_backend.init_cuda_graph_state(self.max_bs, self.max_num_token)",
        "self.draft_attn_backend.init_forward_metadata_in_graph(forward_batch)",
        "forward_batch, in_capture=True",
        'self.captured_req_width = resolve_num_tokens_per_req(phase="draft_decode")',
    ):
        assert text in draft, text
    worker = inspect.getsource(eagle_worker_v2)
    assert "graph_supported_backend_types = [" in worker
    # The opt-in glue graph would capture our out-of-graph prep (support.py refuses it).
    assert "SGLANG_ENABLE_METADATA_GLUE_GRAPH" in inspect.getsource(decode_cuda_graph_runner)


def test_platform_base_we_subclass():
    from sglang.srt.platforms.cpu import CpuSRTPlatform
    from sglang.srt.platforms.device_mixin import PlatformEnum

    assert hasattr(PlatformEnum, "OOT")
    for name in ("get_default_attention_backend", "apply_server_args_defaults"):
        assert hasattr(CpuSRTPlatform, name), name


def test_moe_and_quantization_extension_points():
    from sglang.srt.arg_groups import choices
    from sglang.srt.layers.moe.fused_moe_triton import FusedMoeWeightScaleSupported
    from sglang.srt.layers.moe.moe_runner import runner
    from sglang.srt.layers.moe.moe_runner.base import DispatchMoeRunnerCore, MoeRunnerConfig
    from sglang.srt.layers.moe.utils import register_moe_runner_backend_name
    from sglang.srt.layers.quantization import QUANTIZATION_METHODS
    from sglang.srt.layers.quantization.base_config import QuantizationConfig
    from sglang.srt.layers.quantization.quark.utils import should_ignore_layer

    assert callable(choices.add_moe_runner_backend_choices)
    assert callable(choices.add_quantization_method_choices)
    assert callable(runner.register_moe_runner_core) and callable(register_moe_runner_backend_name)
    assert isinstance(runner._CUSTOM_RUNNER_CORE_FACTORIES, dict)
    assert isinstance(QUANTIZATION_METHODS, dict)
    assert FusedMoeWeightScaleSupported.GROUP.value == "group"
    assert callable(should_ignore_layer)
    assert "override_quantization_method" in vars(QuantizationConfig)
    run = inspect.signature(DispatchMoeRunnerCore.run_from_dispatch).parameters
    assert list(run)[:4] == ["self", "dispatch_output", "quant_info", "runner_config"]
    fields = set(MoeRunnerConfig.__dataclass_fields__)
    for name in ("activation", "is_gated", "routed_scaling_factor", "swiglu_limit", "no_combine"):
        assert name in fields, name


def test_deepseek_scales_routed_output_off_cuda():
    """moe/sglang_runner.py applies routed_scaling_factor only where the model does not."""
    from sglang.srt.models import deepseek_v2

    source = inspect.getsource(deepseek_v2)
    assert "not _is_cuda\n            and not _is_musa" in source
    assert "final_hidden_states *= self.routed_scaling_factor" in source
