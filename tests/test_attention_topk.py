"""The DSA indexer's Triton top-k (`attention/topk.py`, radix select) against the
reference rule (`reference.select_topk`): the same positions on fresh random scores
of several shapes, where ties decide (ReLU zeros, -0.0 beside 0.0, rounded scores),
past a -inf causal tail, with NaN (never picked), with fewer visible positions than
k (-1 padding) and none at all. The table's order is the kernel's own (position
order), so rows compare as sets. Outputs start poisoned. Interpreted on CPU.
"""

from __future__ import annotations

import pytest
import torch

from sglang_amd.attention.reference import select_topk
from sglang_amd.attention.topk import topk_positions

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _check(scores: torch.Tensor, k: int) -> None:
    out = torch.full((scores.shape[0], k), 12345, dtype=torch.int32, device=DEVICE)
    got = topk_positions(scores.to(DEVICE), k, out=out)
    assert got is out
    clean = torch.nan_to_num(scores, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    want = select_topk(clean, k)
    for r, (g, w) in enumerate(zip(got.cpu().tolist(), want.tolist(), strict=True)):
        picks = [p for p in g if p != -1]
        assert len(picks) == len(set(picks)), (r, "a position twice")
        assert sorted(picks) == sorted(p for p in w if p != -1), r
        assert g[len(picks) :] == [-1] * (k - len(picks)), (r, "-1 only after the picks")


def _scores(seed: int, rows: int, width: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(rows, width, generator=g) * 3
    kinds = seed % 5
    if kinds == 1:
        s = torch.relu(s)  # many exact zeros
    elif kinds == 2:
        s = torch.round(s)  # ties everywhere, -0.0 beside 0.0
    elif kinds == 3:
        s[:, ::3] = float("nan")
    elif kinds == 4:
        s = -torch.relu(s)  # all <= 0: the sign handling
    for r in range(rows):  # a causal tail of a different length per row
        s[r, int(torch.randint(1, width + 1, (1,), generator=g)) :] = float("-inf")
    return s


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("width,k", [(40, 16), (300, 64), (2500, 2048), (1100, 7)])
def test_topk_picks_the_reference_positions(seed, width, k):
    _check(_scores(seed, 3, width), k)


def test_rows_with_few_or_no_visible_positions_pad_with_minus_one():
    s = torch.full((3, 50), float("-inf"))
    s[1, :4] = torch.tensor([1.0, -2.0, 0.0, 5.0])
    s[2, :] = float("nan")
    _check(s, 8)
    got = topk_positions(s.to(DEVICE), 8).cpu()
    assert got[0].tolist() == [-1] * 8 and got[2].tolist() == [-1] * 8
    assert got[1].tolist() == [0, 1, 2, 3] + [-1] * 4  # all visible, position order


def test_wider_k_than_positions_and_empty_batches():
    _check(torch.randn(2, 5), 32)
    assert topk_positions(torch.empty(0, 9), 4).shape == (0, 4)


def test_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="float32"):
        topk_positions(torch.randn(2, 8, dtype=torch.bfloat16), 4)


def _from_bits(bits: torch.Tensor) -> torch.Tensor:
    return bits.to(torch.int32).view(torch.float32)


@pytest.mark.parametrize("seed", range(3))
def test_scores_apart_only_in_their_lowest_bits(seed):
    """Keys equal in their top 22 bits: the candidates' second narrowing pass decides."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(1.5).view(torch.int32)
    low = torch.randint(0, 1024, (2, 3000), generator=g)
    s = _from_bits(base + low)  # 1.5 plus up to 1023 ulps
    s[:, ::7] = 4.0  # a higher bin, taken whole
    s[1, ::11] = -1.0
    _check(s, 1500)
    _check(s, 429)  # exactly the 4.0s: the candidates give none


@pytest.mark.parametrize("k", [1, 37, 600])
def test_equal_scores_past_k_keep_the_lowest_positions(k):
    s = torch.full((2, 1200), 2.0)
    s[1, 600:] = 0.0  # 0.0 keys tie through every pass too
    s[1, 5] = 3.0
    got = topk_positions(s.to(DEVICE), k).cpu()
    assert got[0].tolist() == list(range(k))
    assert got[1].tolist() == [5] + [p for p in range(600) if p != 5][: k - 1]
    _check(s, k)
