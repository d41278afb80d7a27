"""The malformed and edge-case requests of the fault suite, with the answer each must get.

Where it sits: `fault_suite.py` sends every case to a live server, checks the
answer class (refused with a 4xx whose message names `field`, or served with
200), then that the server is still healthy. The cases marked `killed` took an
SGLang 0.5.23 server down (or answered 500 / wrong) before
`serving/validation.py`; the rest are SGLang's own answers, kept so that a
change in SGLang that loses one shows up. Bodies are built per model
(`vocab_size` places ids just inside and outside the vocabulary). Never imports
sglang.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

REFUSED = "refused"  # a 4xx naming `field`
SERVED = "served"  # 200


@dataclass(frozen=True)
class FaultCase:
    name: str
    endpoint: str
    body: dict
    expect: str
    field: str = ""  # text the refusal must contain ("" : SGLang's message names nothing)
    killed: str = ""  # what this request did to an SGLang 0.5.23 server before our checks
    raw: str | None = None  # a body that is not valid JSON, sent as is

    def payload(self, model: str) -> str:
        if self.raw is not None:
            return self.raw
        body = dict(self.body)
        if self.endpoint.startswith("/v1/"):
            body.setdefault("model", model)
        return json.dumps(body)


def _c(prompt: object = "Hello", **kw) -> dict:
    return {"prompt": prompt, "max_tokens": 4, "temperature": 0, **kw}


def _chat(content: object = "Hello", **kw) -> dict:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4, **kw}


def _g(text: object = "Hello", params: dict | None = None, **kw) -> dict:
    return {"text": text, "sampling_params": {"max_new_tokens": 4, **(params or {})}, **kw}


def fault_cases(vocab_size: int, context_len: int) -> list[FaultCase]:
    """Every case for a model with `vocab_size` tokens and `context_len` positions."""
    v, ctx = vocab_size, context_len
    C, CH, G = "/v1/completions", "/v1/chat/completions", "/generate"
    R, S = REFUSED, SERVED
    die = "killed the scheduler (whole server down)"
    # fmt: off
    return [
        # wrong types
        FaultCase("prompt is a number", C, _c(123), R, "prompt"),
        FaultCase("max_tokens is a string", C, _c(max_tokens="four"), R, "max_tokens"),
        FaultCase("temperature is a string", C, _c(temperature="hot"), R, "temperature"),
        FaultCase("stop holds a number", C, _c(stop=[123]), R, "stop"),
        FaultCase("messages is a string", CH, {"messages": "hi", "max_tokens": 4}, R, "messages"),
        FaultCase("message content is a number", CH, _chat(5), R, "messages"),
        FaultCase("message without content", CH, {"messages": [{"role": "user"}]}, R, "messages"),
        FaultCase("unknown role", CH, {"messages": [{"role": "x", "content": "a"}]}, R, "role"),
        FaultCase("tools is a string", CH, _chat(tools="x"), R, "tools"),
        FaultCase("rid is a number", G, _g(rid=5), R, "rid"),
        FaultCase("unknown sampling field", G, _g(params={"bogus": 1}), R, "bogus"),
        FaultCase("not JSON", C, {}, R, "JSON", raw='{"prompt": "Hello", "max_tokens": '),
        # out-of-range token ids
        FaultCase("token id 1e9", C, _c([10**9, 5]), R, "input_ids", die),
        FaultCase("token id -1", C, _c([5, -1]), R, "input_ids", die),
        FaultCase("token id = vocab", G, {"input_ids": [1, v]}, R, "input_ids", die),
        FaultCase("batch with a bad id", C, _c([[5, 5], [v + 7]]), R, "input_ids", die),
        FaultCase("last vocabulary id", G, {"input_ids": [v - 1] * 8}, S),
        FaultCase("token_ids_logprob beyond vocab", G, _g(token_ids_logprob=[v + 3]), R, "token_ids_logprob"),
        FaultCase("stop_token_ids beyond vocab", C, _c(stop_token_ids=[v + 3, -1]), S),
        # NaN, negative and out-of-range sampling parameters
        FaultCase("temperature NaN", C, {}, R, "JSON", raw='{"prompt": "a", "temperature": NaN}'),
        FaultCase("frequency_penalty Infinity", C, {}, R, "JSON", raw='{"prompt": "a", "frequency_penalty": Infinity}'),
        FaultCase("temperature -1", C, _c(temperature=-1), R, "temperature"),
        FaultCase("temperature 1e-30", G, _g(params={"temperature": 1e-30}), S),
        FaultCase("temperature 1e30", G, _g(params={"temperature": 1e30}), S),
        FaultCase("top_p 0", C, _c(top_p=0, temperature=0.7), R, "top_p"),
        FaultCase("top_p 2", C, _c(top_p=2, temperature=0.7), R, "top_p"),
        FaultCase("top_k -5", C, _c(top_k=-5, temperature=0.7), R, "top_k"),
        FaultCase("top_k 1e9", G, _g(params={"top_k": 10**9}), S),
        FaultCase("min_p 5", C, _c(min_p=5, temperature=0.7), R, "min_p"),
        FaultCase("min_p 1", G, _g(params={"min_p": 1.0}), S),
        FaultCase("presence_penalty 1e30", C, _c(presence_penalty=1e30), R, "presence_penalty"),
        FaultCase("repetition_penalty 0", C, _c(repetition_penalty=0), R, "repetition_penalty"),
        FaultCase("logit_bias key beyond vocab", C, _c(logit_bias={str(v + 9): 5}), R, "logit_bias"),
        FaultCase("logit_bias key not a number", C, _c(logit_bias={"abc": 5}), R, ""),
        FaultCase("logit_bias 1e308", G, _g(params={"logit_bias": {"5": 1e308}}), R, "logit_bias", "answered token 0 at every step (NaN logits)"),
        FaultCase("logit_bias -100 / 100", C, _c(logit_bias={"5": -100, "6": 100}), S),
        FaultCase("seed 2**80", C, _c(seed=2**80), R, "seed"),
        FaultCase("seed -1", C, _c(seed=-1, temperature=0.7), S),
        FaultCase("min_tokens > max_tokens", C, _c(min_tokens=10), R, "min_new_tokens"),
        FaultCase("min_tokens -3", C, _c(min_tokens=-3), R, "min_new_tokens"),
        # lengths
        FaultCase("max_tokens -1", C, _c(max_tokens=-1), R, "max_tokens"),
        FaultCase("max_tokens 0", C, _c(max_tokens=0), R, "max_tokens"),
        FaultCase("max_tokens 1e12", C, _c(max_tokens=10**12), R, "context length"),
        FaultCase("max_new_tokens 0", G, _g(params={"max_new_tokens": 0}), S),
        FaultCase("prompt ids beyond context", C, _c([5] * (ctx + 10)), R, "context length"),
        FaultCase("empty prompt", C, _c(""), R, "Prompt"),
        FaultCase("empty id list", C, _c([]), R, "Prompt"),
        FaultCase("empty input_ids", G, {"input_ids": []}, R, "input_ids"),
        FaultCase("empty text", G, _g(""), R, "prompt", die),
        FaultCase("batch with an empty text", G, _g(["", "Hello"]), R, "prompt", die),
        FaultCase("empty messages", CH, {"messages": [], "max_tokens": 4}, R, "Messages"),
        FaultCase("no prompt at all", G, {"sampling_params": {}}, R, "text"),
        # n, logprobs, stop, structured output
        FaultCase("n 3", C, _c(n=3), S),
        FaultCase("n 2 streamed", C, _c(n=2, stream=True), S),
        FaultCase("n 0", C, _c(n=0), R, ""),
        FaultCase("logprobs beyond vocab", C, _c(logprobs=v * 2), R, "top_logprobs_num", die),
        FaultCase("chat top_logprobs beyond vocab", CH, _chat(logprobs=True, top_logprobs=v * 2), R, "top_logprobs_num", die),
        FaultCase("top_logprobs_num beyond vocab", G, _g(return_logprob=True, top_logprobs_num=v * 2), R, "top_logprobs_num", die),
        FaultCase("top_logprobs_num = vocab", G, _g(return_logprob=True, top_logprobs_num=v), S),
        FaultCase("echo with logprobs", C, _c(echo=True, logprobs=2), S),
        FaultCase("logprob_start_len beyond prompt", G, _g(return_logprob=True, logprob_start_len=10**4), R, "logprob_start_len"),
        FaultCase("logprob_start_len 0", G, _g(return_logprob=True, logprob_start_len=0, top_logprobs_num=2), S),
        FaultCase("empty stop string", C, _c(stop=""), S),
        FaultCase("1000 stop strings", C, _c(stop=["x"] * 1000), R, "stop"),
        FaultCase("stop_regex that does not compile", G, _g(params={"stop_regex": "(("}), R, "stop_regex", "answered HTTP 500"),
        FaultCase("regex that does not compile", C, _c(regex="(("), R, "regex"),
        FaultCase("json_schema not JSON", C, _c(json_schema="{not json"), R, "json"),
        FaultCase("ebnf without a rule body", C, _c(ebnf="root ::= "), R, "ebnf"),
        FaultCase("unsupported schema type", CH, _chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}), R, "json"),
        FaultCase("catastrophic regex", C, _c(regex="(a|a)*(a|a)*(a|a)*b"), S),
        # features this server was not started with
        FaultCase("lora_path without --enable-lora", C, _c(lora_path="nope"), R, "enable-lora"),
        FaultCase("return_hidden_states", G, _g(return_hidden_states=True), R, "hidden"),
        FaultCase("input_embeds with the radix cache on", G, {"input_embeds": [[0.0] * 8]}, R, "input_embeds"),
        FaultCase("embeddings on a generation model", "/v1/embeddings", {"input": "hi"}, R, "embedding"),
    ]
    # fmt: on
