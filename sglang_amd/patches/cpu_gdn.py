"""Serve Gated DeltaNet linear attention (Qwen3-Next) on our CPU platform.

SGLang 0.5.23 runs a hybrid GDN model's linear-attention layers on Triton
kernels only (fla's chunked/recurrent gated delta rule, a causal conv1d, the
gating, the model's fused qkvz/ba split and gated RMSNorm, the radix cache's
state-snapshot copies, the commit of a speculative verify's accepted step), or on
sgl-kernel's CPU build (not on PyPI) under its own CPU engine. It has no extension
point for them: `GDNKernelDispatcher` maps the closed set of
`--linear-attn-*-backend` names to its kernel classes and raises on any other, and
the rest are module-level calls. Two more calls of the same model need a GPU: its
MoE's sigmoid-gated shared expert (a Triton kernel) and, for MTP, the draft's
`set_embed_and_head` (ends in `torch.cuda.synchronize()`).

Each hook below is an AROUND hook through SGLang's HookRegistry that hands the
call to our adapter (`linear_attention/sglang_gdn.py`: same signature, our
linear_attention ops through the tiers) when its tensors are on the CPU, and to
SGLang's code otherwise. The hooks are registered only in processes of our CPU
platform (`SGLANG_PLATFORM=sglang_amd_cpu`); on a GPU, or under any other
platform, nothing is registered and SGLang's fla kernels serve these layers.
`tests/test_patches.py` checks every target still exists with the signature
wrapped here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from sglang_amd.flags import CPU_PLATFORM

_CONV = "sglang.kernels.ops.mamba.causal_conv1d_triton"
_TRACK = "sglang.kernels.ops.mamba.mamba_state_scatter_triton"
DISPATCHER_INIT = "sglang.srt.layers.attention.linear.gdn_backend.GDNKernelDispatcher.__init__"
CONV1D_FN = f"{_CONV}.causal_conv1d_fn"
CONV1D_UPDATE = f"{_CONV}.causal_conv1d_update"
GATING = "sglang.kernels.ops.attention.linear.fused_gdn_gating.fused_gdn_gating"
SPLIT = "sglang.kernels.ops.attention.triton_gdn_fused_proj.fused_qkvzba_split_reshape_cat"
NORM = "sglang.kernels.ops.attention.fla.fused_norm_gate.FusedRMSNormGated.forward"
_ELEMENTWISE = "sglang.kernels.ops.elementwise.elementwise"
# Qwen3-Next's MoE (Qwen2MoeSparseMoeBlock) gates its shared expert with these
GATE_MUL = f"{_ELEMENTWISE}.fused_gate_sigmoid_mul"
GATE_MUL_ADD = f"{_ELEMENTWISE}.fused_gate_sigmoid_mul_add"
# Qwen3-Next MTP's draft takes the target's embedding and head through this
SET_EMBED_AND_HEAD = "sglang.srt.models.qwen3_next.Qwen3NextForCausalLM.set_embed_and_head"
TRACK_ONE = f"{_TRACK}.track_mamba_states_if_needed"
COMMIT = f"{_TRACK}.scatter_mamba_states_after_mtp_verify"
TRACK_ALL = f"{_TRACK}.track_mamba_states_all_layers"

_TRACK_PARAMS = (
    "cache_indices",
    "mamba_track_mask",
    "mamba_track_indices",
    "batch_size",
    "check_freed_slots",
)
# target -> the leading parameters of the function it names, as our adapter takes them
TARGETS: dict[str, tuple[str, ...]] = {
    DISPATCHER_INIT: ("self", "decode_backend", "prefill_backend", "verify_backend"),
    CONV1D_FN: (
        "x",
        "weight",
        "bias",
        "conv_states",
        "query_start_loc",
        "seq_lens_cpu",
        "cache_indices",
        "has_initial_state",
        "activation",
        "pad_slot_id",
    ),
    CONV1D_UPDATE: (
        "x",
        "conv_state",
        "weight",
        "bias",
        "activation",
        "cache_seqlens",
        "conv_state_indices",
        "num_accept_tokens",
        "intermediate_conv_window",
        "intermediate_state_indices",
        "retrieve_next_token",
        "retrieve_next_sibling",
        "retrieve_parent_token",
        "pad_slot_id",
    ),
    GATING: ("A_log", "a", "b", "dt_bias", "beta", "threshold"),
    SPLIT: ("mixed_qkvz", "mixed_ba", "num_heads_qk", "num_heads_v", "head_qk", "head_v"),
    NORM: ("self", "x", "g", "residual", "prenorm", "residual_in_fp32"),
    GATE_MUL: ("hidden_states", "gate_weight", "shared_output"),
    GATE_MUL_ADD: ("hidden_states", "gate_weight", "shared_output", "final_hidden_states"),
    SET_EMBED_AND_HEAD: ("self", "embed", "head"),
    TRACK_ONE: ("conv_states", "ssm_states", *_TRACK_PARAMS),
    COMMIT: (
        "mamba_caches",
        "state_indices_tensor",
        "last_correct_step_indices",
        "mamba_track_indices",
        "mamba_steps_to_track",
        "src_indices_raw",
    ),
    TRACK_ALL: ("conv_states_pool", "ssm_states_pool", *_TRACK_PARAMS),
}


def on_our_platform() -> bool:
    """Whether this process serves through our CPU platform (the only place these hooks go)."""
    return os.environ.get("SGLANG_PLATFORM") == CPU_PLATFORM


def _first_tensor(args, kwargs) -> torch.Tensor | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _on_cpu(adapter_name: str) -> Callable:
    """AROUND hook: the adapter's function when the call's first tensor is on the CPU."""

    def hook(original, *args, **kwargs):
        first = _first_tensor(args, kwargs)
        if first is None or first.device.type != "cpu":
            return original(*args, **kwargs)
        from sglang_amd.linear_attention import sglang_gdn

        return getattr(sglang_gdn, adapter_name)(*args, **kwargs)

    hook.__name__ = f"cpu_{adapter_name}"
    return hook


def _norm_forward(original, self, x, *args, **kwargs):
    if x.device.type != "cpu":
        return original(self, x, *args, **kwargs)
    from sglang_amd.linear_attention.sglang_gdn import fused_rmsnorm_gated_forward

    return fused_rmsnorm_gated_forward(self, x, *args, **kwargs)


def _set_embed_and_head(original, self, embed, head):
    if embed.device.type != "cpu":
        return original(self, embed, head)
    from sglang_amd.linear_attention.sglang_gdn import set_embed_and_head

    return set_embed_and_head(self, embed, head)


def _dispatcher_init(original, self, *args, **kwargs):
    """SGLang builds its dispatcher (validating the backend names), then every mode
    runs our kernel. Only registered on our CPU platform, whose device is the CPU."""
    original(self, *args, **kwargs)
    from sglang_amd.linear_attention.sglang_gdn import use_torch_kernel

    use_torch_kernel(self)


HOOKS: dict[str, Callable] = {
    DISPATCHER_INIT: _dispatcher_init,
    CONV1D_FN: _on_cpu("causal_conv1d_fn"),
    CONV1D_UPDATE: _on_cpu("causal_conv1d_update"),
    GATING: _on_cpu("fused_gdn_gating"),
    SPLIT: _on_cpu("fused_qkvzba_split_reshape_cat"),
    NORM: _norm_forward,
    GATE_MUL: _on_cpu("fused_gate_sigmoid_mul"),
    GATE_MUL_ADD: _on_cpu("fused_gate_sigmoid_mul_add"),
    SET_EMBED_AND_HEAD: _set_embed_and_head,
    TRACK_ONE: _on_cpu("track_mamba_states_if_needed"),
    TRACK_ALL: _on_cpu("track_mamba_states_all_layers"),
    COMMIT: _on_cpu("scatter_mamba_states_after_mtp_verify"),
}


def register() -> bool:
    """Register the hooks with SGLang's HookRegistry on our CPU platform (idempotent).
    Returns whether they are registered in this process; elsewhere nothing is."""
    if not on_our_platform():
        return False
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(__name__, HOOKS)
    return True
