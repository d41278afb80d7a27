"""Triton tier of the DSA indexer's top-k: which positions each query token keeps.

Where it sits: after the indexer's scores (`indexer.py`, float32 [T, width], -inf
past each token's causal limit), before `sparse.py`, which reads the table as a set.
It picks the same positions as `reference.select_topk` (the k highest scores; the
lower positions among scores equal to the k-th; never a -inf or NaN one; -1 where
fewer are visible) by radix select (`topk_details/_radix_select.py`): a histogram
of the top bits, then one pass that writes the positions above the k-th score's
bin and keeps that bin's positions as candidates, whose lower bits are narrowed
apart. Each score is read twice, the candidates a few times more; no sort, no host
read, so one launch serves any batch of a shape. The table lists the picks of the
higher bins in position order, then the candidates picked, in position order: not
by score. Never imports sglang.
"""

from __future__ import annotations

import torch
import triton

from sglang_amd.attention.topk_details._radix_select import _topk_kernel

__all__ = ["topk_positions"]

_BLOCK_N = 1024  # positions a program reads per step
# The first histogram's bits: an 11-bit bin of float32 keys is 1/4 of a binade, so
# the candidates of a 64K row of indexer scores are a few hundred positions.
_FIRST_BITS = 11


def topk_positions(scores: torch.Tensor, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """[T, k] int32 positions of each row's k highest scores (see module docstring).

    Args:
        scores: [T, width] float32, -inf where not visible; rows contiguous.
        k: positions kept per row (index_topk).
        out: [T, k] int32 written in place when given.
    """
    if scores.dtype != torch.float32 or scores.dim() != 2 or scores.stride(1) != 1:
        raise ValueError(f"topk_positions: want contiguous float32 [T, width] scores, got "
                         f"{scores.dtype} {tuple(scores.shape)}")  # fmt: skip
    tokens, width = scores.shape
    if out is None:
        out = torch.empty(tokens, k, dtype=torch.int32, device=scores.device)
    if tokens == 0 or k == 0:
        return out
    block_n = min(_BLOCK_N, max(16, triton.next_power_of_2(width)))
    # The candidates of a row can be all of it (every score equal): width-sized.
    candidates = torch.empty(tokens, width, dtype=torch.int32, device=scores.device)
    _topk_kernel[(tokens,)](
        scores, out, candidates, width, scores.stride(0), out.stride(0), candidates.stride(0),
        K=k, FIRST_BITS=_FIRST_BITS, BLOCK_N=block_n,
        BLOCK_K=min(1024, max(16, triton.next_power_of_2(k))),
    )  # fmt: skip
    return out
