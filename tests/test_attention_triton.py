"""Triton attention kernels against the torch reference.

On CPU they run in Triton's interpreter (conftest sets TRITON_INTERPRET=1) on
small shapes; with a GPU the same tests run compiled, and the `gpu` tests add
the full grid of the issue (contexts up to 2048 in one batch). Every output
buffer starts as NaN so an element a kernel never writes fails the comparison.
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.attention.decode import paged_decode
from sglang_amd.attention.extend import paged_extend
from sglang_amd.attention.head_dims import split_qk_dim, unsupported_dims
from sglang_amd.attention.opt_flags import choose_num_splits, decode_flags
from sglang_amd.attention.spec_layout import full_verify_mask
from sglang_amd.target_info import current_target
from sglang_amd.testing import capture_cuda_graph, make_paged_batch, poisoned_like, tolerance
from sglang_amd.testing import reference_attention as reference
from tests.hypothesis_compat import given, settings, st

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HEADS = [(8, 8), (32, 8), (16, 1)]


def run_decode(batch, scale, v_cache=None, **kw):
    v = batch.v_cache if v_cache is None else v_cache
    out = poisoned_like(batch.q, (batch.q.shape[0], batch.q.shape[1], v.shape[2]))
    got = paged_decode(
        batch.q,
        batch.k_cache,
        v,
        batch.req_to_token,
        batch.req_pool_indices,
        batch.kv_lens,
        scale=scale,
        out=out,
        **kw,
    )
    assert got is out
    return got


def run_extend(batch, scale, **kw):
    out = poisoned_like(batch.q, (batch.q.shape[0], batch.q.shape[1], batch.v_cache.shape[2]))
    got = paged_extend(
        batch.q,
        batch.k_cache,
        batch.v_cache,
        batch.req_to_token,
        batch.req_pool_indices,
        batch.kv_lens,
        batch.qo_lens,
        scale=scale,
        out=out,
        **kw,
    )
    assert got is out
    return got


def check(got, want, dtype):
    assert not torch.isnan(got).any(), "unwritten (NaN-poisoned) elements"
    torch.testing.assert_close(got.float(), want.float(), **tolerance(dtype))


# ------------------------------------------------------------------- decode
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("heads", HEADS)
def test_decode_grid(heads, head_dim, page_size, dtype):
    seqs = [(0, 1), (16, 1), (300, 1), (1023, 1)]
    batch = make_paged_batch(
        seqs, *heads, head_dim, page_size=page_size, dtype=dtype, device=DEVICE
    )
    scale = head_dim**-0.5
    check(run_decode(batch, scale), reference(batch, scale), dtype)


@pytest.mark.parametrize("heads", [16, 40, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_mla_absorbed(dtype, heads):
    """DeepSeek MLA decode: 1 KV head of 512 latent + 64 rope; V is the latent.
    16 heads: one 16-head program; 40: one 64-head program with 24 masked rows;
    128: two 64-head programs per split (opt_flags: FlashMLA's layout)."""
    flags = decode_flags(current_target(torch.device(DEVICE)), 2, 1, heads, 200, 576, 512)
    assert flags.block_h == (16 if heads == 16 else 64)
    batch = make_paged_batch([(5, 1), (200, 1)], heads, 1, 576, dtype=dtype, device=DEVICE)
    latent = batch.k_cache[..., :512]
    got = run_decode(batch, 0.07, v_cache=latent)
    check(got, reference(batch, 0.07, v_cache=latent), dtype)
    # A V that only equals the latent (another tensor) is loaded, not taken from K.
    check(run_decode(batch, 0.07, v_cache=latent.clone()), got, dtype)


@pytest.mark.parametrize("window,cap", [(0, 0.0), (7, 0.0), (None, 4.0), (33, 30.0)])
def test_decode_window_and_softcap(window, cap):
    batch = make_paged_batch([(0, 1), (20, 1), (90, 1)], 8, 2, 64, device=DEVICE)
    got = run_decode(batch, 0.125, sliding_window=window, logit_cap=cap)
    check(got, reference(batch, 0.125, sliding_window=window, logit_cap=cap), torch.float32)


@pytest.mark.parametrize("splits,min_len", [(1, 1), (3, 1), (8, 1), (8, 64), (64, 256)])
def test_decode_forced_split_counts_agree(splits, min_len):
    """Grids wider than a sequence needs: with min_len 1 every token can sit in its own
    split (empty splits merge with zero weight); with larger min_len short sequences
    use fewer splits than the grid has, as under CUDA graphs (grid sized for capacity)."""
    from dataclasses import replace

    batch = make_paged_batch([(0, 1), (1, 1), (50, 1), (400, 1)], 4, 2, 32, device=DEVICE)
    flags = decode_flags(current_target(batch.q.device), 4, 2, 2, 401, 32, 32)
    flags = replace(flags, num_splits=splits, min_split_len=min_len, block_n=16)
    check(run_decode(batch, 0.2, flags=flags), reference(batch, 0.2), torch.float32)


@settings(max_examples=12, deadline=None)
@given(
    kv=st.lists(st.integers(1, 200), min_size=1, max_size=6),
    heads=st.sampled_from([(4, 4), (8, 2), (6, 1)]),
    seed=st.integers(0, 2**16),
)
def test_decode_random_batches(kv, heads, seed):
    gen = torch.Generator().manual_seed(seed)
    batch = make_paged_batch([(n - 1, 1) for n in kv], *heads, 32, generator=gen, device=DEVICE)
    check(run_decode(batch, 0.17), reference(batch, 0.17), torch.float32)


# ------------------------------------------------------------------- extend
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("heads", HEADS)
def test_extend_grid(heads, head_dim, page_size, dtype):
    seqs = [(0, 7), (40, 19), (300, 3), (5, 33)]
    batch = make_paged_batch(
        seqs, *heads, head_dim, page_size=page_size, dtype=dtype, device=DEVICE
    )
    scale = head_dim**-0.5
    check(run_extend(batch, scale), reference(batch, scale), dtype)


def test_extend_qk_192_v_128():
    """DeepSeek MHA prefill shape: qk = 128 nope + 64 rope, v = 128."""
    batch = make_paged_batch([(10, 9), (0, 20)], 8, 8, 192, 128, device=DEVICE)
    check(run_extend(batch, 0.07), reference(batch, 0.07), torch.float32)


@pytest.mark.parametrize("window,cap", [(0, 0.0), (5, 0.0), (None, 3.0), (12, 20.0)])
def test_extend_window_and_softcap(window, cap):
    batch = make_paged_batch([(30, 12), (0, 25)], 4, 2, 32, device=DEVICE)
    got = run_extend(batch, 0.2, sliding_window=window, logit_cap=cap)
    check(got, reference(batch, 0.2, sliding_window=window, logit_cap=cap), torch.float32)


def test_extend_tree_mask():
    """Speculative verify: draft tokens see the prefix plus their tree ancestors."""
    seqs = [(12, 4), (3, 6)]
    batch = make_paged_batch(seqs, 4, 2, 32, device=DEVICE)
    gen = torch.Generator().manual_seed(1)
    mask = torch.rand(sum(q * (p + q) for p, q in seqs), generator=gen) > 0.35
    mask[: 12 + 4] = False  # a query that sees nothing must come out as zeros
    mask = mask.to(DEVICE)
    got = run_extend(batch, 0.25, custom_mask=mask, causal=False)
    want = reference(batch, 0.25, custom_mask=mask, causal=False)
    check(got, want, torch.float32)
    assert torch.count_nonzero(got[0]) == 0


def _tree(gen, bsz, n):
    """Random verify trees: each draft sees itself and a random subset before it."""
    t = torch.tril(torch.rand(bsz, n, n, generator=gen) > 0.5) | torch.eye(n, dtype=torch.bool)
    return t


@pytest.mark.parametrize("n", [1, 4, 19])
@pytest.mark.parametrize("heads,head_dim", [((4, 2), 32), ((8, 1), 576)])
def test_extend_uniform_verify_modes(n, heads, head_dim):
    """Target verify as planned on the device (uniform_qo): FULL and draft-only
    (QLEN_ONLY) tree masks give what the reference gives with the FULL mask."""
    gen = torch.Generator().manual_seed(n * 7 + head_dim)
    scale = head_dim**-0.5
    prefix = [1, 40, 13]
    d_v = 512 if head_dim == 576 else head_dim
    batch = make_paged_batch(
        [(p, n) for p in prefix], *heads, head_dim, d_v, generator=gen, device=DEVICE
    )
    tree = _tree(gen, len(prefix), n)
    full = full_verify_mask(tree.reshape(-1), prefix, n, draft_only=True).to(DEVICE)
    want = reference(batch, scale, custom_mask=full)
    for mask, draft_only in ((full, False), (tree.reshape(-1).to(DEVICE), True)):
        got = run_extend(batch, scale, custom_mask=mask, mask_draft_only=draft_only, uniform_qo=n)
        check(got, want, torch.float32)
    # uniform_qo without a mask equals the host-planned launch
    check(run_extend(batch, scale, uniform_qo=n), reference(batch, scale), torch.float32)
    with pytest.raises(ValueError, match="uniform_qo"):
        run_extend(batch, scale, uniform_qo=n + 1)


def test_extend_draft_only_mask_with_host_plan():
    """QLEN_ONLY masks with ragged host-planned launches (eager draft extend)."""
    gen = torch.Generator().manual_seed(5)
    seqs = [(6, 3), (0, 5), (21, 2)]
    batch = make_paged_batch(seqs, 4, 4, 32, generator=gen, device=DEVICE)
    blocks = [torch.rand(q, q, generator=gen) > 0.4 for _, q in seqs]
    draft_only = torch.cat([b.reshape(-1) for b in blocks]).to(DEVICE)
    full = torch.cat(
        [
            torch.cat([torch.ones(q, p, dtype=torch.bool), b], 1).reshape(-1)
            for (p, q), b in zip(seqs, blocks, strict=True)
        ]
    ).to(DEVICE)
    got = run_extend(batch, 0.3, custom_mask=draft_only, mask_draft_only=True, causal=False)
    check(got, reference(batch, 0.3, custom_mask=full, causal=False), torch.float32)


@settings(max_examples=12, deadline=None)
@given(
    seqs=st.lists(st.tuples(st.integers(0, 80), st.integers(1, 40)), min_size=1, max_size=4),
    heads=st.sampled_from([(4, 4), (8, 2), (6, 1)]),
    seed=st.integers(0, 2**16),
)
def test_extend_random_batches(seqs, heads, seed):
    gen = torch.Generator().manual_seed(seed)
    batch = make_paged_batch(seqs, *heads, 32, generator=gen, device=DEVICE)
    check(run_extend(batch, 0.17), reference(batch, 0.17), torch.float32)


def test_extend_plan_is_made_once_per_forward(monkeypatch):
    """Layers of one forward share `plans`: the first call plans the launch, the
    others reuse it (no per-layer host-to-device copy) and get the same result."""
    import sglang_amd.attention.extend as extend

    made = []
    real = extend._host_plan
    monkeypatch.setattr(extend, "_host_plan", lambda *a: made.append(a) or real(*a))
    batch = make_paged_batch([(9, 5), (0, 12)], 8, 2, 32, device=DEVICE)
    plans = {}
    first = run_extend(batch, 0.2, plans=plans)
    for _ in range(3):
        check(run_extend(batch, 0.2, plans=plans), first, torch.float32)
    assert len(made) == 1 and len(plans) == 1
    check(first, reference(batch, 0.2), torch.float32)


@pytest.mark.parametrize("group,block_m,want", [(1, 64, 1), (4, 64, 4), (6, 16, 2), (128, 64, 64)])
def test_extend_packs_whole_tokens_of_a_group(group, block_m, want):
    from sglang_amd.attention.extend import heads_per_program

    heads = heads_per_program(group, block_m)
    assert heads == want and group % heads == 0 and block_m % heads == 0


# ---------------------------------------------------------- rules and limits
def test_head_dim_rules():
    assert split_qk_dim(128) == (128, 0)
    assert split_qk_dim(576) == (512, 64)
    assert split_qk_dim(192) == (128, 64)
    assert split_qk_dim(96) == (64, 32)
    assert split_qk_dim(100) is None
    assert unsupported_dims(128, 96) is not None
    assert unsupported_dims(576, 512) is None


def test_split_heuristic():
    # One long sequence on a 132-unit GPU: split until ~2 waves, 256+ tokens each.
    assert choose_num_splits(programs=8, max_kv_len=32768, units=132) == 33
    assert choose_num_splits(programs=8, max_kv_len=1000, units=132) == 4
    # A large batch already fills the device: no split.
    assert choose_num_splits(programs=2048, max_kv_len=32768, units=132) == 1


def test_unsupported_inputs_raise():
    batch = make_paged_batch([(3, 1)], 4, 4, 100, device=DEVICE)
    with pytest.raises(ValueError, match="head_dim 100"):
        run_decode(batch, 0.1)


# -------------------------------------------------------------- GPU: full grid
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("page_size", [1, 16, 64])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("heads", HEADS)
def test_gpu_full_grid(heads, head_dim, page_size, dtype):
    gen = torch.Generator().manual_seed(head_dim + page_size)
    lens = [1, 2048, 77, 1500, 512, 9, 2047, 300]
    decode = make_paged_batch(
        [(n - 1, 1) for n in lens],
        *heads,
        head_dim,
        page_size=page_size,
        dtype=dtype,
        device="cuda",
        generator=gen,
    )
    check(run_decode(decode, head_dim**-0.5), reference(decode, head_dim**-0.5), dtype)
    extend = make_paged_batch(
        [(n // 2, n - n // 2) for n in lens],
        *heads,
        head_dim,
        page_size=page_size,
        dtype=dtype,
        device="cuda",
        generator=gen,
    )
    check(run_extend(extend, head_dim**-0.5), reference(extend, head_dim**-0.5), dtype)


def _load_static(b, q, k, v, r2t, rows) -> None:
    """Copy batch `b` into a captured graph's static tensors (v None: MLA, aliases k)."""
    q.copy_(b.q)
    k[: b.k_cache.shape[0]].copy_(b.k_cache)
    if v is not None:
        v[: b.v_cache.shape[0]].copy_(b.v_cache)
    r2t.zero_()
    # The batch's table is a page wider than its longest sequence: that column is padding.
    width = min(r2t.shape[1], b.req_to_token.shape[1])
    r2t[: b.req_to_token.shape[0], :width].copy_(b.req_to_token[:, :width])
    rows.copy_(b.req_pool_indices)


@pytest.mark.gpu
@pytest.mark.parametrize("heads,head_dim", [((32, 8), 128), ((16, 1), 576)])
def test_gpu_decode_replays_in_a_cuda_graph(heads, head_dim):
    """What `--attention-backend amd` relies on under SGLang's decode CUDA graphs:
    captured once with placeholder lengths and the grid sized for the capacity,
    replayed after new lengths, slots and K/V land in the same buffers."""
    capacity, batch_size, slots = 4096, 4, 4 * 4096 + 64
    d_v = 512 if head_dim == 576 else head_dim
    dtype = torch.bfloat16
    q = torch.zeros(batch_size, heads[0], head_dim, dtype=dtype, device="cuda")
    k = torch.zeros(slots, heads[1], head_dim, dtype=dtype, device="cuda")
    v = k[..., :d_v] if d_v != head_dim else torch.zeros_like(k)
    r2t = torch.zeros(batch_size + 3, capacity, dtype=torch.int32, device="cuda")
    rows = torch.zeros(batch_size, dtype=torch.int64, device="cuda")
    lens = torch.ones(batch_size, dtype=torch.int64, device="cuda")
    out = torch.zeros(batch_size, heads[0], d_v, dtype=dtype, device="cuda")

    def launch():
        paged_decode(q, k, v, r2t, rows, lens, scale=0.1, max_kv_len=capacity, out=out)

    graph = capture_cuda_graph(launch)

    gen = torch.Generator().manual_seed(7)
    for kv in ([1, 4096, 77, 1500], [2048, 3, 4000, 256], [9, 9, 9, 9]):
        b = make_paged_batch(
            [(n - 1, 1) for n in kv],
            *heads,
            head_dim,
            d_v,
            dtype=dtype,
            device="cuda",
            generator=gen,
        )
        _load_static(b, q, k, v if d_v == head_dim else None, r2t, rows)
        lens.copy_(b.kv_lens)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        want = reference(
            b, 0.1, v_cache=k[: b.k_cache.shape[0], :, :d_v] if d_v != head_dim else None
        )
        check(out, want, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("heads,head_dim", [((32, 8), 128), ((16, 1), 576)])
def test_gpu_verify_replays_in_a_cuda_graph(heads, head_dim):
    """Target verify under SGLang's graphs: the launch planned on the device
    (uniform_qo) with a QLEN_ONLY tree mask, captured once, replayed after new
    lengths, slot maps, K/V and trees land in the same buffers."""
    n, batch_size, capacity, slots = 4, 3, 2048, 3 * 2048 + 64
    d_v = 512 if head_dim == 576 else head_dim
    dtype = torch.bfloat16
    q = torch.zeros(batch_size * n, heads[0], head_dim, dtype=dtype, device="cuda")
    k = torch.zeros(slots, heads[1], head_dim, dtype=dtype, device="cuda")
    v = k[..., :d_v] if d_v != head_dim else torch.zeros_like(k)
    r2t = torch.zeros(batch_size + 3, capacity, dtype=torch.int32, device="cuda")
    rows = torch.zeros(batch_size, dtype=torch.int64, device="cuda")
    kv_lens = torch.full((batch_size,), n + 1, dtype=torch.int64, device="cuda")
    qo_lens = torch.full((batch_size,), n, dtype=torch.int64, device="cuda")
    mask = torch.zeros(batch_size * n * n, dtype=torch.bool, device="cuda")
    out = torch.zeros(batch_size * n, heads[0], d_v, dtype=dtype, device="cuda")

    def launch():
        paged_extend(
            q,
            k,
            v,
            r2t,
            rows,
            kv_lens,
            qo_lens,
            scale=0.1,
            custom_mask=mask,
            mask_draft_only=True,
            uniform_qo=n,
            out=out,
        )

    graph = capture_cuda_graph(launch)

    gen = torch.Generator().manual_seed(11)
    for prefix in ([1, 2000, 77], [1500, 3, 1024], [9, 9, 9]):
        b = make_paged_batch(
            [(p, n) for p in prefix],
            *heads,
            head_dim,
            d_v,
            dtype=dtype,
            device="cuda",
            generator=gen,
        )
        tree = _tree(gen, batch_size, n)
        _load_static(b, q, k, v if d_v == head_dim else None, r2t, rows)
        kv_lens.copy_(b.kv_lens)
        mask.copy_(tree.reshape(-1))
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        full = full_verify_mask(tree.reshape(-1), prefix, n, draft_only=True).cuda()
        want = reference(
            b,
            0.1,
            custom_mask=full,
            v_cache=k[: b.k_cache.shape[0], :, :d_v] if d_v != head_dim else None,
        )
        check(out, want, dtype)
