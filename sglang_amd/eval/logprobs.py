"""What `eval compare` asks a server: greedy continuations and teacher-forced log-probabilities.

Where it sits: the only module of `eval compare` that speaks HTTP. It uses
SGLang's native `/generate` with token ids (no chat template, no tokenizer
round trip), greedy and `ignore_eos`, and `return_logprob` with the top-K of
every position:

  generate(base, prompts, n, k)        each prompt's greedy continuation of n tokens,
                                       with the decode-time log-probabilities
  score(base, sequences, starts, k)    teacher-forced (prefill) log-probabilities of
                                       every token from `start` on

SGLang caps the radix-prefix reuse of a request at its `logprob_start_len`, so
a scored position is always computed by a prefill, never read from the cache of
an earlier decode. Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import requests

TIMEOUT_S = 3600


@dataclass
class Position:
    """One scored token: its log-probability and the top-K (token id, log-probability)."""

    token: int
    logprob: float
    top: list[tuple[int, float]]

    @property
    def argmax(self) -> int:
        return self.top[0][0]


@dataclass
class Generated:
    prompt: list[int]
    output: list[int]
    positions: list[Position]  # the decode-time log-probability of each output token
    verify_passes: int = 0  # SGLang's speculative verify count (0: not speculating)


@dataclass
class Scored:
    ids: list[int]
    start: int  # ids[start] is the first scored token
    positions: list[Position]  # positions[i] scores ids[start + i] given ids[: start + i]


class ServerAnswerError(RuntimeError):
    """The server refused or mangled a request; carries what it said."""


def _positions(tokens: Sequence, tops: Sequence) -> list[Position]:
    out = []
    for (lp, tok, *_), top in zip(tokens, tops, strict=True):
        if lp is None:  # the first token of a sequence has no log-probability
            continue
        out.append(Position(int(tok), float(lp), [(int(t), float(v)) for v, t, *_ in top]))
    return out


def _post(base: str, body: dict) -> list[dict]:
    try:
        r = requests.post(f"{base}/generate", json=body, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise ServerAnswerError(f"{base}/generate: {exc!r}") from exc
    if r.status_code != 200:
        raise ServerAnswerError(f"{base}/generate answered HTTP {r.status_code}: {r.text[:300]}")
    out = r.json()
    return out if isinstance(out, list) else [out]


def flush_cache(base: str) -> None:
    """Drop the radix cache, so each configuration starts from the same state."""
    try:
        requests.post(f"{base}/flush_cache", timeout=60)
    except requests.RequestException:
        pass  # an OpenAI-only server has none; scoring never reads the cache anyway


def generate(
    base: str, prompts: Sequence[list[int]], max_new_tokens: int, top_k: int
) -> list[Generated]:
    body = {
        "input_ids": [list(p) for p in prompts],
        "sampling_params": {
            "temperature": 0.0,
            "max_new_tokens": max_new_tokens,
            "ignore_eos": True,
        },
        "return_logprob": True,
        "top_logprobs_num": top_k,
        "logprob_start_len": -1,
    }
    answers = _post(base, body)
    out = []
    for prompt, ans in zip(prompts, answers, strict=True):
        meta = ans["meta_info"]
        positions = _positions(meta["output_token_logprobs"], meta["output_top_logprobs"])
        output = [p.token for p in positions]
        if len(output) != max_new_tokens:
            raise ServerAnswerError(f"{base}: asked {max_new_tokens} tokens, got {len(output)}")
        out.append(Generated(list(prompt), output, positions, int(meta.get("spec_verify_ct") or 0)))
    return out


def score(
    base: str, sequences: Sequence[list[int]], starts: Sequence[int], top_k: int
) -> list[Scored]:
    """Teacher-forced log-probabilities of sequences[i][starts[i]:] (each start >= 1)."""
    body = {
        "input_ids": [list(s) for s in sequences],
        "sampling_params": {"temperature": 0.0, "max_new_tokens": 0},
        "return_logprob": True,
        "top_logprobs_num": top_k,
        # SGLang's start is the first position it reports; position p's entry scores
        # token p given the tokens before it (None at position 0).
        "logprob_start_len": [int(s) - 1 for s in starts],
    }
    answers = _post(base, body)
    out = []
    for ids, start, ans in zip(sequences, starts, answers, strict=True):
        meta = ans["meta_info"]
        positions = _positions(meta["input_token_logprobs"], meta["input_top_logprobs"])
        positions = positions[-(len(ids) - start) :]
        if [p.token for p in positions] != list(ids[start:]):
            raise ServerAnswerError(f"{base}: scored tokens are not the ones sent")
        out.append(Scored(list(ids), start, positions))
    return out
