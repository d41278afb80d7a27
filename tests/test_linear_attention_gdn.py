"""The Gated DeltaNet torch tier (sglang_amd/linear_attention) against HF transformers' own
torch functions for Qwen3-Next, and against SGLang's Triton kernels it stands in for.

Oracles: transformers' `torch_chunk_gated_delta_rule`, `torch_recurrent_gated_delta_rule`,
`causal_conv1d_fn`, `causal_conv1d_update`, `Qwen3NextRMSNormGated` and the layer's
`fix_query_key_value_ordering` (the float32 model the e2e test compares with), on fresh
random inputs of several shapes. HF keeps the state as [K, V] per head, SGLang's pool
as [V, K]: every comparison transposes, so a layout slip fails. The pool ops are also
checked for what they must leave alone (NaN-poisoned slots and rows), and SGLang's own
Triton kernels (run by Triton's CPU interpreter) must agree with our adapter on the
same call, which pins the calling contract the patch relies on.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from sglang_amd.linear_attention import gdn, reference

M = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")

FP32 = dict(atol=1e-5, rtol=1e-5)
BF16 = dict(atol=1e-2, rtol=1e-2)
H, K, V = 2, 32, 48  # key heads, key dim, value dim (K != V on purpose)


def _inputs(t: int, ratio: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hv = H * ratio
    q, k = (torch.randn(t, H, K, generator=g).to(dtype) for _ in range(2))
    v = torch.randn(t, hv, V, generator=g).to(dtype)
    a, b = torch.randn(t, hv, generator=g), torch.randn(t, hv, generator=g)
    a_log = torch.empty(hv).uniform_(0.02, 0.5, generator=g).log()
    dt_bias = torch.randn(hv, generator=g) * 0.5
    state = torch.randn(hv, V, K, generator=g) * 0.1
    g_, beta = reference.gates(a_log, a, b, dt_bias)
    return q, k, v, g_, beta, state, (a_log, a, b, dt_bias)


def _hf(fn, q, k, v, g, beta, state, **kw):
    """HF's delta rule: key heads repeated to the value heads, state as [HV, K, V]."""
    r = v.shape[-2] // q.shape[-2]
    o, s = fn(
        q.repeat_interleave(r, 1)[None].float(),
        k.repeat_interleave(r, 1)[None].float(),
        v[None].float(),
        g=g[None],
        beta=beta[None],
        initial_state=state.transpose(-1, -2)[None],
        output_final_state=True,
        use_qk_l2norm_in_kernel=True,
        **kw,
    )
    return o[0], s[0].transpose(-1, -2)


@pytest.mark.parametrize("t,ratio", [(1, 1), (63, 2), (64, 1), (65, 2), (200, 2)])
def test_chunked_and_recurrent_match_hf(t, ratio):
    q, k, v, g, beta, state, _ = _inputs(t, ratio, seed=t)
    want_o, want_s = _hf(M.torch_chunk_gated_delta_rule, q, k, v, g, beta, state)
    o, final, starts = reference.delta_rule_chunked(q, k, v, g, beta, state, 64)
    torch.testing.assert_close(o, want_o, **FP32)
    torch.testing.assert_close(final, want_s, **FP32)
    rec_o, rec_s = _hf(M.torch_recurrent_gated_delta_rule, q, k, v, g, beta, state)
    o2, states = reference.delta_rule_recurrent(q, k, v, g, beta, state)
    torch.testing.assert_close(o2, rec_o, **FP32)
    torch.testing.assert_close(states[-1], rec_s, **FP32)
    # the chunked form's per-chunk states are the recurrence's at each chunk start
    torch.testing.assert_close(o, o2, **FP32)
    assert starts.shape[0] == -(-t // 64)
    torch.testing.assert_close(starts[0], state)
    for c in range(1, starts.shape[0]):
        torch.testing.assert_close(starts[c], states[64 * c - 1], **FP32)


def test_bf16_inputs_stay_within_bf16_noise():
    q, k, v, g, beta, state, _ = _inputs(130, 2, seed=5, dtype=torch.bfloat16)
    want_o, want_s = _hf(M.torch_chunk_gated_delta_rule, q, k, v, g, beta, state)
    o, final, _ = reference.delta_rule_chunked(q, k, v, g, beta, state, 64)
    torch.testing.assert_close(o, want_o, **BF16)
    torch.testing.assert_close(final, want_s, **BF16)


def _pool(slots: int, hv: int) -> torch.Tensor:
    return torch.full((slots, hv, V, K), float("nan"))


def test_chunked_op_over_a_varlen_batch_reads_and_writes_only_its_slots():
    """Three sequences (one a single token) and a padding row, slots out of order;
    every other slot NaN-poisoned: outputs and written slots as HF, the rest untouched."""
    lens, slots = [70, 1, 130, 5], [5, 0, 2, -1]
    seqs = [_inputs(n, 2, seed=10 + i) for i, n in enumerate(lens)]
    pool = _pool(7, 2 * H)
    for (*_, state, _), slot in zip(seqs, slots, strict=True):
        if slot >= 0:
            pool[slot] = state
    cat = [torch.cat([s[i] for s in seqs]) for i in range(5)]
    qsl = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    o, h = gdn.gdn_chunked_torch(
        *(x[None] for x in cat), pool, torch.tensor(slots, dtype=torch.int32), qsl
    )
    assert o.shape == (1, sum(lens), 2 * H, V) and h.shape == (1, 2 + 1 + 3 + 1, 2 * H, V, K)
    start, chunk = 0, 0
    for (q, k, v, g, beta, state, _), n, slot in zip(seqs, lens, slots, strict=True):
        if slot >= 0:
            want_o, want_s = _hf(M.torch_chunk_gated_delta_rule, q, k, v, g, beta, state)
            torch.testing.assert_close(o[0, start : start + n], want_o, **FP32)
            torch.testing.assert_close(pool[slot], want_s, **FP32)
            torch.testing.assert_close(h[0, chunk], state)
        else:
            assert (o[0, start : start + n] == 0).all()
        start, chunk = start + n, chunk + -(-n // 64)
    untouched = [s for s in range(7) if s not in slots]
    assert pool[untouched].isnan().all()


def test_state_carries_across_extends_and_conv_windows():
    """A 150-token sequence served as 97 then 53 tokens (a chunked prefill, or a
    prefix-cache hit) through the pool equals one pass over all 150."""
    ratio, n, cut = 2, 150, 97
    q, k, v, g, beta, state, _ = _inputs(n, ratio, seed=3)
    whole = reference.delta_rule_chunked(q, k, v, g, beta, state, 64)
    pool = _pool(3, 2 * H)
    pool[1] = state
    slot, outs = torch.tensor([1]), []
    for lo, hi in ((0, cut), (cut, n)):
        part = (x[lo:hi][None] for x in (q, k, v, g, beta))
        o, _ = gdn.gdn_chunked_torch(*part, pool, slot, torch.tensor([0, hi - lo]))
        outs.append(o[0])
    torch.testing.assert_close(torch.cat(outs), whole[0], **FP32)
    torch.testing.assert_close(pool[1], whole[1], **FP32)

    dim, width = 20, 4
    x = torch.randn(dim, n)
    w, bias = torch.randn(dim, width), torch.randn(dim)
    want = M.causal_conv1d_fn(x[None], w, bias, activation="silu")[0]
    conv = torch.full((3, dim, width - 1), float("nan"))
    pieces = []
    for lo, hi, warm in ((0, cut, False), (cut, n, True)):
        pieces.append(
            gdn.conv1d_torch(
                x[:, lo:hi],
                w,
                bias,
                conv,
                slot,
                torch.tensor([0, hi - lo]),
                torch.tensor([warm]),
                "silu",
            )
        )
    torch.testing.assert_close(torch.cat(pieces, -1), want, **FP32)
    torch.testing.assert_close(conv[1], x[:, -(width - 1) :])
    assert conv[[0, 2]].isnan().all()


@pytest.mark.parametrize("ratio", [1, 2])
def test_recurrent_op_decodes_a_batch_and_verify_keeps_every_step(ratio):
    hv, b = H * ratio, 4
    seqs = [_inputs(1, ratio, seed=40 + i) for i in range(b)]
    slots = torch.tensor([3, 0, 6, 2], dtype=torch.int32)
    pool = _pool(7, hv)
    for (*_, state, _), s in zip(seqs, slots.tolist(), strict=True):
        pool[s] = state
    cat = [torch.cat([s[i] for s in seqs])[None] for i in range(5)]
    o = gdn.gdn_recurrent_torch(*cat, pool, slots, torch.arange(b + 1))
    for i, (q, k, v, g, beta, state, _) in enumerate(seqs):
        want_o, want_s = _hf(M.torch_recurrent_gated_delta_rule, q, k, v, g, beta, state)
        torch.testing.assert_close(o[0, i : i + 1], want_o, **FP32)
        torch.testing.assert_close(pool[slots[i]], want_s, **FP32)
    assert pool[[1, 4, 5]].isnan().all()

    # verify: 3 draft tokens each, the slot untouched, each step's state kept
    steps = 3
    seqs = [_inputs(steps, ratio, seed=60 + i) for i in range(2)]
    pool = _pool(4, hv)
    pool[2], pool[0] = seqs[0][5], seqs[1][5]
    before = pool.clone()
    step_states = torch.full((3, steps, hv, V, K), float("nan"))
    cat = [torch.cat([s[i] for s in seqs])[None] for i in range(5)]
    o = gdn.gdn_recurrent_torch(
        *cat,
        pool,
        torch.tensor([2, 0]),
        torch.tensor([0, steps, 2 * steps]),
        write_state=False,
        step_states=step_states,
        step_state_indices=torch.tensor([2, 0]),
    )
    torch.testing.assert_close(pool, before, equal_nan=True)
    assert step_states[1].isnan().all()
    for i, row in enumerate((2, 0)):
        q, k, v, g, beta, state, _ = seqs[i]
        want_o, _ = _hf(M.torch_recurrent_gated_delta_rule, q, k, v, g, beta, state)
        torch.testing.assert_close(o[0, i * steps : (i + 1) * steps], want_o, **FP32)
        for t in range(steps):
            _, want_s = _hf(
                M.torch_recurrent_gated_delta_rule, *(x[: t + 1] for x in (q, k, v, g, beta)), state
            )
            torch.testing.assert_close(step_states[row, t], want_s, **FP32)


@pytest.mark.parametrize("width,steps", [(4, 1), (4, 3), (2, 2)])
def test_conv1d_update_steps_equal_the_full_conv(width, steps):
    """Decoding a sequence `steps` tokens at a time with conv1d_update equals the
    conv over the whole sequence (HF's causal_conv1d_fn), and one update equals HF's
    causal_conv1d_update; verify windows hold the last inputs after each token."""
    dim, n = 24, 12
    x = torch.randn(2, dim, n)
    w, bias = torch.randn(dim, width), torch.randn(dim)
    want = M.causal_conv1d_fn(x, w, bias, activation="silu")
    conv = torch.full((5, dim, width - 1), float("nan"))
    conv[[4, 1]] = 0.0
    slots, got = torch.tensor([4, 1]), []
    for lo in range(0, n, steps):
        got.append(gdn.conv1d_update_torch(x[:, :, lo : lo + steps], conv, w, bias, "silu", slots))
    torch.testing.assert_close(torch.cat(got, -1), want, **FP32)
    assert conv[[0, 2, 3]].isnan().all()

    state = torch.randn(2, dim, width - 1)
    hf_state = state.clone()
    hf = M.causal_conv1d_update(x[:, :, :1].clone(), hf_state, w, bias, activation="silu")
    pool = state.clone()
    out = gdn.conv1d_update_torch(x[:, :, 0], pool, w, bias, "silu", torch.tensor([0, 1]))
    torch.testing.assert_close(out, hf[:, :, 0], **FP32)
    torch.testing.assert_close(pool, hf_state)

    windows = torch.full((3, steps, dim, width - 1), float("nan"))
    pool = state.clone()
    gdn.conv1d_update_torch(
        x[:, :, :steps],
        pool,
        w,
        bias,
        "silu",
        torch.tensor([0, 1]),
        step_windows=windows,
        step_window_indices=torch.tensor([2, 0]),
    )
    for i, row in enumerate((2, 0)):
        full = torch.cat([state[i], x[i, :, :steps]], -1)
        for t in range(steps):
            torch.testing.assert_close(windows[row, t], full[:, t + 1 : t + width])
    assert windows[1].isnan().all()


def test_gates_norm_and_split_match_hf():
    _, _, _, g, beta, _, (a_log, a, b, dt_bias) = _inputs(9, 2, seed=7)
    g_op, beta_op = gdn.gating_torch(a_log, a, b, dt_bias)
    # HF's layer: g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b)
    torch.testing.assert_close(g_op[0], -a_log.exp() * F.softplus(a + dt_bias), **FP32)
    torch.testing.assert_close(beta_op[0], b.sigmoid(), **FP32)

    norm = M.Qwen3NextRMSNormGated(V, eps=1e-6)
    torch.nn.init.normal_(norm.weight, 1.0, 0.1)
    x, z = torch.randn(11, V), torch.randn(11, V)
    got = gdn.gated_rmsnorm_torch(x, z, norm.weight, 1e-6, "silu")
    torch.testing.assert_close(got, norm(x, z), **FP32)

    from transformers import Qwen3NextConfig

    for ratio in (1, 2, 4):
        config = Qwen3NextConfig(
            hidden_size=64,
            linear_num_key_heads=H,
            linear_num_value_heads=H * ratio,
            linear_key_head_dim=K,
            linear_value_head_dim=V,
            num_hidden_layers=1,
        )
        layer = M.Qwen3NextGatedDeltaNet(config, 0)
        qkvz = torch.randn(5, 2 * H * K + 2 * H * ratio * V)
        ba = torch.randn(5, 2 * H * ratio)
        q, k, v, z, b2, a2 = layer.fix_query_key_value_ordering(qkvz[None], ba[None])
        mixed, z_op, b_op, a_op = gdn.split_qkvzba_torch(qkvz, ba, H, H * ratio, K, V)
        want = torch.cat([x[0].reshape(5, -1) for x in (q, k, v)], -1)
        assert torch.equal(mixed, want) and torch.equal(z_op, z[0])
        assert torch.equal(b_op, b2[0]) and torch.equal(a_op, a2[0])


def test_copy_slots_one_layer_and_all_layers():
    conv, ssm = torch.randn(6, 3, 2), torch.randn(6, 4, 5, 5)
    want_c, want_s = conv.clone(), ssm.clone()
    src, dst = torch.tensor([1, 2, 3, 0]), torch.tensor([4, 5, -1, 0])
    mask = torch.tensor([True, False, True, True])
    gdn.copy_state_slots_torch((conv, ssm), src, dst, mask, skip_freed=True)
    want_c[4], want_s[4] = want_c[1], want_s[1]
    assert torch.equal(conv, want_c) and torch.equal(ssm, want_s)
    pools = torch.randn(2, 6, 3, 2)
    want = pools.clone()
    gdn.copy_state_slots_torch((pools,), src[:1], dst[:1], mask[:1], slot_dim=1)
    want[:, 4] = want[:, 1]
    assert torch.equal(pools, want)


def test_commit_keeps_each_requests_accepted_step():
    """Pools [layers, slots, ...] take step_states[:, row, step] for steps >= 0; the step
    states may be SGLang's overlapping conv-window view (step t = columns t..t+W-2)."""
    layers, rows, steps, dim, w1 = 2, 3, 4, 5, 3
    pool = torch.full((layers, 6, 4, 2), float("nan"))
    step_states = torch.randn(layers, rows, steps, 4, 2)
    shared = torch.randn(layers, rows, dim, steps + w1 - 1)
    s0, s1, s2, s3 = shared.stride()
    windows = shared.as_strided((layers, rows, steps, dim, w1), (s0, s1, s3, s2, s3))
    conv = torch.full((layers, 6, dim, w1), float("nan"))
    dst, chosen = torch.tensor([4, 1, 0]), torch.tensor([2, -1, 0])
    gdn.commit_steps_torch(
        ((pool, step_states), (conv, windows)), dst, chosen, torch.tensor([1, 0, 2])
    )
    torch.testing.assert_close(pool[:, 4], step_states[:, 1, 2])
    torch.testing.assert_close(pool[:, 0], step_states[:, 2, 0])
    torch.testing.assert_close(conv[:, 4], shared[:, 1, :, 2 : 2 + w1])
    torch.testing.assert_close(conv[:, 0], shared[:, 2, :, 0:w1])
    assert pool[:, [1, 2, 3, 5]].isnan().all() and conv[:, [1, 2, 3, 5]].isnan().all()


def test_ops_run_on_the_torch_tier_and_a_forced_triton_tier_is_refused(monkeypatch):
    from sglang_amd.flags import TierUnavailableError
    from sglang_amd.linear_attention.capability import GDN_OPS
    from sglang_amd.tiers import OPS, Tier, select

    assert sorted(GDN_OPS) == sorted(n for n in OPS if n.startswith("linear_attention."))
    for name in GDN_OPS:
        assert OPS[name].implemented == (Tier.TORCH,)
        assert select(name, "cpu").tier is Tier.TORCH
    monkeypatch.setenv("SGLANG_AMD_LINEAR_ATTENTION_TIER", "triton")
    with pytest.raises(TierUnavailableError, match="SGLANG_AMD_LINEAR_ATTENTION_TIER=triton"):
        select("linear_attention.gdn_chunked", "cpu")


# --- SGLang's Triton kernels (interpreted) and our adapter on the same call -------------


def _sglang_original(module: str, name: str):
    """SGLang's function itself, even where this process has our hooks applied."""
    import importlib

    return inspect.unwrap(getattr(importlib.import_module(module), name))


_SGLANG_KERNEL_MODULES = (
    "sglang.kernels.ops.attention.linear.fused_gdn_gating",
    "sglang.kernels.ops.attention.linear.fused_sigmoid_gating_recurrent",
    "sglang.kernels.ops.attention.triton_gdn_fused_proj",
    "sglang.kernels.ops.mamba.causal_conv1d_triton",
)


@pytest.fixture
def sglang_kernels_interpreted(monkeypatch):
    """SGLang's Triton kernels in these modules as the interpreter runs them. A kernel
    is compiled or interpreted as decided when its module was first imported; in a full
    run an engine's start may import these modules while TRITON_INTERPRET is held back
    from its processes (tests/e2e_engines.py), which leaves compiled kernels behind that
    a machine without a GPU driver cannot launch. Each compiled kernel of SGLang's
    loaded modules (the ones these call too) is swapped for the interpreted form of
    the same function for this test only."""
    import importlib
    import sys

    from triton.runtime.autotuner import Autotuner, Heuristics
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    for name in _SGLANG_KERNEL_MODULES:
        importlib.import_module(name)
    loaded = [m for n, m in list(sys.modules.items()) if n.startswith("sglang.") and m]
    for module in loaded:
        for attr, value in list(vars(module).items()):
            parent, field = module, attr
            # autotune / heuristics wrap the kernel; only those (a module's lazy
            # proxies answer every attribute, so `hasattr(x, "fn")` would never end)
            while isinstance(value, (Autotuner, Heuristics)):
                parent, field, value = value, "fn", value.fn
            if isinstance(value, JITFunction) and not isinstance(value, InterpretedFunction):
                monkeypatch.setattr(parent, field, InterpretedFunction(value.fn))


@pytest.mark.sglang
@pytest.mark.cpu_interpreter
def test_sglang_triton_kernels_and_our_adapter_agree(sglang_kernels_interpreted):
    from sglang_amd.linear_attention import sglang_gdn

    ratio, b = 2, 3
    hv, dim, width = H * ratio, 2 * H * K + H * ratio * V, 4
    q, k = torch.randn(1, b, H, K), torch.randn(1, b, H, K)
    v = torch.randn(1, b, hv, V)
    a, bb = torch.randn(b, hv), torch.randn(b, hv)
    a_log, dt_bias = torch.rand(hv).log(), torch.randn(hv)
    gating = _sglang_original(
        "sglang.kernels.ops.attention.linear.fused_gdn_gating", "fused_gdn_gating"
    )
    for x, y in zip(
        gating(a_log, a, bb, dt_bias),
        sglang_gdn.fused_gdn_gating(a_log, a, bb, dt_bias),
        strict=True,
    ):
        torch.testing.assert_close(x, y, **FP32)

    fused_update = _sglang_original(
        "sglang.kernels.ops.attention.linear.fused_sigmoid_gating_recurrent",
        "fused_sigmoid_gating_delta_rule_update",
    )

    def decode(q, k, v, a, b, pool, slots, qsl, **extra):  # SGLang's, as its GDN backend calls it
        return fused_update(A_log=a_log, dt_bias=dt_bias, q=q, k=k, v=v, a=a, b=b,
                            initial_state_source=pool, initial_state_indices=slots,
                            cu_seqlens=qsl, use_qk_l2norm_in_kernel=True, softplus_beta=1.0,
                            softplus_threshold=20.0, **extra)  # fmt: skip

    pool = torch.randn(5, hv, V, K) * 0.1
    slots, qsl = torch.tensor([3, 1, 4], dtype=torch.int32), torch.arange(b + 1, dtype=torch.int32)
    ours_pool = pool.clone()
    want = decode(q, k, v, a, bb, pool, slots, qsl)
    got = sglang_gdn.TorchGDNKernel().decode(
        q,
        k,
        v,
        a,
        bb,
        A_log=a_log,
        dt_bias=dt_bias,
        ssm_states=ours_pool,
        cache_indices=slots,
        query_start_loc=qsl,
    )
    torch.testing.assert_close(got.reshape(want.shape), want, **FP32)
    torch.testing.assert_close(ours_pool, pool, **FP32)

    conv_mod = "sglang.kernels.ops.mamba.causal_conv1d_triton"
    x, w = torch.randn(dim, 20), torch.randn(dim, width)
    states = torch.randn(5, dim, width - 1)
    theirs, ours = states.clone(), states.clone()
    call = dict(
        query_start_loc=torch.tensor([0, 12, 20], dtype=torch.int32),
        seq_lens_cpu=[12, 8],
        cache_indices=torch.tensor([2, 0], dtype=torch.int32),
        has_initial_state=torch.tensor([True, False]),
        activation="silu",
    )
    want = _sglang_original(conv_mod, "causal_conv1d_fn")(x, w, None, conv_states=theirs, **call)
    got = sglang_gdn.causal_conv1d_fn(x, w, None, conv_states=ours, **call)
    torch.testing.assert_close(got, want, **FP32)
    torch.testing.assert_close(ours, theirs)

    xu, theirs, ours = torch.randn(b, dim), states.clone(), states.clone()
    want = _sglang_original(conv_mod, "causal_conv1d_update")(
        xu, theirs, w, None, "silu", conv_state_indices=slots
    )
    got = sglang_gdn.causal_conv1d_update(xu, ours, w, None, "silu", conv_state_indices=slots)
    torch.testing.assert_close(got, want, **FP32)
    torch.testing.assert_close(ours, theirs)

    # the fused split kernel needs power-of-two group widths
    qkvz, ba = torch.randn(5, H * (2 * K + 2 * ratio * 32)), torch.randn(5, 2 * hv)
    split = _sglang_original(
        "sglang.kernels.ops.attention.triton_gdn_fused_proj", "fused_qkvzba_split_reshape_cat"
    )
    for x, y in zip(
        split(qkvz, ba, H, hv, K, 32),
        sglang_gdn.fused_qkvzba_split_reshape_cat(qkvz, ba, H, hv, K, 32),
        strict=True,
    ):
        assert torch.equal(x, y)

    # speculative verify: 3 drafts each, the slot kept, every step's state and window
    steps, ii = 3, torch.tensor([2, 0], dtype=torch.int32)
    q, k = torch.randn(1, 2 * steps, H, K), torch.randn(1, 2 * steps, H, K)
    v, a, bb = (
        torch.randn(1, 2 * steps, hv, V),
        torch.randn(2 * steps, hv),
        torch.randn(2 * steps, hv),
    )
    qsl = torch.arange(0, 2 * steps + 1, steps, dtype=torch.int32)
    theirs_pool, ours_pool = pool.clone(), pool.clone()
    theirs_steps = torch.full((4, steps, hv, V, K), float("nan"))
    ours_steps = theirs_steps.clone()
    want = decode(
        q,
        k,
        v,
        a,
        bb,
        theirs_pool,
        slots[:2],
        qsl,
        is_kda=False,
        disable_state_update=True,
        intermediate_states_buffer=theirs_steps,
        intermediate_state_indices=ii,
        cache_steps=steps,
        retrieve_parent_token=None,
    )
    got = sglang_gdn.TorchGDNKernel().target_verify(
        a_log,
        dt_bias,
        q,
        k,
        v,
        a,
        bb,
        ssm_states=ours_pool,
        cache_indices=slots[:2],
        query_start_loc=qsl,
        intermediate_states_buffer=ours_steps,
        intermediate_state_indices=ii,
        cache_steps=steps,
        retrieve_parent_token=None,
    )
    torch.testing.assert_close(got.reshape(want.shape), want, **FP32)
    torch.testing.assert_close(ours_pool, theirs_pool)
    torch.testing.assert_close(ours_steps, theirs_steps, equal_nan=True, **FP32)

    def windows(base):  # SGLang's deduplicated, overlapping per-step conv windows
        s0, s1, s2 = base.stride()
        return base.as_strided((4, steps, dim, width - 1), (s0, s2, s1, s2))

    x3 = torch.randn(2, dim, steps)
    base_theirs = torch.full((4, dim, steps + width - 2), float("nan"))
    base_ours, theirs, ours = base_theirs.clone(), states.clone(), states.clone()
    want = _sglang_original(conv_mod, "causal_conv1d_update")(
        x3,
        theirs,
        w,
        None,
        "silu",
        conv_state_indices=slots[:2],
        intermediate_conv_window=windows(base_theirs),
        intermediate_state_indices=ii,
    )
    got = sglang_gdn.causal_conv1d_update(
        x3,
        ours,
        w,
        None,
        "silu",
        conv_state_indices=slots[:2],
        intermediate_conv_window=windows(base_ours),
        intermediate_state_indices=ii,
    )
    torch.testing.assert_close(got, want, **FP32)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(base_ours, base_theirs, equal_nan=True)
