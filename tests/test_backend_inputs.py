"""What `AmdAttnBackend` does with inputs beyond plain causal attention.

Bidirectional decoder layers (EmbeddingGemma, HRM) attend both ways in extend;
math our kernels do not compute (a score_mod, Grok's query temperature,
non-tanh capping, a returned LSE) is an error naming the flag, never a silently
different result; the verify width and the page size come from the runner's
resolved values, not from the flags as typed; the scheduler is told our kernels
read req_to_token inside a replay; head dims the Triton kernels cannot take turn
decode graphs off at start.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sglang_amd.attention.support import cuda_graph_refusals
from sglang_amd.flags import UnsupportedConfigError

from .test_cuda_graph_hooks import _Pool

pytestmark = [pytest.mark.sglang]

CAPACITY, HEADS, DIM = 64, (4, 2), 32


def _runner(**kw):
    base = dict(
        device=torch.device("cpu"),
        req_to_token_pool=SimpleNamespace(req_to_token=torch.zeros(4, CAPACITY, dtype=torch.int32)),
        token_to_kv_pool=_Pool(HEADS[1], DIM),
        server_args=SimpleNamespace(attention_backend="amd", kv_cache_dtype="auto", device="cpu"),
        model_config=None,
        use_mla_backend=False,
    )
    return SimpleNamespace(**{**base, **kw})


def _backend(**kw):
    from sglang_amd.attention.sglang_backend import AmdAttnBackend

    return AmdAttnBackend(_runner(**kw))


def _layer(**kw):
    from sglang.srt.layers.radix_attention import RadixAttention

    layer = RadixAttention(HEADS[0], DIM, DIM**-0.5, HEADS[1], layer_id=0)
    for name, value in kw.items():
        setattr(layer, name, value)
    return layer


def _extend_batch(backend, lens):
    """Fresh prefills of `lens` tokens, slots laid out one sequence after another."""
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    r2t, start = backend.req_to_token_pool.req_to_token, 0
    for b, n in enumerate(lens):
        r2t[b, :n] = torch.arange(start, start + n)
        start += n
    seq = torch.tensor(lens)
    return SimpleNamespace(
        forward_mode=ForwardMode.EXTEND,
        req_pool_indices=torch.arange(len(lens)),
        seq_lens=seq,
        seq_lens_cpu=seq,
        extend_seq_lens=seq,
        extend_seq_lens_cpu=list(lens),
        out_cache_loc=torch.arange(start),
    )


def _sdpa(q, k, v, lens, causal):
    """Independent oracle: torch SDPA per sequence, KV heads repeated for GQA."""
    outs, start = [], 0
    for n in lens:
        qs, ks, vs = (t[start : start + n].transpose(0, 1) for t in (q, k, v))
        ks, vs = (t.repeat_interleave(HEADS[0] // HEADS[1], dim=0) for t in (ks, vs))
        o = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)
        outs.append(o.transpose(0, 1))
        start += n
    return torch.cat(outs).reshape(-1, HEADS[0] * DIM)


def test_bidirectional_decoder_layers_attend_both_ways():
    from sglang.srt.layers.radix_attention import AttentionType

    torch.manual_seed(0)
    lens = [5, 9, 1]
    backend = _backend()
    batch = _extend_batch(backend, lens)
    t = sum(lens)
    q, k, v = (
        torch.randn(t, HEADS[0], DIM),
        torch.randn(t, HEADS[1], DIM),
        torch.randn(t, HEADS[1], DIM),
    )
    results = {}
    for attn_type in (AttentionType.DECODER, AttentionType.DECODER_BIDIRECTIONAL):
        backend.init_forward_metadata(batch)
        out = backend.forward_extend(q.reshape(t, -1), k, v, _layer(attn_type=attn_type), batch)
        results[attn_type] = out
    tol = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[AttentionType.DECODER], _sdpa(q, k, v, lens, True), **tol)
    torch.testing.assert_close(
        results[AttentionType.DECODER_BIDIRECTIONAL], _sdpa(q, k, v, lens, False), **tol
    )


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"sinks": torch.zeros(HEADS[1])}, "sinks of shape"),
        ({"score_mod": lambda s, *a: s}, "score_mod"),
        ({"return_lse": True}, "log-sum-exp"),
    ],
)
def test_call_inputs_we_do_not_compute_are_errors(kw, needle):
    backend = _backend()
    batch = _extend_batch(backend, [3])
    backend.init_forward_metadata(batch)
    q, k = torch.randn(3, HEADS[0] * DIM), torch.randn(3, HEADS[1], DIM)
    with pytest.raises(NotImplementedError, match=f"{needle}.*--attention-backend"):
        backend.forward_extend(q, k, k.clone(), _layer(), batch, **kw)
    # The same call without them (a model passing sinks=None) is served.
    backend.forward_extend(q, k, k.clone(), _layer(), batch, sinks=None, return_lse=False)


def test_sinks_are_served_in_extend_and_decode():
    """gpt-oss passes its per-head sink logits (bf16) with every call: they reach
    the kernels (the output is the sink-aware reference, not the plain one)."""
    from sglang_amd.attention.reference import paged_attention_reference

    backend = _backend()
    lens = [5, 3]
    batch = _extend_batch(backend, lens)
    backend.init_forward_metadata(batch)
    t = sum(lens)
    q, k, v = (
        torch.randn(t, HEADS[0], DIM),
        torch.randn(t, HEADS[1], DIM),
        torch.randn(t, HEADS[1], DIM),
    )
    sinks = (torch.randn(HEADS[0]) * 3).to(torch.bfloat16)
    out = backend.forward_extend(q.reshape(t, -1), k, v, _layer(), batch, sinks=sinks)
    meta = backend.forward_metadata
    pool = backend.token_to_kv_pool
    args = (
        q, pool.get_key_buffer(0), pool.get_value_buffer(0), backend.req_to_token_pool.req_to_token,
        meta.rows_cpu(), meta.kv_lens_cpu, meta.qo_lens_cpu,
    )  # fmt: skip
    want = paged_attention_reference(*args, scale=_layer().scaling, sinks=sinks)
    torch.testing.assert_close(out.view(t, HEADS[0], DIM), want, atol=1e-5, rtol=1e-5)
    plain = paged_attention_reference(*args, scale=_layer().scaling)
    assert (out.view(t, HEADS[0], DIM) - plain).abs().max() > 1e-3


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"xai_temperature_len": 1024}, "xai_temperature_len"),
        ({"logit_cap": 30.0, "logit_capping_method": "soft"}, "capping method 'soft'"),
    ],
)
def test_layers_we_do_not_compute_are_refused_when_the_backend_is_built(kw, needle):
    model = torch.nn.ModuleList([_layer(), _layer(**kw)])
    with pytest.raises(UnsupportedConfigError, match=f"{needle}.*--attention-backend"):
        _backend(model=model)
    _backend(model=torch.nn.ModuleList([_layer(), _layer(logit_cap=30.0)]))  # tanh: served


def test_scheduler_waits_for_the_replay_before_reusing_rows():
    from sglang.srt.layers.attention.base_attn_backend import SharedReadEnds
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    backend = _backend()
    for mode in (ForwardMode.DECODE, ForwardMode.TARGET_VERIFY):
        assert backend.shared_read_ends(mode) is SharedReadEnds.POST_REPLAY
    assert backend.shared_read_ends(ForwardMode.EXTEND) is SharedReadEnds.UNKNOWN


@pytest.mark.cpu_interpreter  # graph state needs the Triton tier: the interpreter on CPU
def test_verify_width_is_the_runners_not_the_flag():
    """SGLang resolves --speculative-num-draft-tokens when it is left unset (and adaptive
    speculation rebuilds backends under an override): the typed flag is None here."""
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    args = SimpleNamespace(
        attention_backend="amd",
        kv_cache_dtype="auto",
        device="cpu",
        speculative_algorithm="EAGLE",
        speculative_num_draft_tokens=None,
    )
    spec = dict(
        server_args=args,
        spec_algorithm=SpeculativeAlgorithm.EAGLE,
        decode_num_tokens_per_req=lambda: 4,
    )
    backend = _backend(**spec, is_draft_worker=False)
    assert backend._num_draft_tokens == 4
    backend.init_cuda_graph_state(2, 8)
    assert backend.verify_mask is not None and backend.verify_mask.buffer.numel() == 2 * 4 * 4
    assert _backend(**spec, is_draft_worker=True)._num_draft_tokens is None
    assert _backend()._num_draft_tokens is None


def test_draft_steps_page_by_the_runners_page_size():
    from sglang_amd.attention.sglang_draft_backend import AmdDraftStepBackend

    runner = _runner(page_size=16)
    runner.server_args.page_size = None  # as typed: SGLang resolved it on the runner
    assert AmdDraftStepBackend(runner, step=0, topk=1, num_steps=2).page_size == 16


def _graphs():
    return SimpleNamespace(
        decode=SimpleNamespace(backend="full"), prefill=SimpleNamespace(backend="disabled")
    )


def test_head_dims_the_kernels_cannot_take_turn_decode_graphs_off():
    args = SimpleNamespace(attention_backend="amd", device="cuda", speculative_algorithm=None)
    phi3 = SimpleNamespace(head_dim=96, v_head_dim=96)
    (why,) = cuda_graph_refusals(args, _graphs(), "triton", model_config=phi3).values()
    assert "v head_dim 96" in why and "torch tier" in why
    llama = SimpleNamespace(head_dim=128, v_head_dim=128)
    mla = SimpleNamespace(head_dim=256, kv_lora_rank=512, qk_rope_head_dim=64)
    for config in (llama, mla, None):
        assert cuda_graph_refusals(args, _graphs(), "triton", model_config=config) == {}


@pytest.mark.cpu_interpreter  # graph state needs the Triton tier: the interpreter on CPU
def test_decode_replay_prep_reads_nothing_back(monkeypatch):
    """Before each decode replay SGLang refills its static buffers and calls the
    out-of-graph prep; the captured kernels need nothing more, so the prep must not
    read lengths back (SGLang may have no host mirror of seq_lens then: a sync)."""
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    backend = _backend()
    backend.init_cuda_graph_state(2, 2)
    static = SimpleNamespace(
        forward_mode=ForwardMode.DECODE,
        req_pool_indices=torch.zeros(2, dtype=torch.int64),
        seq_lens=torch.ones(2, dtype=torch.int64),
        seq_lens_cpu=torch.ones(2, dtype=torch.int64),
        out_cache_loc=torch.zeros(2, dtype=torch.int64),
    )
    backend.init_forward_metadata_out_graph(static, in_capture=True)
    static.seq_lens_cpu = None

    def host_read(*args, **kwargs):
        raise AssertionError("decode replay prep read a device tensor back")

    for name in ("cpu", "tolist", "item"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    backend.init_forward_metadata_out_graph(static)
