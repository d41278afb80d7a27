"""Concurrent load against an OpenAI-compatible server, and answers compared with solo runs.

Where it sits: `fault_suite.py` drives a live server with the workload made
here (`workload`: prompts of mixed lengths, a third of them without a shared
prefix and the rest behind one of a few long shared prefixes so the radix cache
serves them, streaming and non-streaming alternating, output lengths mixed),
sends it all at once (`send_all`), then sends each request again alone
(`send_each_alone`) and counts the answers that differ. Greedy decoding in float32
must give the same text batched or alone. Never imports sglang.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, replace

import requests

# Plain words, so that every prompt tokenizes without surprises on any tokenizer.
_WORDS = (
    "the of and a to in is you that it he was for on are as with his they at be this have "
    "from or one had by word but not what all were we when your can said there use an each "
    "which she do how their if will up other about out many then them these so some her "
    "would make like him into time has look two more write go see number no way could "
    "people my than first water been call who oil its now find long down day did get come "
    "made may part river stone light green small house table garden window music paper"
).split()


@dataclass(frozen=True)
class LoadRequest:
    prompt: str | list[int]  # text, or token ids
    max_tokens: int
    stream: bool
    shared_prefix: bool = False  # starts with a prefix other requests share


@dataclass
class Answer:
    status: int | None  # HTTP status; None: no response (connection lost)
    text: str
    latency_s: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def workload(
    n: int,
    seed: int = 0,
    max_tokens: tuple[int, int] = (1, 8),
    prompt_words: tuple[int, int] = (2, 120),
    shared_prefixes: int = 4,
    prefix_words: tuple[int, int] = (40, 120),
) -> list[LoadRequest]:
    """`n` requests: mixed prompt and output lengths, two thirds behind a shared prefix."""
    rng = random.Random(seed)
    prefixes = [_words(rng, rng.randint(*prefix_words)) for _ in range(shared_prefixes)]
    out = []
    for i in range(n):
        body = _words(rng, rng.randint(*prompt_words))
        shared = i % 3 != 0
        prompt = f"{prefixes[i % shared_prefixes]} {body}" if shared else body
        out.append(LoadRequest(prompt, rng.randint(*max_tokens), i % 2 == 1, shared))
    return out


def send_one(base: str, model: str, req: LoadRequest, timeout_s: float = 600.0) -> Answer:
    """One greedy /v1/completions request; a streamed answer is joined from its chunks."""
    body = {
        "model": model,
        "prompt": req.prompt,
        "max_tokens": req.max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": req.stream,
    }
    t0 = time.monotonic()
    try:
        with requests.post(
            f"{base}/v1/completions", json=body, stream=req.stream, timeout=timeout_s
        ) as r:
            if r.status_code != 200:
                return Answer(r.status_code, "", time.monotonic() - t0, r.text[:300])
            if not req.stream:
                return Answer(200, r.json()["choices"][0]["text"], time.monotonic() - t0)
            text, done = [], False
            for line in r.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    return Answer(200, "".join(text), time.monotonic() - t0, str(chunk)[:300])
                text += [c.get("text") or "" for c in chunk.get("choices", [])]
            error = "" if done else "stream ended without [DONE]"
            return Answer(200, "".join(text), time.monotonic() - t0, error)
    except requests.RequestException as exc:
        return Answer(None, "", time.monotonic() - t0, repr(exc)[:300])


class InFlight:
    """Requests sent at once, one client thread each, released together by a barrier;
    the caller may watch the server while they run, then `join`."""

    def __init__(self, base: str, model: str, reqs: list[LoadRequest]):
        self._answers: list[Answer | None] = [None] * len(reqs)
        start = threading.Barrier(len(reqs))

        def run(i: int) -> None:
            start.wait()
            self._answers[i] = send_one(base, model, reqs[i])

        self._threads = [
            threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(reqs))
        ]
        for t in self._threads:
            t.start()

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout_s: float | None = None) -> list[Answer]:
        """Every answer in request order; a request still unanswered after `timeout_s`
        (per thread) counts as lost."""
        for t in self._threads:
            t.join(timeout_s)
        lost = Answer(None, "", float("nan"), "no answer (client still waiting, or died)")
        return [a or lost for a in self._answers]


def send_all(base: str, model: str, reqs: list[LoadRequest]) -> list[Answer]:
    """Every request at once (all in flight together); the answers in request order."""
    return InFlight(base, model, reqs).join()


def send_each_alone(base: str, model: str, reqs: list[LoadRequest]) -> list[Answer]:
    """The same requests one after the other, non-streamed: the reference answers."""
    return [send_one(base, model, replace(r, stream=False)) for r in reqs]


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
