"""Request checks SGLang 0.5.23 does not make, as plain functions.

Where it sits: `patches/request_validation.py` calls these from SGLang's
tokenizer manager, before a request is sent to the scheduler; a message
returned here becomes SGLang's HTTP 400 (its ValueError path). Each message
names the field to change. Never imports sglang.

Why: a prompt given as token ids reaches the model's embedding unchecked, and
one id outside the vocabulary kills the scheduler on the CPU (IndexError) or
trips a device-side assert on a GPU -- the whole server and every request in
flight with it.
"""

from __future__ import annotations

from collections.abc import Sequence


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
