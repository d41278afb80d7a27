"""Refuse, with HTTP 400, a request that would kill the scheduler or be answered wrong.

SGLang 0.5.23 checks a prompt's length (`TokenizerManager._validate_one_request`)
but not the requests listed in `serving/validation.py` (token ids outside the
vocabulary, a prompt that tokenizes to nothing, more top logprobs than the
vocabulary, a stop_regex that does not compile, a non-finite logit_bias): each
took the server down, answered 500, or answered wrong. There is no
request-validation extension point, so one AROUND hook on that method runs our
checks first; SGLang turns the ValueError into a 400 naming the field, as for
its own length check, and the request never reaches the scheduler. The method
runs once per prompt, for a batch too. Multimodal requests keep their ids
unchecked: their processors put placeholder ids in the prompt that are not
vocabulary ids. Runs in whichever process holds the tokenizer manager (HTTP
server or Engine).
"""

from __future__ import annotations

from sglang_amd.serving import validation

TARGET = "sglang.srt.managers.tokenizer_manager.TokenizerManager._validate_one_request"
TARGETS = {TARGET: ("self", "obj", "input_ids")}


def _problems(obj, input_ids, vocab_size: int):
    """Each check's finding (None: fine), in order; embedding requests lack the
    generation fields, hence getattr."""
    # A prompt given as embeddings has no ids; a multimodal one holds placeholder ids.
    if getattr(obj, "input_embeds", None) is None:
        yield validation.empty_prompt_problem(input_ids)
        if not obj.contains_mm_input():
            yield validation.token_id_problem(input_ids, vocab_size)
    if getattr(obj, "return_logprob", False):
        yield validation.top_logprobs_problem(getattr(obj, "top_logprobs_num", None), vocab_size)
    params = getattr(obj, "sampling_params", None)
    if isinstance(params, dict):
        yield validation.stop_regex_problem(params.get("stop_regex"))
        yield validation.logit_bias_problem(params.get("logit_bias"))


def _validate_one_request(original, self, obj, input_ids):
    problem = next(filter(None, _problems(obj, input_ids, self.model_config.vocab_size)), None)
    if problem:
        raise ValueError(problem)
    return original(self, obj, input_ids)


def register() -> None:
    """Register the hook with SGLang's HookRegistry (idempotent)."""
    from sglang_amd.patches import register_around_hooks

    register_around_hooks(__name__, {TARGET: _validate_one_request})
