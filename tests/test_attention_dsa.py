"""DSA through the tiers (`attention/dsa.py`): what the SGLang adapter calls per layer.

The batch layout (each query token's request row and causal limit), the index-key
store of both indexer modes, and the two tiered ops' entries: Triton against the
torch reference on the same calls (the indexer's top-k as sets: the tiers list
them in different orders), and the sparse attention over that table. Outputs start poisoned. Triton runs in the interpreter on CPU.
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.attention import dsa
from sglang_amd.attention.index_k_cache import index_k_cache_bytes_per_page, load_index_k
from sglang_amd.attention.reference import select_topk

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PAGE = 64


def test_token_layout_is_request_after_request_with_causal_limits():
    rows, rows_cpu, visible, visible_cpu = dsa.token_rows_and_visible(
        torch.tensor([5, 2, 9]), kv_lens_cpu=[7, 1, 4], qo_lens_cpu=[3, 1, 0]
    )
    assert rows_cpu == [5, 5, 5, 2] and rows.tolist() == rows_cpu
    assert visible_cpu == [5, 6, 7, 1] and visible.tolist() == visible_cpu
    assert visible.dtype == torch.int32


def _batch(seed: int, lens: list[int], new: int, heads: int = 16):
    """Requests of `lens` tokens whose last `new` tokens query; slots scattered."""
    g = torch.Generator().manual_seed(seed)
    slots = PAGE * (sum(lens) // PAGE + 2)
    perm = torch.randperm(slots, generator=g)
    r2t = torch.zeros(len(lens), max(lens), dtype=torch.int32)
    at = 0
    for r, n in enumerate(lens):
        r2t[r, :n] = perm[at : at + n].int()
        at += n
    _, _, visible, visible_cpu = dsa.token_rows_and_visible(
        torch.arange(len(lens)), lens, [min(new, n) for n in lens]
    )
    tokens = len(visible_cpu)
    rows = torch.tensor([r for r, n in enumerate(lens) for _ in range(min(new, n))])
    q = torch.randn(tokens, heads, dsa.INDEX_HEAD_DIM, generator=g)
    k = torch.randn(slots, dsa.INDEX_HEAD_DIM, generator=g)
    w = torch.randn(tokens, heads, generator=g)
    return q, k, w, r2t, rows, visible, visible_cpu, slots


def _store(fp8: bool, q, k_all, w, slots):
    """Both modes' inputs, every slot's key written through `store_keys`."""
    q_in, w_in, k_in, k_scale = dsa.indexer_inputs(q, k_all, w, fp8=fp8)
    if fp8:
        keys = torch.full(
            (slots // PAGE, index_k_cache_bytes_per_page(PAGE)), 0xFF, dtype=torch.uint8
        )
    else:
        keys = torch.full((slots, dsa.INDEX_HEAD_DIM), float("nan"))
    dsa.store_keys(keys, torch.arange(slots), k_in, k_scale, PAGE if fp8 else 0)
    return q_in, w_in, keys, k_in, k_scale


@pytest.mark.parametrize("fp8", [False, True], ids=["float", "fp8"])
def test_store_keys_writes_each_mode_where_its_reader_looks(fp8):
    q, k, w, *_, slots = _batch(0, [70, 9], 3)
    _, _, keys, k_in, k_scale = _store(fp8, q, k, w, slots)
    loc = torch.tensor([0, 63, 64, slots - 1])
    if fp8:
        k8, scale = load_index_k(keys, loc, PAGE)
        assert torch.equal(k8.view(torch.uint8), k_in[loc].view(torch.uint8))
        assert torch.equal(scale, k_scale[loc])
    else:
        assert torch.equal(keys[loc], k[loc])


def test_float_mode_inputs_fold_only_the_head_count():
    q, k, w, *_ = _batch(1, [5], 5, heads=16)
    q_in, w_in, k_in, k_scale = dsa.indexer_inputs(q, k, w, fp8=False)
    assert q_in is q and k_in is k and k_scale is None
    torch.testing.assert_close(w_in, w * 0.25)
    q8, w8, k8, s8 = dsa.indexer_inputs(q, k, w, fp8=True)
    assert q8.dtype == k8.dtype == torch.float8_e4m3fn and s8.shape == (k.shape[0],)


def _as_sets(table: torch.Tensor) -> list[set[int]]:
    """A top-k table's rows as sets (the Triton tier lists picks in position order,
    the torch tier by score); -1 padding counts once per row as len - picks."""
    return [set(r) - {-1} for r in table.tolist()]


@pytest.mark.parametrize("fp8", [False, True], ids=["float", "fp8"])
@pytest.mark.parametrize("lens,new", [([70, 9], 3), ([130], 1), ([5, 200, 64], 16)])
def test_indexer_tiers_pick_the_same_tokens(fp8, lens, new):
    """The whole op (scores, then top 16): the same sets on both tiers, each the
    reference's top 16 of the reference's scores, -1 where fewer are visible."""
    from sglang_amd.attention.reference import indexer_logits_reference

    q, k, w, r2t, rows, visible, visible_cpu, slots = _batch(len(lens) + new, lens, new)
    q_in, w_in, keys, _, _ = _store(fp8, q, k, w, slots)
    to = dict(device=DEVICE)
    call = dsa.IndexerCall(q_in.to(**to), w_in.to(**to), keys.to(**to), r2t.to(**to),
                           rows.to(**to), visible.to(**to), visible_cpu,
                           dsa.INDEX_HEAD_DIM**-0.5, 16, PAGE if fp8 else 0)  # fmt: skip
    assert dsa.indexer_triton_refusal(call) is None
    got, want = dsa.indexer_triton(call), dsa.indexer_torch(call)
    assert got.shape == want.shape == (len(visible_cpu), 16) and got.dtype == torch.int32
    assert _as_sets(got) == _as_sets(want)
    assert [len(s) for s in _as_sets(got)] == [min(16, n) for n in visible_cpu]
    if not fp8:  # the float mode's picks are the reference scores' top 16
        scores = indexer_logits_reference(q, w_in, k, r2t, rows, visible_cpu,
                                          scale=dsa.INDEX_HEAD_DIM**-0.5)  # fmt: skip
        assert _as_sets(want) == _as_sets(select_topk(scores, 16))


@pytest.mark.parametrize("heads,dqk,dv", [(16, 576, 512), (8, 80, 64)])
def test_sparse_tiers_agree_on_the_indexers_table(heads, dqk, dv):
    """The indexer's table (each token's top-16 of its visible positions) drives the
    sparse op: Triton against torch, MLA's latent form (V aliasing K) and MHA dims."""
    lens, new = [70, 9, 130], 4
    qi, k, w, r2t, rows, visible, visible_cpu, slots = _batch(3, lens, new)
    _, w_in, keys, _, _ = _store(False, qi, k, w, slots)
    topk = dsa.indexer_torch(dsa.IndexerCall(qi, w_in, keys, r2t, rows, visible, visible_cpu,
                                             dsa.INDEX_HEAD_DIM**-0.5, 16))  # fmt: skip
    g = torch.Generator().manual_seed(heads)
    tokens = len(visible_cpu)
    kv = torch.randn(slots, 1, dqk, generator=g)
    v = kv[..., :dv] if dqk > dv else torch.randn(slots, 1, dv, generator=g)
    q = torch.randn(tokens, heads, dqk, generator=g)
    to = dict(device=DEVICE)
    calls = [
        dsa.SparseCall(
            q.to(**to),
            kv.to(**to),
            v.to(**to),
            r2t.to(**to),
            rows.to(**to),
            rows.tolist(),
            topk.to(**to),
            dqk**-0.5,
            torch.full((tokens, heads, dv), float("nan"), **to),
        )  # fmt: skip
        for _ in range(2)
    ]
    assert dsa.sparse_triton_refusal(calls[0]) is None
    got, want = dsa.sparse_triton(calls[0]), dsa.sparse_torch(calls[1])
    assert got is calls[0].out and want is calls[1].out
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("new", [1, 3], ids=["decode", "verify"])
@pytest.mark.parametrize("fp8", [False, True], ids=["float", "fp8"])
def test_a_cuda_graph_batch_is_planned_on_the_device(no_host_reads, fp8, new):
    """Inside a CUDA graph a decode batch's layout (one token a request) or a chain
    target verify's (`new` draft tokens a request) comes from device tensors alone
    and the scores are the capacity wide: the Triton indexer, its top-k and the
    sparse attention then read nothing on the host, and pick and compute what the
    host-planned call does. The torch tiers, which read lengths, refuse."""
    lens = [70, 9, 130]
    q, k, w, r2t, rows, visible, visible_cpu, slots = _batch(5, lens, new)
    tokens = len(visible_cpu)
    q_in, w_in, keys, _, _ = _store(fp8, q, k, w, slots)
    to = dict(device=DEVICE)
    page = PAGE if fp8 else 0
    args = (q_in.to(**to), w_in.to(**to), keys.to(**to), r2t.to(**to))
    planned = dsa.IndexerCall(*args, rows.to(**to), visible.to(**to), visible_cpu,
                              dsa.INDEX_HEAD_DIM**-0.5, 16, page)  # fmt: skip
    d_rows, d_visible = dsa.graph_rows_and_visible(torch.arange(3, **to),
                                                   torch.tensor(lens, **to), new)  # fmt: skip
    assert torch.equal(d_rows.cpu(), rows) and torch.equal(d_visible.cpu(), visible)
    graphed = dsa.IndexerCall(*args, d_rows, d_visible, None, dsa.INDEX_HEAD_DIM**-0.5, 16, page,
                              capacity=r2t.shape[1] + 37)  # fmt: skip
    assert dsa.indexer_torch_refusal(graphed) and not dsa.indexer_torch_refusal(planned)
    g = torch.Generator().manual_seed(11)
    kv = torch.randn(slots, 1, 576, generator=g).to(**to)
    q_att = torch.randn(tokens, 16, 576, generator=g).to(**to)

    def sparse(call_rows, rows_cpu, table):
        out = torch.full((tokens, 16, 512), float("nan"), **to)
        return dsa.sparse_triton(dsa.SparseCall(q_att, kv, kv[..., :512], r2t.to(**to), call_rows,
                                                rows_cpu, table, 0.05, out))  # fmt: skip

    want_table = dsa.indexer_triton(planned)
    want = sparse(rows.to(**to), rows.tolist(), want_table)

    with no_host_reads():
        table = dsa.indexer_triton(graphed)
        got = sparse(d_rows, None, table)
    assert _as_sets(table.cpu()) == _as_sets(want_table.cpu())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert dsa.sparse_torch_refusal(dsa.SparseCall(q_att, kv, kv, r2t, d_rows, None, table, 0.05,
                                                   got))  # fmt: skip
