"""`--attention-backend amd` under SGLang's decode CUDA graphs, checked on any machine.

A CUDA graph replays the kernels recorded at capture with the pointers and host
scalars of that moment. The test plays SGLang's decode graph runner against our
backend with that rule made explicit: capture-time metadata (built from the
runner's static buffers holding placeholder lengths), then for each step new
lengths, slots and K/V land in the same buffers and the forward runs again with
the capture-time metadata, so any length read on the host at capture would
freeze into a wrong answer. The result must equal the torch reference of the
real batch. The compiled replay itself is `test_gpu_decode_replays_in_a_cuda_graph`
in test_attention_triton.py (GPU only); which phases may use graphs is decided
at start by `cuda_graph_refusals`.

The plays build the backend on a CPU "device" and need its Triton tier there,
i.e. Triton's interpreter: they are marked `cpu_interpreter` and skip on a GPU
machine (conftest leaves TRITON_INTERPRET unset there), where the compiled
replays above run instead.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang_amd.attention.support import cuda_graph_refusals
from sglang_amd.testing import make_paged_batch, tolerance
from sglang_amd.testing import reference_attention as reference

CAPACITY = 512
MAX_BS = 4
SLOTS = MAX_BS * CAPACITY + 64


class _Pool:
    """The two calls the backend makes on SGLang's MHA token pool."""

    def __init__(self, heads: int, dim: int):
        self.k = torch.zeros(SLOTS, heads, dim)
        self.v = torch.zeros(SLOTS, heads, dim)

    def get_key_buffer(self, layer_id):
        return self.k

    def get_value_buffer(self, layer_id):
        return self.v

    def set_kv_buffer(self, layer, loc, k, v):
        self.k[loc.loc] = k.view(-1, *self.k.shape[1:])
        self.v[loc.loc] = v.view(-1, *self.v.shape[1:])


def _backend(heads: tuple[int, int], dim: int):
    from sglang_amd.attention.sglang_backend import AmdAttnBackend

    runner = SimpleNamespace(
        device=torch.device("cpu"),
        req_to_token_pool=SimpleNamespace(
            req_to_token=torch.zeros(MAX_BS + 3, CAPACITY, dtype=torch.int32)
        ),
        token_to_kv_pool=_Pool(heads[1], dim),
        server_args=SimpleNamespace(attention_backend="amd", kv_cache_dtype="auto", device="cpu"),
        model_config=None,
        use_mla_backend=False,
    )
    return AmdAttnBackend(runner)


def _layer(heads, dim, **kw):
    from sglang.srt.layers.radix_attention import AttentionType

    base = dict(
        layer_id=0,
        tp_q_head_num=heads[0],
        qk_head_dim=dim,
        v_head_dim=dim,
        scaling=dim**-0.5,
        logit_cap=0.0,
        sliding_window_size=None,
        is_cross_attention=False,
        attn_type=AttentionType.DECODER,
        k_scale_float=None,
        v_scale_float=None,
    )
    return SimpleNamespace(**{**base, **kw})


def _static_batch():
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    return SimpleNamespace(
        forward_mode=ForwardMode.DECODE,
        req_pool_indices=torch.zeros(MAX_BS, dtype=torch.int64),
        seq_lens=torch.ones(MAX_BS, dtype=torch.int64),  # the fill value
        seq_lens_cpu=None,
        out_cache_loc=torch.zeros(MAX_BS, dtype=torch.int64),
    )


@pytest.mark.sglang
@pytest.mark.cpu_interpreter
@pytest.mark.parametrize("heads,dim", [((8, 2), 64), ((4, 4), 32)])
def test_capture_time_metadata_serves_every_replay(heads, dim):
    backend = _backend(heads, dim)
    assert backend.ops["decode"].tier.value == "triton"
    layer = _layer(heads, dim)
    pool, r2t = backend.token_to_kv_pool, backend.req_to_token_pool.req_to_token
    static = _static_batch()
    backend.init_cuda_graph_state(MAX_BS, MAX_BS)
    assert backend.get_cuda_graph_seq_len_fill_value() == 1
    backend.init_forward_metadata_out_graph(static, in_capture=True)
    captured = backend.forward_metadata
    assert captured.graph_max_kv_len == CAPACITY
    backend.init_forward_metadata_in_graph(static)
    q_static = torch.zeros(MAX_BS, heads[0] * dim)
    k_new, v_new = torch.zeros(MAX_BS, heads[1] * dim), torch.zeros(MAX_BS, heads[1] * dim)
    backend.forward_decode(q_static, k_new, v_new, layer, static)  # the captured forward

    gen = torch.Generator().manual_seed(3)
    for kv in ([300, 1, 77], [CAPACITY - 1, 2, 129, 40], [1], [256, 257]):
        raw_bs = len(kv)
        b = make_paged_batch([(n - 1, 1) for n in kv], *heads, dim, generator=gen)
        # What the scheduler has done before the step: the pool holds the prefix,
        # req_to_token maps every token, out_cache_loc names the new tokens' slots.
        pool.k.zero_(), pool.v.zero_(), r2t.zero_()
        pool.k[: b.k_cache.shape[0]] = b.k_cache
        pool.v[: b.v_cache.shape[0]] = b.v_cache
        r2t[: b.req_to_token.shape[0], : b.req_to_token.shape[1]] = b.req_to_token
        new_slots = b.req_to_token[b.req_pool_indices, b.kv_lens - 1].long()
        # The runner's replay prep: padded rows read row 0 with the fill length and
        # write to the pool's reserved padding slot (0 in SGLang; the last one here).
        static.req_pool_indices.zero_()[:raw_bs] = b.req_pool_indices
        static.seq_lens.fill_(1)[:raw_bs] = b.kv_lens
        static.out_cache_loc.fill_(SLOTS - 1)[:raw_bs] = new_slots
        static.seq_lens_cpu = static.seq_lens.clone()
        backend.init_forward_metadata_out_graph(static)
        q_static.zero_()[:raw_bs] = b.q.reshape(raw_bs, -1)
        k_new.zero_()[:raw_bs] = b.k_cache[new_slots].reshape(raw_bs, -1)
        v_new.zero_()[:raw_bs] = b.v_cache[new_slots].reshape(raw_bs, -1)
        pool.k[new_slots] = 0.0  # must come back through the captured KV write
        pool.v[new_slots] = 0.0

        backend.forward_metadata = captured  # replay: capture-time host values
        out = backend.forward_decode(q_static, k_new, v_new, layer, static)

        want = reference(b, dim**-0.5).reshape(raw_bs, -1)
        torch.testing.assert_close(out[:raw_bs], want, **tolerance(torch.float32))


@pytest.mark.sglang
def test_graphs_refuse_the_torch_tier(monkeypatch):
    # No interpreter needed: the torch tier serves a CPU device on any machine.
    monkeypatch.setenv("SGLANG_AMD_ATTENTION_DECODE_TIER", "torch")
    with pytest.raises(RuntimeError, match="--disable-cuda-graph"):
        _backend((4, 4), 32).init_cuda_graph_state(MAX_BS, MAX_BS)


@pytest.mark.sglang
@pytest.mark.cpu_interpreter
def test_graphs_refuse_what_would_freeze():
    backend = _backend((4, 4), 32)
    backend.init_cuda_graph_state(MAX_BS, MAX_BS)
    static = _static_batch()
    backend.init_forward_metadata_out_graph(static, in_capture=True)
    scaled = _layer((4, 4), 32, k_scale_float=2.0)  # Triton refuses: would fall back
    with pytest.raises(RuntimeError, match="--disable-cuda-graph"):
        backend.forward_decode(torch.zeros(MAX_BS, 128), None, None, scaled, static)
    static.forward_mode = static.forward_mode.TARGET_VERIFY  # no verify buffers: no draft width
    with pytest.raises(RuntimeError, match="did not allocate verify buffers.*--disable-cuda-graph"):
        backend.init_forward_metadata_out_graph(static, in_capture=True)


def _graphs(decode="full", prefill="disabled"):
    return SimpleNamespace(
        decode=SimpleNamespace(backend=decode), prefill=SimpleNamespace(backend=prefill)
    )


def _args(**kw):
    base = dict(attention_backend="amd", device="cuda", speculative_algorithm=None)
    return SimpleNamespace(**{**base, **kw})


def test_which_graph_phases_we_capture():
    assert cuda_graph_refusals(_args(), _graphs(), "triton") == {}
    assert (
        cuda_graph_refusals(_args(attention_backend="triton"), _graphs("full", "full"), "torch")
        == {}
    )
    torch_tier = cuda_graph_refusals(_args(), _graphs(), "torch")
    assert "SGLANG_AMD_ATTENTION_DECODE_TIER" in torch_tier["decode"]
    # Speculative phases (verify, draft decode): test_spec_cuda_graph_hooks.py.
    assert cuda_graph_refusals(_args(speculative_algorithm="EAGLE"), _graphs(), "triton") == {}
    assert set(cuda_graph_refusals(_args(), _graphs("breakable", "full"), "triton")) == {
        "decode",
        "prefill",
    }
    assert "decode" in cuda_graph_refusals(_args(device="cpu"), _graphs(), "triton")
    # Decode on another backend, prefill on ours: only the prefill phase concerns us.
    mixed = _args(
        attention_backend=None, decode_attention_backend="triton", prefill_attention_backend="amd"
    )
    assert set(cuda_graph_refusals(mixed, _graphs("full", "full"), "torch")) == {"prefill"}


@pytest.mark.sglang
@pytest.mark.parametrize(
    "flags,env,decode",
    [
        (dict(attention_backend="amd"), {}, "full"),
        (
            dict(
                attention_backend="amd",
                speculative_algorithm="NEXTN",
                speculative_num_steps=2,
                speculative_eagle_topk=1,
                speculative_num_draft_tokens=3,
            ),
            {},
            "full",
        ),
        (dict(attention_backend="amd"), {"SGLANG_AMD_ATTENTION_DECODE_TIER": "torch"}, "disabled"),
        (dict(attention_backend="triton", moe_runner_backend="amd"), {}, "full"),
        (
            dict(attention_backend="triton", moe_runner_backend="amd"),
            {"SGLANG_AMD_MOE_FUSED_TIER": "torch"},
            "disabled",
        ),
    ],
)
def test_graph_phases_after_resolution(smollm2_path, monkeypatch, flags, env, decode):
    """SGLang's own ServerArgs resolution for a GPU server, with our hook in it."""
    from sglang.srt.arg_groups.overrides import resolved_view
    from sglang.srt.server_args import ServerArgs

    from sglang_amd import plugin

    plugin.register()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = ServerArgs(model_path=smollm2_path, device="cuda", **flags)
    args.resolve_once()
    assert resolved_view(args).cuda_graph_config.decode.backend == decode
