"""Hugging Face transformers' own float32 forward: the independent e2e oracle.

Teacher-forced log-probabilities and greedy continuations of token-id prompts,
computed by transformers (no SGLang code involved), plus the SGLang calls that
produce the same quantities, so each e2e test compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A long shared prefix (~150 tokens) so later prompts hit SGLang's radix cache.
SHARED_PREFIX = (
    "The following is a conversation between a helpful assistant and a user. The "
    "assistant answers questions about geography, history, science and programming. "
    "It is careful, concise and polite, and it explains its reasoning step by step "
    "when the question needs it. When it does not know something it says so plainly "
    "instead of guessing. The assistant also knows a lot about cooking, music, sports "
    "and literature, and it enjoys telling short stories when asked. Here is the "
    "user's question, followed by the assistant's answer.\n\nUser:"
)
SHARED_SUFFIXES = [
    " What is the capital of France?\nAssistant:",
    " How many legs does a spider have?\nAssistant:",
    " Write a Python function that reverses a list.\nAssistant:",
    " Who wrote the play Hamlet?\nAssistant:",
]
OTHER_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "Water boils at a temperature of",
    "In mathematics, a prime number is",
]


@dataclass
class Prompt:
    ids: list[int]
    shared_prefix_len: int  # 0 when the prompt does not share the long prefix


def build_prompts(tokenizer) -> list[Prompt]:
    """Token-id prompts; the shared-prefix ones share exactly `shared_prefix_len` ids."""
    prefix_ids = tokenizer(SHARED_PREFIX, add_special_tokens=False)["input_ids"]
    prompts = [
        Prompt(prefix_ids + tokenizer(s, add_special_tokens=False)["input_ids"], len(prefix_ids))
        for s in SHARED_SUFFIXES
    ]
    prompts += [
        Prompt(tokenizer(p, add_special_tokens=False)["input_ids"], 0) for p in OTHER_PROMPTS
    ]
    return prompts


class HFOracle:
    """transformers' float32 model: logprobs and greedy tokens."""

    def __init__(self, model_path: str):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.model.eval()
        self.eos = self.model.generation_config.eos_token_id

    @torch.no_grad()
    def token_logprobs(self, ids: list[int]) -> list[float]:
        """logprob of ids[i] given ids[:i], for i = 1..len-1."""
        logits = self.model(torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        return [logp[i - 1, ids[i]].item() for i in range(1, len(ids))]

    @torch.no_grad()
    def greedy(self, ids: list[int], max_new_tokens: int) -> list[int]:
        out = self.model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.eos if isinstance(self.eos, int) else self.eos[0],
        )
        new = out[0, len(ids) :].tolist()
        eos = {self.eos} if isinstance(self.eos, int) else set(self.eos)
        for i, t in enumerate(new):
            if t in eos:
                return new[: i + 1]
        return new


def sglang_logprobs(engine, prompt: Prompt) -> tuple[list[float], int, int]:
    """SGLang's teacher-forced logprobs for the prompt, from `start` on.

    Shared-prefix prompts ask only for the tokens after the prefix, which lets
    the scheduler reuse the cached prefix (it cannot reuse KV of tokens whose
    logprobs it must recompute). Returns (logprobs of ids[start:], start,
    cached_tokens).
    """
    # SGLang gives no logprob for the first scored token, so start one early.
    start = max(prompt.shared_prefix_len - 1, 0)
    out = engine.generate(
        input_ids=prompt.ids,
        sampling_params={"temperature": 0, "max_new_tokens": 1},
        return_logprob=True,
        logprob_start_len=start,
    )
    meta = out["meta_info"]
    entries = meta["input_token_logprobs"]
    ids = [e[1] for e in entries]
    assert ids == prompt.ids[start:], "SGLang scored different tokens than asked"
    assert entries[0][0] is None and all(e[0] is not None for e in entries[1:])
    return [e[0] for e in entries[1:]], start + 1, meta["cached_tokens"]


def sglang_greedy(engine, prompt: Prompt, max_new_tokens: int) -> list[int]:
    out = engine.generate(
        input_ids=prompt.ids,
        sampling_params={"temperature": 0, "max_new_tokens": max_new_tokens},
    )
    return out["output_ids"]


def logprob_errors(engine, hf_oracle, prompts):
    """Per-prompt max |Δlogprob| against HF fp32, and the cached-token counts."""
    errors, cached = [], []
    for p in prompts:
        got, start, cached_tokens = sglang_logprobs(engine, p)
        want = hf_oracle.token_logprobs(p.ids)[start - 1 :]
        assert len(got) == len(want) > 0
        errors.append([abs(a - b) for a, b in zip(got, want, strict=True)])
        cached.append(cached_tokens)
    return errors, cached


def summarize(errors):
    flat = [e for row in errors for e in row]
    return max(flat), sum(flat) / len(flat)


def check_fp32_against_hf(engine, oracle, prompts, greedy_tokens: int = 16) -> None:
    """The float32 bar: teacher-forced logprobs within 1e-3 of HF fp32, the shared-prefix
    prompts scored from the radix cache, and greedy output token-identical to HF."""
    errors, cached = logprob_errors(engine, oracle, prompts)
    worst, mean = summarize(errors)
    print(f"fp32 vs HF fp32: max |dlogprob| {worst:.2e}, mean {mean:.2e}")
    assert worst <= 1e-3
    shared = [c for p, c in zip(prompts, cached, strict=True) if p.shared_prefix_len]
    assert shared[1:] and all(c > 0 for c in shared[1:]), cached
    mismatched = [
        i
        for i, p in enumerate(prompts)
        if sglang_greedy(engine, p, greedy_tokens) != oracle.greedy(p.ids, greedy_tokens)
    ]
    assert not mismatched, f"greedy differs from HF fp32 on prompts {mismatched}"
