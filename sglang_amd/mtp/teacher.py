"""Teacher traces: the target's own greedy outputs, and how often a draft head agrees.

Where it sits: before a draft head is trusted. The target (transformers, float32)
answers prompts greedily; each sequence gives, per position t, the target's
hidden state h_t (after its final norm), the next token x_{t+1} and the label:
the target's greedy choice after x_{t+1}, which is what SGLang's verify accepts.
`agreement` is the teacher-forced share of positions where a NextN head's argmax
is that label, per draft step (step k fed step k-1's outputs, as SGLang's
multi-step draft does): the per-token accept rate to expect before serving.
Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sglang_amd.mtp.nextn_head import NextNHead

IGNORE = -100


@dataclass
class Traces:
    """Teacher data: padded token ids [N, L], the target's final-norm hidden states
    [N, L, H], its greedy label after each next token [N, L-1] (IGNORE past a
    sequence's end)."""

    ids: torch.Tensor
    hidden: torch.Tensor
    labels: torch.Tensor


@torch.no_grad()
def greedy_sequences(target, prompts: Sequence[Sequence[int]], new_tokens: int) -> list[list[int]]:
    """Each prompt followed by the target's greedy continuation."""
    out = []
    for ids in prompts:
        x = torch.tensor([list(ids)])
        y = target.generate(x, max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        out.append(y[0].tolist())
    return out


@torch.no_grad()
def teacher_traces(target, sequences: Sequence[Sequence[int]]) -> Traces:
    n, length = len(sequences), max(len(s) for s in sequences)
    ids = torch.zeros(n, length, dtype=torch.long)
    valid = torch.zeros(n, length, dtype=torch.bool)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s)
        valid[i, : len(s)] = True
    # right padding: causal attention keeps every real position's state exact
    hidden = target.model(input_ids=ids).last_hidden_state
    greedy = target.lm_head(hidden).argmax(-1)
    # the draft at t sees x_{t+1}; its label is the target's choice at t+1
    labels = torch.where(valid[:, 1:], greedy[:, 1:], torch.full_like(greedy[:, 1:], IGNORE))
    return Traces(ids=ids, hidden=hidden, labels=labels)


@torch.no_grad()
def agreement(head: NextNHead, tr: Traces, steps: int = 1) -> list[float]:
    """Per draft step: the share of positions where the head's argmax equals the
    target's greedy label (teacher-forced; step k on step k-1's outputs)."""
    head.eval()
    h, nxt = tr.hidden[:, :-1], tr.ids[:, 1:]
    pos = torch.arange(nxt.shape[1]).expand_as(nxt)
    out_rates = []
    for k in range(steps):
        out = head(h, nxt, pos)
        pred = head.logits(out[:, k:]).argmax(-1)
        lab = tr.labels[:, k:]
        mask = lab != IGNORE
        out_rates.append(float((pred[mask] == lab[mask]).float().mean()))
        h = torch.cat([h[:, :1], out[:, :-1]], dim=1)
    return out_rates
