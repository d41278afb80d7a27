"""MoE routers: which experts each token goes to, and with what weight.

- `softmax_topk`: Qwen3-MoE / Mixtral: softmax over all experts, top-k, and
  (norm_topk_prob) renormalize the k weights to sum to 1.
- `grouped_topk`: DeepSeek-V3 "noaux_tc": sigmoid scores; a per-expert
  correction bias steers the *choice* only; experts are split into groups, a
  group scores the sum of its two best biased scores, the best `topk_group`
  groups stay eligible, top-k over them; weights are the unbiased scores,
  renormalized, times `routed_scaling_factor`.

Both return (weights [T, k] float32, ids [T, k] int32). Never imports sglang.
"""

from __future__ import annotations

import torch


def softmax_topk(
    logits: torch.Tensor, k: int, renormalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] -> (weights [T, k] fp32, ids [T, k] int32)."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, ids = torch.topk(probs, k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids.to(torch.int32)


def grouped_topk(
    logits: torch.Tensor,
    k: int,
    num_groups: int,
    topk_groups: int,
    correction_bias: torch.Tensor | None = None,
    renormalize: bool = True,
    routed_scaling_factor: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] (E divisible by num_groups) -> (weights [T, k] fp32, ids [T, k] int32)."""
    t, e = logits.shape
    if e % num_groups:
        raise ValueError(f"{e} experts do not split into n_group={num_groups} groups")
    if not 1 <= topk_groups <= num_groups:
        raise ValueError(f"topk_group={topk_groups} must be in [1, n_group={num_groups}]")
    scores = torch.sigmoid(logits.float())
    choice = scores if correction_bias is None else scores + correction_bias.float()
    per_group = choice.view(t, num_groups, e // num_groups)
    group_score = per_group.topk(min(2, e // num_groups), dim=-1).values.sum(dim=-1)
    keep = torch.zeros_like(group_score, dtype=torch.bool)
    keep.scatter_(1, group_score.topk(topk_groups, dim=-1).indices, True)
    choice = choice.masked_fill(~keep.repeat_interleave(e // num_groups, dim=1), float("-inf"))
    ids = choice.topk(k, dim=-1).indices
    weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * routed_scaling_factor, ids.to(torch.int32)
