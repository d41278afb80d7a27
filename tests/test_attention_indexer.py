"""DSA's lightning indexer (issue 14), float mode: the Triton scores against the torch
reference (HF transformers' math), and the top-k rule.

Scores: fp32 to 1e-5, bf16 to 1e-2 relative to the scale of the scores; positions past
each token's causal limit are -inf (also past the longest limit, up to the width asked
for). Top-k: equal to a stable descending sort (higher score first, the lower position
between equals), -1 where fewer positions are visible, and against HF's own indexer
module on the same weights. Outputs start poisoned.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from sglang_amd.attention.indexer import indexer_logits, indexer_topk
from sglang_amd.attention.indexer_details._logits import _e4m3fn_bytes_as_fnuz
from sglang_amd.attention.reference import indexer_logits_reference, select_topk

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _case(seed: int, lens: list[int], heads: int, dim: int, dtype: torch.dtype):
    """Query tokens of several requests (prefix + new), index-K rows scattered in a pool."""
    g = torch.Generator().manual_seed(seed)
    slots = sum(lens) + 7
    perm = torch.randperm(slots, generator=g)
    r2t = torch.zeros(len(lens), max(lens), dtype=torch.int32)
    at = 0
    for r, n in enumerate(lens):
        r2t[r, :n] = perm[at : at + n].int()
        at += n
    index_k = torch.randn(slots, dim, generator=g).to(dtype)
    rows, visible = [], []
    for r, n in enumerate(lens):  # the last 3 tokens of each request query (extend)
        for pos in range(max(0, n - 3), n):
            rows.append(r)
            visible.append(pos + 1)
    tokens = len(rows)
    q = torch.randn(tokens, heads, dim, generator=g).to(dtype)
    w = (torch.randn(tokens, heads, generator=g) * heads**-0.5).to(dtype)
    to = dict(device=DEVICE)
    return (q.to(**to), w.to(**to), index_k.to(**to), r2t.to(**to),
            torch.tensor(rows, **to), torch.tensor(visible, dtype=torch.int32, **to))  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads,dim", [(64, 128), (16, 64), (5, 32)])
def test_scores_match_the_reference(heads, dim, dtype):
    q, w, k, r2t, rows, visible = _case(heads + dim, [9, 150, 70], heads, dim, dtype)
    width = 160  # wider than any limit: the tail must be -inf too
    out = torch.full((q.shape[0], width), float("nan"), device=DEVICE)
    got = indexer_logits(q, w, k, r2t, rows, visible, scale=dim**-0.5, width=width, out=out)
    assert got is out
    want = indexer_logits_reference(q, w, k, r2t, rows, visible, scale=dim**-0.5, width=width)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    err = (got[finite] - want[finite]).abs().max()
    assert err <= tol * max(1.0, want[finite].abs().max().item()), err


def test_topk_is_the_stable_descending_order_with_minus_one_padding():
    logits = torch.tensor(
        [
            [0.0, 2.0, 0.0, 5.0, float("-inf")],  # tie at 0: positions 0 before 2
            [1.0, float("-inf"), float("-inf"), float("-inf"), float("-inf")],
            [3.0, 3.0, 3.0, 1.0, 3.0],
        ]
    )
    got = select_topk(logits, 3)
    assert got.tolist() == [[3, 1, 0], [0, -1, -1], [0, 1, 2]]
    assert select_topk(logits, 7)[1].tolist() == [0, -1, -1, -1, -1, -1, -1]
    assert select_topk(logits, 7)[0].tolist() == [3, 1, 0, 2, -1, -1, -1]


@pytest.mark.parametrize("topk", [4, 32, 200])
def test_indexer_topk_selects_within_the_causal_limit(topk):
    q, w, k, r2t, rows, visible = _case(7, [12, 90], 16, 64, torch.float32)
    got = indexer_topk(q, w, k, r2t, rows, visible, scale=0.125, topk=topk, width=96)
    want = select_topk(indexer_logits_reference(q, w, k, r2t, rows, visible, scale=0.125,
                                                width=96), topk)  # fmt: skip
    assert torch.equal(got, want)
    for t in range(got.shape[0]):
        chosen = got[t][got[t] >= 0]
        assert chosen.numel() == min(topk, int(visible[t]))
        assert int(chosen.max()) < int(visible[t])


@pytest.mark.full  # tests/test_e2e_dsa.py holds the whole HF model (its indexer too) in make test
def test_float_mode_is_hf_transformers_indexer():
    """The oracle's own module: HF's DeepseekV32Indexer picks the same top-k from the
    same projections (q after its RoPE, k after its LayerNorm and RoPE, weights)."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.deepseek_v32 import modeling_deepseek_v32 as m

    cfg = transformers.DeepseekV32Config(
        hidden_size=64, q_lora_rank=32, index_n_heads=8, index_head_dim=32, index_topk=6,
        qk_rope_head_dim=16, num_attention_heads=4, num_hidden_layers=1, vocab_size=100,
    )  # fmt: skip
    torch.manual_seed(0)
    indexer = m.DeepseekV32Indexer(cfg, 0).eval()
    seq = 20
    x = torch.randn(1, seq, 64)
    q_resid = torch.randn(1, seq, 32)
    rope = m.DeepseekV32RotaryEmbedding(cfg)
    pos = torch.arange(seq)[None]
    cos, sin = rope(x, pos)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()[None]
    want = indexer(x, q_resid, (cos, sin), causal, pos)[0]  # [S, topk]
    # The same projections, then ours.
    q = indexer.wq_b(q_resid).view(1, seq, 8, 32)
    kk = indexer.k_norm(indexer.wk(x)).unsqueeze(2)
    q_rot, q_pass = q.split([16, 16], -1)
    k_rot, k_pass = kk.split([16, 16], -1)
    q_rot, k_rot = m.apply_rotary_pos_emb(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
    q = torch.cat([q_rot, q_pass], -1)[0].detach()
    k = torch.cat([k_rot, k_pass], -1)[0, :, 0].detach()
    w = (indexer.weights_proj(x)[0] * 8**-0.5).detach()
    r2t = torch.arange(seq, dtype=torch.int32)[None]
    got = indexer_topk(q.to(DEVICE), w.to(DEVICE), k.to(DEVICE), r2t.to(DEVICE),
                       torch.zeros(seq, dtype=torch.long, device=DEVICE),
                       torch.arange(1, seq + 1, dtype=torch.int32, device=DEVICE),
                       scale=32**-0.5, topk=6, width=seq).cpu()  # fmt: skip
    for t in range(seq):
        ours = set(got[t][got[t] >= 0].tolist())
        hf = set(want[t].tolist())
        if t + 1 < 6:  # HF pads with masked (-inf) positions; those select nothing
            hf = {s for s in hf if s <= t}
        assert ours == hf, (t, ours, hf)


# ------------------------------------------------------------------ FP8 mode
@triton.jit
def _fnuz_bytes_read(CODES, OUT):
    """The bytes `_e4m3fn_bytes_as_fnuz` hands the dot, for 256 codes."""
    offs = tl.arange(0, 256)
    codes = _e4m3fn_bytes_as_fnuz(tl.load(CODES + offs))
    tl.store(OUT + offs, codes.to(tl.uint8, bitcast=True))


def _fp8_case(seed: int, lens: list[int], heads: int, page: int = 64, round_scale=False):
    """Float q/k of the indexer, their FP8 form, and the keys stored in SGLang's layout
    at scattered slots of a paged cache."""
    from sglang_amd.attention.index_k_cache import (
        fp8_indexer_inputs,
        index_k_cache_bytes_per_page,
        store_index_k,
    )

    q, w, _, r2t, rows, visible = _case(seed, lens, heads, 128, torch.bfloat16)
    g = torch.Generator().manual_seed(seed + 1)
    pages = -(-int(r2t.max()) // page) + 2
    k = torch.randn(pages * page, 128, generator=g).to(torch.bfloat16).to(DEVICE)
    q8, w8, k8, k_scale = fp8_indexer_inputs(q, k, w.float() * heads**0.5, round_scale=round_scale)
    cache = torch.full((pages, index_k_cache_bytes_per_page(page)), 0x7F, dtype=torch.uint8,
                       device=DEVICE)  # fmt: skip
    store_index_k(cache, torch.arange(pages * page, device=DEVICE), k8, k_scale, page)
    return q, w, k, q8, w8, cache, r2t, rows, visible


def _negative_zeros(q8: torch.Tensor, cache: torch.Tensor, seed: int) -> None:
    """Put e4m3fn's -0 (0x80, e4m3fnuz's NaN) at random query and key codes: rounding
    makes it from any tiny negative value, and the fnuz reading must take it as 0."""
    g = torch.Generator().manual_seed(seed)
    q_bytes = q8.view(torch.uint8).view(-1)
    q_bytes[torch.randint(0, q_bytes.numel(), (q_bytes.numel() // 16,), generator=g)] = 0x80
    n = cache.shape[0] * 64 * 128 // 16
    pages = torch.randint(0, cache.shape[0], (n,), generator=g)
    cache[pages.to(cache.device), torch.randint(0, 64 * 128, (n,), generator=g)] = 0x80


def test_fnuz_reading_never_hands_the_dot_fnuz_nan():
    """0x80 is e4m3fn's -0 but e4m3fnuz's NaN, which a gfx942 MFMA would spread over
    a whole row of scores. The interpreter converts it to -0 either way, so the
    scores test above cannot see it: check the bytes the fnuz reading hands on."""
    if DEVICE == "cuda" and not torch.version.hip:
        pytest.skip("float8e4b8 is an AMD type; only gfx942 reads the cache so")
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8).to(DEVICE)
    out = torch.full_like(codes, 0xAA)
    _fnuz_bytes_read[(1,)](codes, out)
    want = codes.clone()
    want[0x80] = 0
    assert torch.equal(out, want)
    # Every other code e4m3fn rounding produces (|x| <= 448, so not 0x7F or 0xFF)
    # is worth exactly half as e4m3fnuz: hence the dot's factor of 4.
    fn = codes.cpu().view(torch.float8_e4m3fn).float()
    nz = codes.cpu().view(torch.float8_e4m3fnuz).float()
    kept = torch.ones(256, dtype=torch.bool)
    kept[[0x7F, 0x80, 0xFF]] = False
    assert torch.equal(nz[kept] * 2, fn[kept])


@pytest.mark.parametrize("fnuz", [False, True])
@pytest.mark.parametrize("heads,lens,round_scale", [(64, [9, 150, 70], False), (16, [200], True)])
def test_fp8_scores_match_the_reference(heads, lens, round_scale, fnuz):
    """Either reading of the bytes (e4m3fn, or gfx942's e4m3fnuz scaled back by 4)
    gives the reference's scores, -0 codes included."""
    from sglang_amd.attention.indexer import indexer_logits_fp8
    from sglang_amd.attention.reference import indexer_logits_fp8_reference

    if fnuz and DEVICE == "cuda" and not torch.version.hip:
        pytest.skip("Triton has no e4m3fnuz dot on NVIDIA; only gfx942 reads the cache so")
    _, _, _, q8, w8, cache, r2t, rows, visible = _fp8_case(
        heads, lens, heads, round_scale=round_scale
    )
    _negative_zeros(q8, cache, heads)
    width = max(lens) + 10
    out = torch.full((q8.shape[0], width), float("nan"), device=DEVICE)
    got = indexer_logits_fp8(q8, w8, cache, 64, r2t, rows, visible, width=width, out=out,
                             fnuz=fnuz)  # fmt: skip
    assert got is out
    want = indexer_logits_fp8_reference(q8, w8, cache, 64, r2t, rows, visible, width=width)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    finite = torch.isfinite(want)
    err = (got[finite] - want[finite]).abs().max()
    assert err <= 1e-5 * max(1.0, want[finite].abs().max().item()), err


def test_fp8_mode_tracks_the_float_mode():
    """The Hadamard rotation is orthonormal, so q.k is kept up to FP8 rounding: the
    scores stay within a few percent of HF's float math and pick nearly the same top-k."""
    from sglang_amd.attention.reference import indexer_logits_fp8_reference

    q, w, k, q8, w8, cache, r2t, rows, visible = _fp8_case(3, [150, 90], 64)
    fp8 = indexer_logits_fp8_reference(q8, w8, cache, 64, r2t, rows, visible)
    flt = indexer_logits_reference(q, w, k, r2t, rows, visible, scale=128**-0.5)
    finite = torch.isfinite(flt)
    assert (fp8[finite] - flt[finite]).abs().max() <= 0.05 * flt[finite].abs().max()
    a, b = select_topk(fp8, 32), select_topk(flt, 32)
    overlap = [len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b, strict=True)]
    assert min(overlap) >= 28, overlap


def test_hadamard_is_the_normalised_walsh_matrix():
    from scipy.linalg import hadamard as scipy_hadamard

    from sglang_amd.attention.index_k_cache import hadamard

    x = torch.randn(5, 128, dtype=torch.float64)
    h = torch.tensor(scipy_hadamard(128), dtype=torch.float64) * 128**-0.5
    torch.testing.assert_close(hadamard(x.float()).double(), x @ h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hadamard(hadamard(x.float())), x.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.sglang
@pytest.mark.cpu_interpreter
@pytest.mark.parametrize("round_scale", [False, True])
def test_fp8_rounding_is_sglangs_act_quant(round_scale):
    """Bit for bit what SGLang's indexer stores and scores with (its Triton act_quant)."""
    from sglang.kernels.ops.quantization import act_quant_triton

    from sglang_amd.attention.index_k_cache import quantize_fp8
    from sglang_amd.audit.traffic import interpreted_kernels

    g = torch.Generator().manual_seed(5)
    x = torch.randn(37, 2, 128, generator=g) * torch.logspace(-6, 3, 37)[:, None, None]
    x[0] = 0.0  # the 1e-4 amax floor
    x = x.to(torch.bfloat16)
    with interpreted_kernels(act_quant_triton):
        want8, want_s = act_quant_triton.act_quant(x, 128, "ue8m0" if round_scale else None)
    got8, got_s = quantize_fp8(x, round_scale)
    assert torch.equal(got_s, want_s)  # the amax floor, 1/448 as a product, ue8m0's ceil
    # Values: x / scale rounded to nearest even, as a GPU's cvt.rn does. Triton 3.8's
    # interpreter converts to float8 its own way (it drops the carry of 124 -> 128 and
    # rounds some ties otherwise), so its bytes agree on most values, not all.
    blocks = x.float().unflatten(-1, (-1, 128)) / want_s[..., None]
    rtne = blocks.clamp(-448, 448).to(torch.float8_e4m3fn).flatten(-2)
    assert torch.equal(got8.view(torch.uint8), rtne.view(torch.uint8))
    same = got8.view(torch.uint8) == want8.view(torch.uint8)
    assert same.float().mean() > 0.9  # 94 % with this seed


@pytest.mark.sglang
@pytest.mark.cpu_interpreter
def test_index_k_cache_layout_is_sglangs():
    """Our store writes the bytes SGLang's own store writes (64-token pages: keys, then
    float32 scales), so a cache either of us filled reads the same."""
    from sglang.kernels.ops.kvcache import dsa_index_k_cache

    from sglang_amd.attention.index_k_cache import (
        index_k_cache_bytes_per_page,
        load_index_k,
        quantize_fp8,
        store_index_k,
    )
    from sglang_amd.audit.traffic import interpreted_kernels

    g = torch.Generator().manual_seed(9)
    loc = torch.randperm(3 * 64, generator=g)[:70]
    k8, scale = quantize_fp8(torch.randn(70, 128, generator=g))
    ours = torch.zeros(3, index_k_cache_bytes_per_page(64), dtype=torch.uint8)
    store_index_k(ours, loc, k8, scale[:, 0], 64)
    theirs = torch.zeros_like(ours)
    with interpreted_kernels(dsa_index_k_cache):
        dsa_index_k_cache._set_k_and_s_triton(theirs, loc, k8, scale.contiguous(), 64)
    assert torch.equal(ours, theirs)
    back8, back_scale = load_index_k(theirs, loc, 64)
    assert torch.equal(back8.view(torch.uint8), k8.view(torch.uint8))
    assert torch.equal(back_scale, scale[:, 0])
