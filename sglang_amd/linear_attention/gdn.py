"""Gated DeltaNet ops over SGLang's state pool: what `tiers.OPS` runs for linear_attention.*.

Where it sits: SGLang's GDN backend (`layers/attention/linear/gdn_backend.py`)
convolves, gates and runs the delta rule per linear-attention layer; our adapter
(`sglang_gdn.py`) hands these ops SGLang's own tensors, and each op here is the
torch tier (math in `reference.py`). Tiers: torch only for now (no Triton tier
yet; SGLang's fla Triton kernels stay on GPUs). Never imports sglang.

The state pool, as SGLang lays it out for one layer (a view of its MambaPool):

    ssm_states   [slots, HV, V, K]  recurrent state per request slot (float32 or bf16)
    conv_states  [slots, dim, S]    the last S >= W-1 conv inputs per slot, oldest first
    cache_indices [N] int           the slot of each of the batch's N sequences; < 0: a
                                    padding row, neither read nor written
    query_start_loc [N+1] int       sequence i's tokens are [qsl[i], qsl[i+1]) of the batch

with dim = 2*H*K + HV*V (the conv runs over q, k and v concatenated), H key heads
of K, HV = r*H value heads of V. Every op reads a sequence's state from its slot
and writes the state after its tokens back there (unless told not to).
"""

from __future__ import annotations

import torch

from sglang_amd.linear_attention import reference

# Tokens per chunk of the chunked form: SGLang's radix cache snapshots the state at
# multiples of its mamba_chunk_size (64, fla's chunk) from the per-chunk states.
CHUNK_SIZE = 64


def _spans(query_start_loc: torch.Tensor) -> list[tuple[int, int]]:
    loc = query_start_loc.tolist()
    return list(zip(loc[:-1], loc[1:], strict=True))


def _flat(x: torch.Tensor, tail: int) -> torch.Tensor:
    """Drop SGLang's leading batch dim of 1 ([1, T, ...] -> [T, ...])."""
    return x.reshape(-1, *x.shape[x.dim() - tail :])


def gdn_chunked_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    ssm_states: torch.Tensor,
    cache_indices: torch.Tensor,
    query_start_loc: torch.Tensor,
    *,
    chunk_size: int = CHUNK_SIZE,
    scale: float | None = None,
    write_state: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked gated delta rule over a varlen batch (extend, prefill): op linear_attention.gdn_chunked.

    q, k [1, T, H, K]; v [1, T, HV, V] (any float dtype); g, beta [1, T, HV] float32
    (g the log decay, <= 0); ssm_states [slots, HV, V, K], read as each sequence's
    starting state and, with write_state, overwritten with its final state.
    q and k are L2-normalized here, q scaled by `scale` (K^-1/2).
    Returns (o [1, T, HV, V] in q's dtype, chunk_states [1, NT, HV, V, K] in k's
    dtype: sequence by sequence, the state at the start of each of its
    ceil(len/chunk_size) chunks, what SGLang snapshots for its radix cache).
    """
    q, k, v = _flat(q, 2), _flat(k, 2), _flat(v, 2)
    g, beta = _flat(g, 1), _flat(beta, 1)
    hv, vd = v.shape[-2:]
    out = q.new_zeros(1, q.shape[0], hv, vd)
    chunk_states = []
    for (start, end), slot in zip(_spans(query_start_loc), cache_indices.tolist(), strict=True):
        n_chunks = -(-(end - start) // chunk_size)
        if slot < 0:
            chunk_states.append(k.new_zeros(n_chunks, *ssm_states.shape[1:]))
            continue
        o, final, starts = reference.delta_rule_chunked(
            q[start:end],
            k[start:end],
            v[start:end],
            g[start:end],
            beta[start:end],
            ssm_states[slot],
            chunk_size,
            scale,
        )
        out[0, start:end] = o.to(out.dtype)
        chunk_states.append(starts.to(k.dtype))
        if write_state:
            ssm_states[slot] = final.to(ssm_states.dtype)
    if not chunk_states:
        return out, k.new_zeros(1, 0, *ssm_states.shape[1:])
    return out, torch.cat(chunk_states)[None]


def gdn_recurrent_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    ssm_states: torch.Tensor,
    cache_indices: torch.Tensor,
    query_start_loc: torch.Tensor,
    *,
    scale: float | None = None,
    write_state: bool = True,
    step_states: torch.Tensor | None = None,
    step_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-by-token gated delta rule (decode: one token a sequence; verify: a few):
    op linear_attention.gdn_recurrent.

    Shapes as `gdn_chunked_torch`. step_states [rows, steps, HV, V, K] with
    step_state_indices [N]: also store the state after each token of sequence i
    in step_states[step_state_indices[i], t] (speculative verify keeps every
    step and commits the accepted one later, with write_state False).
    Returns o [1, T, HV, V] in q's dtype.
    """
    q, k, v = _flat(q, 2), _flat(k, 2), _flat(v, 2)
    g, beta = _flat(g, 1), _flat(beta, 1)
    hv, vd = v.shape[-2:]
    out = q.new_zeros(1, q.shape[0], hv, vd)
    spans = _spans(query_start_loc)
    slots = cache_indices[: len(spans)].long()
    lengths = {end - start for start, end in spans}
    if len(lengths) == 1 and spans and spans[0][0] == 0 and bool((slots >= 0).all()):
        # equal lengths, packed (decode, chain verify): one batched recurrence
        n, length = len(spans), lengths.pop()
        o, states = reference.delta_rule_recurrent(
            *(x[: n * length].reshape(n, length, *x.shape[1:]) for x in (q, k, v, g, beta)),
            ssm_states[slots],
            scale,
        )
        out[0, : n * length] = o.reshape(n * length, hv, vd).to(out.dtype)
        per_seq = list(zip(range(n), states, strict=True))
    else:
        per_seq = []
        for i, ((start, end), slot) in enumerate(zip(spans, slots.tolist(), strict=True)):
            if slot < 0 or end == start:
                continue
            o, states = reference.delta_rule_recurrent(
                *(x[start:end] for x in (q, k, v, g, beta)), ssm_states[slot], scale
            )
            out[0, start:end] = o.to(out.dtype)
            per_seq.append((i, states))
    for i, states in per_seq:  # states [len_i, HV, V, K]: after each token
        if write_state and states.shape[0]:
            ssm_states[slots[i]] = states[-1].to(ssm_states.dtype)
        if step_states is not None:
            row = int(step_state_indices[i])
            step_states[row, : states.shape[0]] = states.to(step_states.dtype)
    return out


def gating_torch(
    A_log: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dt_bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The decay and write strength of each token and value head: op linear_attention.gating.

    a, b [T, HV] (the model's projections); A_log, dt_bias [HV].
    Returns (g, beta) [1, T, HV] float32: g = -exp(A_log) softplus(a + dt_bias),
    beta = sigmoid(b)."""
    g, beta = reference.gates(A_log, a, b, dt_bias)
    return g[None], beta[None]


def conv1d_torch(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor,
    cache_indices: torch.Tensor,
    query_start_loc: torch.Tensor,
    has_initial_state: torch.Tensor | None,
    activation: str | None,
) -> torch.Tensor:
    """Causal depthwise conv over a varlen batch (extend): op linear_attention.conv1d.

    x [dim, T] (any strides); weight [dim, W]; bias [dim] or None; conv_states
    [slots, dim, S]. Sequence i continues the window in its slot when
    has_initial_state[i] (a cached prefix), else zeros; its slot then holds the
    last S inputs. Returns out [dim, T] in x's dtype (padding rows' columns zero).
    """
    out = torch.zeros_like(x)
    init = [True] * len(cache_indices) if has_initial_state is None else has_initial_state.tolist()
    spans = _spans(query_start_loc)
    for (start, end), slot, warm in zip(spans, cache_indices.tolist(), init, strict=True):
        if slot < 0:
            continue
        window = conv_states[slot] if warm else torch.zeros_like(conv_states[slot])
        o, new_window = reference.causal_conv1d(x[:, start:end], weight, bias, window, activation)
        out[:, start:end] = o.to(out.dtype)
        conv_states[slot] = new_window.to(conv_states.dtype)
    return out


def conv1d_update_torch(
    x: torch.Tensor,
    conv_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None,
    cache_indices: torch.Tensor,
    *,
    write_state: bool = True,
    step_windows: torch.Tensor | None = None,
    step_window_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """The conv for a few new tokens of each sequence (decode, verify): op linear_attention.conv1d_update.

    x [B, dim] (one token each) or [B, dim, L]; conv_states [slots, dim, S];
    cache_indices [B] (< 0: skipped, output zero). With write_state each slot's
    window moves on by L. step_windows [rows, steps, dim, S] with
    step_window_indices [B]: also store the window after each token
    (speculative verify). Returns out shaped like x, in x's dtype.
    """
    squeeze = x.dim() == 2
    x3 = x[..., None] if squeeze else x
    out = torch.zeros_like(x3)
    for i, slot in enumerate(cache_indices[: x3.shape[0]].tolist()):
        if slot < 0:
            continue
        o, window = reference.causal_conv1d(x3[i], weight, bias, conv_states[slot], activation)
        out[i] = o.to(out.dtype)
        if step_windows is not None:
            row, width = int(step_window_indices[i]), conv_states.shape[-1]
            full = torch.cat([conv_states[slot].float(), x3[i].float()], dim=-1)
            for t in range(x3.shape[-1]):
                step_windows[row, t] = full[:, t + 1 : t + 1 + width].to(step_windows.dtype)
        if write_state:
            conv_states[slot] = window.to(conv_states.dtype)
    return out[..., 0] if squeeze else out


def gated_rmsnorm_torch(
    x: torch.Tensor,
    gate: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float,
    activation: str = "silu",
) -> torch.Tensor:
    """Each head's output norm: rmsnorm(x) * weight * act(gate): op linear_attention.gated_rmsnorm.

    x, gate [N, V] (or any [..., V]); weight [V]. Returns x's shape and dtype."""
    return reference.gated_rmsnorm(x, gate, weight, eps, activation)


def split_qkvzba_torch(
    mixed_qkvz: torch.Tensor,
    mixed_ba: torch.Tensor,
    num_k_heads: int,
    num_v_heads: int,
    head_k: int,
    head_v: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Qwen3-Next's interleaved projections into the conv input and gates:
    op linear_attention.split_qkvzba. See `reference.split_qkvzba` for the layout.
    Returns (mixed_qkv [T, 2HK + HV*V], z [T, HV, V], b [T, HV], a [T, HV])."""
    return reference.split_qkvzba(mixed_qkvz, mixed_ba, num_k_heads, num_v_heads, head_k, head_v)


def copy_state_slots_torch(
    pools: tuple[torch.Tensor, ...],
    src: torch.Tensor,
    dst: torch.Tensor,
    mask: torch.Tensor,
    *,
    slot_dim: int = 0,
    skip_freed: bool = False,
) -> None:
    """Copy slot src[i] to slot dst[i] where mask[i], in every pool: op linear_attention.copy_slots.

    Each pool holds slots along `slot_dim` ([slots, ...] for one layer, [layers,
    slots, ...] for all). src, dst, mask [B] (int, int, bool). With skip_freed,
    rows whose src or dst is < 0 are left alone (SGLang's unified pool marks freed
    slots -1). What SGLang's radix cache runs to snapshot states while decoding."""
    rows = mask.nonzero().flatten()
    src, dst = src[rows].long(), dst[rows].long()
    if skip_freed:
        keep = (src >= 0) & (dst >= 0)
        src, dst = src[keep], dst[keep]
    for pool in pools:
        view = pool.movedim(slot_dim, 0)
        view[dst] = view[src]


def commit_steps_torch(
    pairs: tuple[tuple[torch.Tensor, torch.Tensor], ...],
    dst: torch.Tensor,
    steps: torch.Tensor,
    src_rows: torch.Tensor | None = None,
) -> None:
    """After a speculative verify, keep each request's state at its last accepted draft:
    op linear_attention.commit_steps.

    pairs: (pool [layers, slots, ...], step states [layers, rows, steps, ...]) for the
    recurrent states and the conv windows (the step states may be an overlapping view).
    For each request i with steps[i] >= 0 and dst[i] >= 0:
    pool[:, dst[i]] = step_states[:, src_rows[i], steps[i]] (src_rows default: i)."""
    rows = torch.arange(steps.shape[0]) if src_rows is None else src_rows.long().cpu()
    steps, dst = steps.long().cpu(), dst.long().cpu()
    keep = (steps >= 0) & (dst >= 0)
    for pool, step_states in pairs:
        if pool.numel() == 0 or not bool(keep.any()):
            continue
        d = pool.device
        pool[:, dst[keep].to(d)] = step_states[:, rows[keep].to(d), steps[keep].to(d)]
