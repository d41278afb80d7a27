"""Refuse, with HTTP 400, a request whose token ids the model cannot embed.

SGLang 0.5.23 checks a prompt's length (`TokenizerManager._validate_one_request`)
but not the values of token ids a client sends (`input_ids`, or an OpenAI
`prompt` given as a list of ids): one id outside [0, vocab) reaches the
embedding and kills the scheduler, taking down the server and every request in
flight. There is no request-validation extension point, so one AROUND hook on
that method runs our checks (`serving/validation.py`) first; SGLang turns the
ValueError into a 400 naming the field, as for its own length check, and the
request never reaches the scheduler. Multimodal requests are left to SGLang:
their processors put placeholder ids in the prompt that are not vocabulary ids.
Runs in whichever process holds the tokenizer manager (HTTP server or Engine).
"""

from __future__ import annotations

from sglang_amd.serving.validation import token_id_problem

TARGET = "sglang.srt.managers.tokenizer_manager.TokenizerManager._validate_one_request"
TARGETS = {TARGET: ("self", "obj", "input_ids")}


def _validate_one_request(original, self, obj, input_ids):
    if not obj.contains_mm_input() and getattr(obj, "input_embeds", None) is None:
        problem = token_id_problem(input_ids, self.model_config.vocab_size)
        if problem:
            raise ValueError(problem)
    return original(self, obj, input_ids)


def register() -> None:
    """Register the hook with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(__name__, {TARGET: _validate_one_request})
