"""Speculative decoding under SGLang's CUDA graphs, checked on any machine.

The same rule as test_cuda_graph_hooks.py: a replay reuses the capture-time
metadata object, so only what the backend refills *in place* before the replay
may change between steps. Two runners are played against our backends:

- target verify (SGLang's decode graph runner in TARGET_VERIFY mode): the drafts'
  slots arrive in out_cache_loc, the committed prefix in req_to_token, and the
  tree in the QLEN_ONLY buffer the backend hands SGLang (`verify_mask`), which
  SGLang's draft stage fills in place;
- multi-step draft decode (EAGLEDraftCudaGraphRunner): each step's branches read
  the prefix plus their chain, laid out in req_to_token after the prefix.

Each replay must equal the torch reference of the real batch. Compiled replays
of the kernels themselves are the `test_gpu_*_replays_in_a_cuda_graph` tests in
test_attention_triton.py (GPU only). The plays run our Triton tier on CPU tensors
(`cpu_interpreter`: skipped on a GPU machine, where TRITON_INTERPRET is unset);
the start-time rules at the end run everywhere.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from sglang_amd.attention.reference import paged_attention_reference
from sglang_amd.attention.spec_layout import draft_decode_token_map, full_verify_mask
from sglang_amd.attention.support import cuda_graph_refusals, unsupported_reasons
from sglang_amd.testing import make_paged_batch, tolerance
from sglang_amd.tiers import Tier

from .test_cuda_graph_hooks import SLOTS, _layer, _Pool

pytestmark = pytest.mark.sglang

CAPACITY = 256
MAX_BS = 3
HEADS, DIM = (8, 2), 32


def _runner(*, draft_tokens=None, draft_worker=False, page_size=1):
    """A ModelRunner as our backends read it: the resolved draft width and page size
    on the runner; ServerArgs keeps only the flags as typed (unset here)."""
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    return SimpleNamespace(
        device=torch.device("cpu"),
        spec_algorithm=SpeculativeAlgorithm.EAGLE,
        decode_num_tokens_per_req=lambda: draft_tokens,
        page_size=page_size,
        req_to_token_pool=SimpleNamespace(
            req_to_token=torch.zeros(MAX_BS + 3, CAPACITY, dtype=torch.int32)
        ),
        token_to_kv_pool=_Pool(HEADS[1], DIM),
        server_args=SimpleNamespace(
            attention_backend="amd",
            kv_cache_dtype="auto",
            device="cpu",
            speculative_algorithm="EAGLE",
            speculative_num_draft_tokens=None,
            page_size=None,
        ),
        model_config=SimpleNamespace(context_len=CAPACITY),
        use_mla_backend=False,
        is_draft_worker=draft_worker,
    )


def _load(pool, r2t, batch):
    pool.k.zero_(), pool.v.zero_(), r2t.zero_()
    pool.k[: batch.k_cache.shape[0]] = batch.k_cache
    pool.v[: batch.v_cache.shape[0]] = batch.v_cache
    r2t[: batch.req_to_token.shape[0], : batch.req_to_token.shape[1]] = batch.req_to_token


def _static_buffers(mode, **extra) -> SimpleNamespace:
    """A graph runner's static batch at capture: padded rows, fill lengths."""
    return SimpleNamespace(
        forward_mode=mode,
        batch_size=MAX_BS,
        req_pool_indices=torch.zeros(MAX_BS, dtype=torch.int64),
        seq_lens=torch.ones(MAX_BS, dtype=torch.int64),
        seq_lens_cpu=torch.ones(MAX_BS, dtype=torch.int64),
        **extra,
    )


def _verify_reference(b, prefix: list[int], n: int, tree: torch.Tensor) -> torch.Tensor:
    """Torch reference of a verify batch (prefix_b + n tokens each) under `tree`."""
    return paged_attention_reference(
        b.q,
        b.k_cache,
        b.v_cache,
        b.req_to_token,
        b.req_pool_indices,
        b.kv_lens,
        b.qo_lens,
        scale=DIM**-0.5,
        custom_mask=full_verify_mask(tree.reshape(-1), prefix, n, draft_only=True),
    ).reshape(len(prefix) * n, -1)


@pytest.mark.cpu_interpreter
@pytest.mark.parametrize("n", [1, 4])
def test_verify_capture_time_metadata_serves_every_replay(n):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode
    from sglang.srt.speculative.eagle_utils import TreeMaskMode

    from sglang_amd.attention.sglang_backend import AmdAttnBackend

    backend = AmdAttnBackend(_runner(draft_tokens=n))
    assert backend.verify_mask is None  # eager servers keep SGLang's own mask
    backend.init_cuda_graph_state(MAX_BS, MAX_BS * n)
    vm = backend.verify_mask
    assert vm.mode == TreeMaskMode.QLEN_ONLY and vm.is_read and vm.fits(MAX_BS)
    assert vm.buffer.numel() == MAX_BS * n * n
    assert backend.max_context_len == CAPACITY
    layer = _layer(HEADS, DIM)
    pool, r2t = backend.token_to_kv_pool, backend.req_to_token_pool.req_to_token

    # The runner's static buffers at capture, holding its fill values.
    static = _static_buffers(
        ForwardMode.TARGET_VERIFY,
        out_cache_loc=torch.zeros(MAX_BS * n, dtype=torch.int64),
        spec_info=SimpleNamespace(
            custom_mask=torch.ones(MAX_BS * n * CAPACITY, dtype=torch.bool),  # placeholder
            draft_token_num=n,
            num_tokens_per_req=n,
        ),
    )
    backend.init_forward_metadata_out_graph(static, in_capture=True)
    captured = backend.forward_metadata
    backend.init_forward_metadata_in_graph(static)
    q_static = torch.zeros(MAX_BS * n, HEADS[0] * DIM)
    k_new = torch.zeros(MAX_BS * n, HEADS[1] * DIM)
    v_new = torch.zeros(MAX_BS * n, HEADS[1] * DIM)
    backend.forward_extend(q_static, k_new, v_new, layer, static)  # the captured forward

    gen = torch.Generator().manual_seed(n)
    for prefix in ([30, 1, 200], [CAPACITY - n - 1], [7, 64]):
        raw_bs = len(prefix)
        b = make_paged_batch([(p, n) for p in prefix], *HEADS, DIM, generator=gen)
        _load(pool, r2t, b)
        rows = b.req_pool_indices
        drafts = torch.cat([r2t[rows[i], p : p + n].long() for i, p in enumerate(prefix)])
        for i, p in enumerate(prefix):  # the drafts' slots come from out_cache_loc only
            r2t[rows[i], p : p + n] = 0
        tree = torch.tril(torch.rand(raw_bs, n, n, generator=gen) > 0.5)
        tree |= torch.eye(n, dtype=torch.bool)
        vm.buffer.zero_()[: tree.numel()] = tree.reshape(-1)  # the draft stage's write
        # The runner's replay prep: static buffers padded with fill values; the
        # view it hands the backend carries the raw (unpadded) out_cache_loc.
        static.req_pool_indices.zero_()[:raw_bs] = rows
        static.seq_lens.fill_(1)[:raw_bs] = torch.tensor(prefix)
        static.seq_lens_cpu = static.seq_lens.clone()
        static.out_cache_loc.fill_(SLOTS - 1)[: raw_bs * n] = drafts
        view = SimpleNamespace(
            **{
                **vars(static),
                "out_cache_loc": drafts,
                "spec_info": SimpleNamespace(
                    custom_mask=vm.buffer, draft_token_num=n, num_tokens_per_req=n
                ),
            }
        )
        backend.init_forward_metadata_out_graph(view)
        q_static.zero_()[: raw_bs * n] = b.q.reshape(raw_bs * n, -1)
        k_new.zero_()[: raw_bs * n] = b.k_cache[drafts].reshape(raw_bs * n, -1)
        v_new.zero_()[: raw_bs * n] = b.v_cache[drafts].reshape(raw_bs * n, -1)
        pool.k[drafts] = 0.0  # must come back through the captured KV write
        pool.v[drafts] = 0.0

        backend.forward_metadata = captured  # replay: capture-time host values
        out = backend.forward_extend(q_static, k_new, v_new, layer, static)

        want = _verify_reference(b, prefix, n, tree)
        torch.testing.assert_close(out[: raw_bs * n], want, **tolerance(torch.float32))

    # A mask SGLang allocated itself (batch past the graphs) cannot be replayed.
    view.spec_info = SimpleNamespace(custom_mask=vm.buffer.clone(), draft_token_num=n)
    with pytest.raises(RuntimeError, match="--disable-cuda-graph"):
        backend.init_forward_metadata_out_graph(view)


@pytest.mark.cpu_interpreter
def test_eager_verify_reads_the_owned_qlen_only_buffer():
    """A batch that misses the graphs but fits the buffer still gets the
    QLEN_ONLY mask from SGLang; the eager path must read it as such."""
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    from sglang_amd.attention.sglang_backend import AmdAttnBackend

    n = 3
    backend = AmdAttnBackend(_runner(draft_tokens=n))
    backend.init_cuda_graph_state(MAX_BS, MAX_BS * n)
    pool, r2t = backend.token_to_kv_pool, backend.req_to_token_pool.req_to_token
    gen = torch.Generator().manual_seed(9)
    prefix = [5, 17]
    b = make_paged_batch([(p, n) for p in prefix], *HEADS, DIM, generator=gen)
    _load(pool, r2t, b)
    tree = torch.tril(torch.rand(2, n, n, generator=gen) > 0.5) | torch.eye(n, dtype=torch.bool)
    backend.verify_mask.buffer.zero_()[: tree.numel()] = tree.reshape(-1)
    drafts = torch.cat([r2t[b.req_pool_indices[i], p : p + n].long() for i, p in enumerate(prefix)])
    fb = SimpleNamespace(
        forward_mode=ForwardMode.TARGET_VERIFY,
        req_pool_indices=b.req_pool_indices,
        seq_lens=torch.tensor(prefix),
        seq_lens_cpu=torch.tensor(prefix),
        out_cache_loc=drafts,
        spec_info=SimpleNamespace(custom_mask=backend.verify_mask.buffer, draft_token_num=n),
    )
    want = _verify_reference(b, prefix, n, tree)
    for tier in ("triton", "torch"):
        op = backend.ops["extend"]
        op.selection = replace(op.selection, tier=Tier(tier))
        backend.init_forward_metadata(fb)
        out = backend.forward_extend(b.q.reshape(2 * n, -1), None, None, _layer(HEADS, DIM), fb)
        torch.testing.assert_close(out, want, **tolerance(torch.float32))


@pytest.mark.cpu_interpreter
@pytest.mark.parametrize("topk,page_size", [(1, 1), (2, 1), (2, 4)])
def test_draft_decode_capture_time_metadata_serves_every_replay(topk, page_size):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    from sglang_amd.attention.sglang_draft_backend import AmdMultiStepDraftBackend

    steps = 3
    runner = _runner(draft_worker=True, page_size=page_size)
    container = AmdMultiStepDraftBackend(runner, topk, steps)
    container.init_cuda_graph_state(MAX_BS, MAX_BS * topk)
    layer = _layer(HEADS, DIM)
    pool, r2t = runner.token_to_kv_pool, runner.req_to_token_pool.req_to_token
    rows_n = MAX_BS * topk
    static = _static_buffers(ForwardMode.DECODE)
    container.init_forward_metadata_out_graph(static, in_capture=True)
    captured = [be.forward_metadata for be in container.attn_backends]
    container.init_forward_metadata_in_graph(static)
    q_static = torch.zeros(rows_n, HEADS[0] * DIM)
    for be in container.attn_backends:
        be.forward_decode(q_static, None, None, layer, static)

    gen = torch.Generator().manual_seed(topk * 10 + page_size)
    # Each request's row holds its prefix and, after it, every branch's chain.
    reserve = topk * (steps + page_size)
    for seq_lens in ([40, 1, 100], [CAPACITY - reserve - 1], [9, 33]):
        raw_bs = len(seq_lens)
        b = make_paged_batch([(s + reserve, 0) for s in seq_lens], *HEADS, DIM, generator=gen)
        _load(pool, r2t, b)
        static.req_pool_indices.zero_()[:raw_bs] = b.req_pool_indices
        static.seq_lens.fill_(1)[:raw_bs] = torch.tensor(seq_lens)
        static.seq_lens_cpu = static.seq_lens.clone()
        container.init_forward_metadata_out_graph(SimpleNamespace(**vars(static)))
        q = torch.randn(raw_bs * topk, HEADS[0], DIM, generator=gen)
        q_static.zero_()[: raw_bs * topk] = q.reshape(raw_bs * topk, -1)
        for step, be in enumerate(container.attn_backends):
            be.forward_metadata = captured[step]
            out = be.forward_decode(q_static, None, None, layer, static)
            token_map, kv_lens = draft_decode_token_map(
                b.req_to_token,
                b.req_pool_indices,
                seq_lens,
                topk=topk,
                num_steps=steps,
                step=step,
                page_size=page_size,
            )
            want = paged_attention_reference(
                q,
                b.k_cache,
                b.v_cache,
                token_map,
                list(range(raw_bs * topk)),
                kv_lens,
                [1] * len(kv_lens),
                scale=DIM**-0.5,
            ).reshape(raw_bs * topk, -1)
            torch.testing.assert_close(out[: raw_bs * topk], want, **tolerance(torch.float32))


def _graphs(decode="full"):
    return SimpleNamespace(
        decode=SimpleNamespace(backend=decode), prefill=SimpleNamespace(backend="disabled")
    )


def test_speculative_graph_phases(monkeypatch):
    args = SimpleNamespace(attention_backend="amd", device="cuda", speculative_algorithm="EAGLE")
    assert cuda_graph_refusals(args, _graphs(), "triton", "triton") == {}
    why = cuda_graph_refusals(args, _graphs(), "triton", "torch")["decode"]
    assert "SGLANG_AMD_ATTENTION_EXTEND_TIER" in why
    # Only the draft on ours: its decode tier decides; the target's extend does not.
    draft_only = SimpleNamespace(
        attention_backend="triton",
        speculative_draft_attention_backend="amd",
        device="cuda",
        speculative_algorithm="EAGLE",
    )
    assert cuda_graph_refusals(draft_only, _graphs(), "triton", "torch") == {}
    assert "decode" in cuda_graph_refusals(draft_only, _graphs(), "torch", "triton")
    monkeypatch.setenv("SGLANG_ENABLE_METADATA_GLUE_GRAPH", "1")
    assert "GLUE" in cuda_graph_refusals(args, _graphs(), "triton", "triton")["decode"]


def test_overlap_plan_stream_is_refused_at_start(monkeypatch):
    args = SimpleNamespace(
        attention_backend="amd", device="cuda", speculative_algorithm="EAGLE", kv_cache_dtype="auto"
    )
    assert unsupported_reasons(args, None) == []
    monkeypatch.setenv("SGLANG_ENABLE_OVERLAP_PLAN_STREAM", "1")
    (why,) = unsupported_reasons(args, None)
    assert "SGLANG_ENABLE_OVERLAP_PLAN_STREAM" in why
