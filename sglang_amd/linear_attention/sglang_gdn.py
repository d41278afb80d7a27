"""SGLang adapter: SGLang's Gated DeltaNet kernel calls served by our linear_attention ops.

Where it sits: SGLang 0.5.23 serves Qwen3-Next's linear-attention layers with
`GDNAttnBackend` (`layers/attention/linear/gdn_backend.py`, inside
`HybridLinearAttnBackend` beside the full-attention backend), which calls Triton
kernels: fla's chunked and recurrent gated delta rule through
`GDNKernelDispatcher`, a causal conv1d (prefill and update), the gating, and the
radix cache's state snapshots and the commit of a speculative verify's accepted
step; the model adds its fused qkvz/ba split, a gated RMSNorm and (in its MoE) a
sigmoid-gated shared expert. None runs on a machine without a GPU. Each function here has the
signature of the SGLang function it stands in for and runs our op through the
tiers (`TieredOp`, torch tier); `patches/cpu_gdn.py` installs them on our CPU
platform only. `TorchGDNKernel` is a `LinearAttnKernelBase`, the interface
SGLang's dispatcher expects of a GDN kernel; SGLang keeps its own orchestration
(metadata, padding rows, prefix-cache tracking, speculative bookkeeping).
Imports sglang.
"""

from __future__ import annotations

import functools
import logging

import torch
from sglang.srt.layers.attention.linear.kernels.kernel_backend import LinearAttnKernelBase

from sglang_amd import trace
from sglang_amd.linear_attention.gdn import CHUNK_SIZE
from sglang_amd.tiers import TieredOp

logger = logging.getLogger(__name__)

PAD_SLOT_ID = -1  # SGLang's padding slot (causal_conv1d_triton.PAD_SLOT_ID)


@functools.cache
def _op(name: str, device: str) -> TieredOp:
    return TieredOp(f"linear_attention.{name}", device)


def _device(args) -> str:
    """The device of a call: its first tensor's (looking into tuples of them)."""
    for arg in args:
        if isinstance(arg, torch.Tensor):
            return arg.device.type
        if isinstance(arg, tuple):
            return _device(arg)
    raise ValueError("sglang-amd GDN: a call without tensors")


def _run(name: str, *args, **kwargs):
    """Op linear_attention.<name> on the tier chosen for the call's device."""
    return _op(name, _device(args))(*args, **kwargs)


def _check_pad_slot(pad_slot_id: int) -> None:
    if pad_slot_id != PAD_SLOT_ID:
        raise NotImplementedError(f"sglang-amd GDN: pad_slot_id {pad_slot_id} (SGLang uses -1)")


class TorchGDNKernel(LinearAttnKernelBase):
    """The GDN kernel `GDNKernelDispatcher` runs on our CPU platform: decode, extend
    and chain target-verify through linear_attention.gdn_recurrent / gdn_chunked."""

    # No per-chunk snapshot buffer and no fused projection+conv decode: SGLang then
    # takes its general paths (per-chunk states `h`, split q/k/v).
    supports_packed_decode = False
    supports_track_state_snapshot = False
    supports_strided_target_verify_qkv = False

    def decode(
        self, q, k, v, a, b, *, A_log, dt_bias, ssm_states, cache_indices, query_start_loc, **kwargs
    ):
        """SGLang: q, k [1, B, H, K], v [1, B, HV, V], a, b [B, HV]; returns [1, B, HV, V]."""
        g, beta = _run("gating", A_log, a, b, dt_bias)
        return _run("gdn_recurrent", q, k, v, g, beta, ssm_states, cache_indices, query_start_loc)

    def extend(
        self,
        q,
        k,
        v,
        g,
        beta,
        *,
        ssm_states,
        cache_indices,
        query_start_loc,
        inplace_update: bool = True,
        **kwargs,
    ) -> tuple:
        """SGLang: q, k [1, T, H, K], v [1, T, HV, V], g, beta [1, T, HV];
        returns (o [1, T, HV, V], None, per-chunk states h [1, NT, HV, V, K])."""
        if kwargs.get("track_state") is not None:
            raise NotImplementedError("sglang-amd GDN: the fp32 track-state snapshot")
        o, h = _run(
            "gdn_chunked",
            q,
            k,
            v,
            g,
            beta,
            ssm_states,
            cache_indices,
            query_start_loc,
            chunk_size=CHUNK_SIZE,
            write_state=inplace_update,
        )
        out = kwargs.get("output")
        if out is not None:
            out.copy_(o.view_as(out))
            o = out
        return o, None, h

    def target_verify(
        self,
        A_log,
        dt_bias,
        q,
        k,
        v,
        a,
        b,
        *,
        ssm_states,
        cache_indices,
        query_start_loc,
        intermediate_states_buffer=None,
        intermediate_state_indices=None,
        cache_steps=None,
        retrieve_parent_token=None,
        **kwargs,
    ):
        """Speculative verify of chain drafts: each draft's output, the state after each
        draft in intermediate_states_buffer (SGLang commits the accepted one), the
        slot's state untouched."""
        if retrieve_parent_token is not None:
            raise NotImplementedError(
                "sglang-amd GDN: tree drafts (--speculative-eagle-topk > 1) over linear "
                "attention; use --speculative-eagle-topk 1"
            )
        g, beta = _run("gating", A_log, a, b, dt_bias)
        return _run(
            "gdn_recurrent",
            q,
            k,
            v,
            g,
            beta,
            ssm_states,
            cache_indices,
            query_start_loc,
            write_state=False,
            step_states=intermediate_states_buffer,
            step_state_indices=intermediate_state_indices,
        )


def use_torch_kernel(dispatcher) -> None:
    """Point an SGLang `GDNKernelDispatcher` at `TorchGDNKernel` for every mode."""
    kernel = TorchGDNKernel()
    dispatcher.decode_kernel = dispatcher.extend_kernel = kernel
    dispatcher.verify_kernel = dispatcher.tree_verify_kernel = kernel
    dispatcher.verify_kernel_is_flashinfer = False
    dispatcher.supports_packed_decode = False
    trace.record("gdn_kernel", kernel="TorchGDNKernel")
    logger.info("sglang-amd: GDN linear attention on the torch tier (TorchGDNKernel)")


# --- SGLang's module-level kernels, same signatures -------------------------------------


def causal_conv1d_fn(
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    seq_lens_cpu,
    cache_indices=None,
    has_initial_state=None,
    activation="silu",
    pad_slot_id=PAD_SLOT_ID,
    validate_data=False,
    block_table=None,
    **kwargs,
):
    """kernels/ops/mamba/causal_conv1d_triton.causal_conv1d_fn: x [dim, T] -> [dim, T]."""
    _check_pad_slot(pad_slot_id)
    if isinstance(activation, bool):
        activation = "silu" if activation else None
    if cache_indices is None:
        cache_indices = torch.arange(query_start_loc.numel() - 1, device=x.device)
    return _run(
        "conv1d",
        x,
        weight,
        bias,
        conv_states,
        cache_indices,
        query_start_loc,
        has_initial_state,
        activation,
    )


def causal_conv1d_update(
    x,
    conv_state,
    weight,
    bias=None,
    activation=None,
    cache_seqlens=None,
    conv_state_indices=None,
    num_accept_tokens=None,
    intermediate_conv_window=None,
    intermediate_state_indices=None,
    retrieve_next_token=None,
    retrieve_next_sibling=None,
    retrieve_parent_token=None,
    pad_slot_id=PAD_SLOT_ID,
    metadata=None,
    validate_data=False,
):
    """kernels/ops/mamba/causal_conv1d_triton.causal_conv1d_update: x [B, dim] or
    [B, dim, L] -> the same shape; the windows move on by L (in verify too: SGLang
    then restores the accepted step's window from intermediate_conv_window)."""
    _check_pad_slot(pad_slot_id)
    for name, value in (
        ("cache_seqlens", cache_seqlens),
        ("num_accept_tokens", num_accept_tokens),
        ("retrieve_next_token", retrieve_next_token),
    ):
        if value is not None:
            raise NotImplementedError(f"sglang-amd GDN: causal_conv1d_update with {name}")
    if isinstance(activation, bool):
        activation = "silu" if activation else None
    if conv_state_indices is None:
        conv_state_indices = torch.arange(x.shape[0], device=x.device)
    return _run(
        "conv1d_update",
        x,
        conv_state,
        weight,
        bias,
        activation,
        conv_state_indices,
        step_windows=intermediate_conv_window,
        step_window_indices=intermediate_state_indices,
    )


def fused_gdn_gating(A_log, a, b, dt_bias, beta: float = 1.0, threshold: float = 20.0):
    """kernels/ops/attention/linear/fused_gdn_gating: a, b [T, HV] -> (g, beta) [1, T, HV] f32."""
    if beta != 1.0 or threshold != 20.0:
        raise NotImplementedError(f"sglang-amd GDN: softplus beta {beta}, threshold {threshold}")
    return _run("gating", A_log, a, b, dt_bias)


def fused_qkvzba_split_reshape_cat(
    mixed_qkvz, mixed_ba, num_heads_qk, num_heads_v, head_qk, head_v
):
    """kernels/ops/attention/triton_gdn_fused_proj: Qwen3-Next's interleaved projections."""
    return _run("split_qkvzba", mixed_qkvz, mixed_ba, num_heads_qk, num_heads_v, head_qk, head_v)


def fused_rmsnorm_gated_forward(self, x, g, residual=None, prenorm=False, residual_in_fp32=False):
    """fla's FusedRMSNormGated.forward: rmsnorm(x) * weight * act(g), as Qwen3-Next calls it."""
    if residual is not None or prenorm:
        raise NotImplementedError("sglang-amd GDN: FusedRMSNormGated with a residual")
    if self.bias is not None:
        raise NotImplementedError("sglang-amd GDN: FusedRMSNormGated with a bias")
    return _run("gated_rmsnorm", x, g, self.weight, self.eps, self.activation)


def track_mamba_states_if_needed(
    conv_states,
    ssm_states,
    cache_indices,
    mamba_track_mask,
    mamba_track_indices,
    batch_size,
    check_freed_slots=False,
):
    """mamba_state_scatter_triton: one layer's slots cache_indices[i] -> mamba_track_indices[i]
    where mamba_track_mask[i], i < batch_size."""
    rows = slice(0, batch_size)
    _run(
        "copy_slots",
        (conv_states, ssm_states),
        cache_indices[rows],
        mamba_track_indices[rows],
        mamba_track_mask[rows],
        skip_freed=check_freed_slots,
    )


def track_mamba_states_all_layers(
    conv_states_pool,
    ssm_states_pool,
    cache_indices,
    mamba_track_mask,
    mamba_track_indices,
    batch_size,
    check_freed_slots=False,
):
    """The same for every layer at once: pools [layers, slots, ...]."""
    rows = slice(0, batch_size)
    _run(
        "copy_slots",
        (conv_states_pool, ssm_states_pool),
        cache_indices[rows],
        mamba_track_indices[rows],
        mamba_track_mask[rows],
        slot_dim=1,
        skip_freed=check_freed_slots,
    )


# --- Qwen3-Next's MoE: the gated shared expert (qwen2_moe.Qwen2MoeSparseMoeBlock) --------


def fused_gate_sigmoid_mul(hidden_states, gate_weight, shared_output):
    """kernels/ops/elementwise: sigmoid(hidden . gate_weight) * shared_output per token, the
    math of SGLang's unfused path (`_forward_shared_experts`), in float32."""
    gate = torch.sigmoid(hidden_states.float() @ gate_weight.float())[:, None]
    return (gate * shared_output.float()).to(shared_output.dtype)


def fused_gate_sigmoid_mul_add(hidden_states, gate_weight, shared_output, final_hidden_states):
    """The same, added into final_hidden_states in place."""
    gate = torch.sigmoid(hidden_states.float() @ gate_weight.float())[:, None]
    out = final_hidden_states.float() + gate * shared_output.float()
    final_hidden_states.copy_(out.to(final_hidden_states.dtype))


# --- Qwen3-Next MTP: the draft shares the target's embedding and head --------------------


def set_embed_and_head(self, embed, head):
    """models/qwen3_next.Qwen3NextForCausalLM.set_embed_and_head without its closing
    `torch.cuda.empty_cache(); torch.cuda.synchronize()` (no CUDA device here)."""
    del self.model.embed_tokens.weight
    del self.lm_head.weight
    self.model.embed_tokens.weight = embed
    self.lm_head.weight = head


def scatter_mamba_states_after_mtp_verify(
    mamba_caches,
    state_indices_tensor,
    last_correct_step_indices,
    mamba_track_indices,
    mamba_steps_to_track,
    src_indices_raw=None,
):
    """mamba_state_scatter_triton: after verify, each request's recurrent state and conv
    windows at its last accepted draft (and, crossing a track point, at that step into
    its track slot), from the per-draft states TorchGDNKernel.target_verify kept."""
    pairs = (
        (mamba_caches.temporal, mamba_caches.intermediate_ssm),
        *zip(mamba_caches.conv, mamba_caches.intermediate_conv_window, strict=True),
    )
    _run("commit_steps", pairs, state_indices_tensor, last_correct_step_indices, src_indices_raw)
    if mamba_track_indices is not None:
        _run("commit_steps", pairs, mamba_track_indices, mamba_steps_to_track, src_indices_raw)
