"""Request checks SGLang 0.5.23 does not make, as plain functions.

Where it sits: `patches/request_validation.py` calls these from SGLang's
tokenizer manager, before a request is sent to the scheduler; a message
returned here becomes SGLang's HTTP 400 (its ValueError path). Each message
names the field to change. Never imports sglang.

Why: each check below stands for a request that, unchecked, took the server
down or answered wrong on SGLang 0.5.23 (found by the fault suite,
`serving/fault_cases.py`):
- a token id outside the vocabulary reaches the embedding: IndexError on the
  CPU, a device-side assert on a GPU, and the scheduler dies;
- a prompt that tokenizes to nothing (`"text": ""` on a tokenizer without BOS)
  reaches the model as a zero-token sequence and the scheduler dies in RoPE;
- more top logprobs than the vocabulary holds: `topk` out of range in the
  sampler, the scheduler dies;
- a `stop_regex` that does not compile: HTTP 500 instead of a 400;
- a `logit_bias` beyond float32's range turns the logits into inf/NaN and the
  request is answered with token 0 every step, silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

# A bias of 1e9 already forces or bans a token against any logit a model
# produces; larger ones can only overflow float32 once divided by a small
# temperature (SGLang samples down to 1e-6), which yields NaN probabilities.
LOGIT_BIAS_LIMIT = 1e9


def token_id_problem(input_ids: Sequence[object] | None, vocab_size: int) -> str | None:
    """Why `input_ids` cannot be embedded by a model of `vocab_size` (None: they can)."""
    if input_ids is None:
        return None
    for pos, tid in enumerate(input_ids):
        # bool is an int subclass, but True as a token id is a client bug.
        if isinstance(tid, bool) or not isinstance(tid, int):
            return (
                f"input_ids (the prompt's token ids) must be integers; position {pos} "
                f"holds {type(tid).__name__} {tid!r}"
            )
        if not 0 <= tid < vocab_size:
            return (
                f"input_ids (the prompt's token ids) holds token id {tid} at position {pos}, "
                f"outside this model's vocabulary [0, {vocab_size})"
            )
    return None


def empty_prompt_problem(input_ids: Sequence[object] | None) -> str | None:
    """Why a prompt of `input_ids` (after tokenization) cannot be served."""
    if input_ids is not None and len(input_ids) == 0:
        return (
            "the prompt (text / prompt / input_ids) holds no token after tokenization; "
            "send at least one token"
        )
    return None


def top_logprobs_problem(top_logprobs_num: object, vocab_size: int) -> str | None:
    """Why `top_logprobs_num` alternatives per token cannot be returned."""
    if isinstance(top_logprobs_num, int) and top_logprobs_num > vocab_size:
        return (
            f"top_logprobs_num (OpenAI: `logprobs` for completions, `top_logprobs` for chat) "
            f"asks for {top_logprobs_num} alternatives per token; this model's vocabulary "
            f"holds {vocab_size}"
        )
    return None


def stop_regex_problem(stop_regex: object) -> str | None:
    """Why `stop_regex` (a pattern or a list of them) cannot be used."""
    patterns = [stop_regex] if isinstance(stop_regex, str) else stop_regex
    if not patterns:
        return None
    if not isinstance(patterns, list):
        return f"stop_regex must be a string or a list of strings, not {type(stop_regex).__name__}"
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str):
            return f"stop_regex[{i}] must be a string, not {type(pattern).__name__}"
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"stop_regex[{i}] {pattern!r} is not a valid regular expression: {exc}"
    return None


def logit_bias_problem(logit_bias: object) -> str | None:
    """Why `logit_bias` (token id -> bias) would make the logits non-finite."""
    if not isinstance(logit_bias, Mapping):
        return None  # absent; SGLang checks its keys and types itself
    for key, bias in logit_bias.items():
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            return f"logit_bias[{key!r}] must be a number, not {type(bias).__name__}"
        if not math.isfinite(bias) or abs(bias) > LOGIT_BIAS_LIMIT:
            return (
                f"logit_bias[{key!r}] is {bias}; biases must lie in "
                f"[-{LOGIT_BIAS_LIMIT:g}, {LOGIT_BIAS_LIMIT:g}] (OpenAI documents [-100, 100]; "
                "larger values overflow float32 into NaN)"
            )
    return None
