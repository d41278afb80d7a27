"""Teacher traces: the target's own greedy outputs, and how often a draft head agrees.

Where it sits: before a draft head is trained or trusted. The target
(transformers, float32) answers prompts greedily, up to its end-of-sequence
token; each sequence gives, per position t, the state a draft reads at t (the
target's last hidden state after its final norm for NextN heads, its residual
stream after three layers for EAGLE3), the next token x_{t+1}, and the label:
the target's greedy choice after x_{t+1}, which is what SGLang's verify accepts.
`agreement` is the teacher-forced share of positions where a head's drafted
token is that label, per draft step (step k fed step k-1's output one position
earlier, as SGLang's multi-step draft does): the per-token accept rate to expect
before serving. Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

IGNORE = -100


@dataclass
class Traces:
    """ids [N, L] (right-padded), hidden [N, L, D] (what the draft reads at each
    position: D = H, or 3H for EAGLE3's aux states), labels [N, L-1] (the target's
    greedy token after ids[:, 1:]; IGNORE past a sequence's end)."""

    ids: torch.Tensor
    hidden: torch.Tensor
    labels: torch.Tensor

    def rows(self, idx: torch.Tensor | slice) -> Traces:
        return Traces(self.ids[idx], self.hidden[idx], self.labels[idx])


@torch.no_grad()
def greedy_continuations(target, prompts: Sequence[Sequence[int]], new_tokens: int,
                         batch: int = 16) -> list[list[int]]:  # fmt: skip
    """Each prompt followed by the target's greedy continuation, up to and including
    its first end-of-sequence token (left-padded batches)."""
    eos = target.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    out = []
    for i in range(0, len(prompts), batch):
        part = prompts[i : i + batch]
        width = max(len(p) for p in part)
        ids = torch.zeros(len(part), width, dtype=torch.long)
        mask = torch.zeros(len(part), width, dtype=torch.long)
        for j, p in enumerate(part):
            ids[j, width - len(p) :] = torch.tensor(list(p))
            mask[j, width - len(p) :] = 1
        dev = target.device
        y = target.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                            max_new_tokens=new_tokens, do_sample=False, pad_token_id=0)  # fmt: skip
        for j, p in enumerate(part):
            new = y[j, width:].cpu().tolist()
            stop = next((k + 1 for k, t in enumerate(new) if t in eos), len(new))
            out.append(list(p) + new[:stop])
    return out


@torch.no_grad()
def teacher_traces(target, sequences: Sequence[Sequence[int]],
                   aux_ids: Sequence[int] | None = None) -> Traces:  # fmt: skip
    """The traces of `sequences`: with `aux_ids`, hidden is the residual stream after
    those layers, concatenated (transformers' hidden_states[j + 1], the input of
    layer j + 1, which is what SGLang captures for EAGLE3); else the last hidden
    state after the final norm (what SGLang hands a NextN draft)."""
    n, length = len(sequences), max(len(s) for s in sequences)
    ids = torch.zeros(n, length, dtype=torch.long)
    valid = torch.zeros(n, length, dtype=torch.bool)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(list(s))
        valid[i, : len(s)] = True
    ids, valid = ids.to(target.device), valid.to(target.device)
    # right padding: causal attention keeps every real position's state exact
    if aux_ids is None:
        hidden = target.model(input_ids=ids).last_hidden_state
        greedy = target.lm_head(hidden).argmax(-1)
    else:
        out = target(input_ids=ids, output_hidden_states=True)
        hidden = torch.cat([out.hidden_states[j + 1] for j in aux_ids], dim=-1)
        greedy = out.logits.argmax(-1)
    # the draft at t sees x_{t+1}; its label is the target's choice at t+1
    labels = torch.where(valid[:, 1:], greedy[:, 1:], torch.full_like(greedy[:, 1:], IGNORE))
    return Traces(ids=ids, hidden=hidden, labels=labels)


def unrolled(head, tr: Traces, steps: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:  # noqa: ANN001
    """(step k, drafted logits [B, T-k, V'], labels [B, T-k]) for k = 0..steps-1. Step
    k+1 reads the same next tokens with step k's output, one position earlier, as
    its hidden input (SGLang's chained draft). `head.step(hidden, next_ids,
    positions, cache)` returns (state for the logits, state for the next step);
    `cache`, one list across the steps, is the head's to keep its earlier steps'
    keys in (an EAGLE3 head attends to them as served; a NextN head ignores it)."""
    nxt = tr.ids[:, 1:]
    pos = torch.arange(nxt.shape[1], device=nxt.device).expand_as(nxt)
    hidden = tr.hidden[:, :-1]
    cache: list = []
    for k in range(steps):
        for_logits, carried = head.step(hidden, nxt, pos, cache)
        yield k, head.logits(for_logits[:, k:]), tr.labels[:, k:]
        hidden = torch.cat([carried[:, :1], carried[:, :-1]], dim=1)


@torch.no_grad()
def agreement(head, tr: Traces, steps: int = 1) -> list[float]:  # noqa: ANN001
    """Per draft step, teacher-forced: the share of positions whose drafted token
    (through the head's draft vocabulary, if any) is the target's greedy label."""
    head.eval()
    rates = []
    for _, logits, labels in unrolled(head, tr, steps):
        drafted = head.target_ids(logits.argmax(-1))
        mask = labels != IGNORE
        rates.append(float((drafted[mask] == labels[mask]).float().mean()))
    return rates
