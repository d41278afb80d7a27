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

from sglang_amd.attention.indexer import indexer_logits, indexer_topk
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
