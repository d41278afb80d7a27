"""`sglang-amd eval gsm8k`: few-shot GSM8K against any OpenAI-compatible server.

Where it sits: a client of `/v1/completions` (SGLang's, or any server's). It
builds the usual few-shot prompt ("Question: ...\\nAnswer: ..." blocks, greedy,
stop at the next "Question:"), takes the last number of the answer as the
prediction (none: invalid), and reports accuracy with a Wilson interval, the
invalid rate, latency and (SGLang speculating) the accept length, per repeat. With a second server it asks both the
same questions and says, by the exact McNemar test on the questions only one
of them got right, whether their difference is noise. Questions come from a
local JSONL in the GSM8K format (`{"question", "answer": "... #### N"}`);
few-shot examples from a second file, or from the head of the first (those
are then not asked). Never imports sglang.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from sglang_amd.eval.stats import mcnemar_exact, wilson_interval
from sglang_amd.serving.load import percentile

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
NOISE_P = 0.05  # below it the paired difference is reported as real


def load(path: str | Path) -> list[dict]:
    """GSM8K-format records; each must have a question and an answer ending "#### N"."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        rec = json.loads(line)
        if "question" not in rec or "####" not in rec.get("answer", ""):
            raise ValueError(f"{path}:{i + 1}: needs 'question' and an 'answer' with '#### N'")
        out.append(rec)
    return out


def gold(answer: str) -> float:
    return float(answer.split("####")[-1].strip().replace(",", ""))


def predicted(text: str) -> float | None:
    """The last number in a completion (cut at a next "Question:"), or None."""
    numbers = _NUMBER.findall(text.split("Question:")[0])
    return float(numbers[-1].replace(",", "")) if numbers else None


def prompt(shots: list[dict], question: str) -> str:
    blocks = [f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots]
    return "".join(blocks) + f"Question: {question}\nAnswer:"


@dataclass
class Graded:
    index: int
    gold: float
    predicted: float | None
    correct: bool
    latency_s: float
    completion_tokens: int
    error: str = ""
    verify_passes: int = 0  # SGLang speculative verify passes for this answer (0: none reported)


def _model(base_url: str) -> str:
    return requests.get(f"{base_url}/v1/models", timeout=60).json()["data"][0]["id"]


def _verify_passes(out: dict) -> int:
    """SGLang's speculative verify count from `sglext.spec_tokens_details` (0 elsewhere)."""
    details = (out.get("sglext") or {}).get("spec_tokens_details") or {}
    if isinstance(details, list):
        return sum(int(d.get("spec_verify_ct") or 0) for d in details)
    return int(details.get("spec_verify_ct") or 0)


def _ask(base_url: str, model: str, text: str, max_tokens: int) -> tuple[str, int, float, str, int]:
    # return_spec_tokens_details is SGLang's extension (accept length); others ignore it.
    body = {"model": model, "prompt": text, "max_tokens": max_tokens, "temperature": 0,
            "stop": ["Question:", "\n\n\n"], "return_spec_tokens_details": True}  # fmt: skip
    t0 = time.monotonic()
    try:
        r = requests.post(f"{base_url}/v1/completions", json=body, timeout=1800)
    except requests.RequestException as exc:
        return "", 0, time.monotonic() - t0, repr(exc)[:200], 0
    if r.status_code != 200:
        return "", 0, time.monotonic() - t0, f"HTTP {r.status_code}: {r.text[:200]}", 0
    out = r.json()
    tokens = int(out.get("usage", {}).get("completion_tokens", 0))
    return out["choices"][0]["text"], tokens, time.monotonic() - t0, "", _verify_passes(out)


def run_once(
    base_url: str, questions: list[dict], shots: list[dict], parallel: int, max_tokens: int
) -> list[Graded]:
    """Every question once, `parallel` in flight, graded in question order."""
    model = _model(base_url)

    def one(i: int) -> Graded:
        q = questions[i]
        text, tokens, latency, error, passes = _ask(
            base_url, model, prompt(shots, q["question"]), max_tokens
        )
        pred = predicted(text) if not error else None
        g = gold(q["answer"])
        ok = pred is not None and abs(pred - g) < 1e-6
        return Graded(i, g, pred, ok, latency, tokens, error, passes)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        it = pool.map(one, range(len(questions)))
        return list(tqdm(it, total=len(questions), desc=base_url, leave=False))


def summary(graded: list[Graded]) -> dict:
    n = len(graded)
    correct = sum(g.correct for g in graded)
    lo, hi = wilson_interval(correct, n)
    spec = [g for g in graded if g.verify_passes]
    passes = sum(g.verify_passes for g in spec)
    return {
        "questions": n,
        "correct": correct,
        "accuracy": correct / n if n else float("nan"),
        "interval_95": [lo, hi],
        "invalid_rate": sum(g.predicted is None for g in graded) / n if n else float("nan"),
        "errors": sum(bool(g.error) for g in graded),
        "latency_p50_s": percentile([g.latency_s for g in graded], 0.5),
        "completion_tokens": sum(g.completion_tokens for g in graded),
        # tokens committed per target verify pass, over the answers that report it
        "accept_length": sum(g.completion_tokens for g in spec) / passes if passes else None,
    }


def paired(a: list[Graded], b: list[Graded]) -> dict:
    """McNemar on the same questions: only-A-right against only-B-right."""
    only_a = sum(x.correct and not y.correct for x, y in zip(a, b, strict=True))
    only_b = sum(y.correct and not x.correct for x, y in zip(a, b, strict=True))
    p = mcnemar_exact(only_a, only_b)
    verdict = "no difference (within noise)" if p >= NOISE_P else "different (p < 0.05)"
    return {"only_a_right": only_a, "only_b_right": only_b, "p_value": p, "verdict": verdict}


def evaluate(
    base_url: str,
    data: str | Path,
    shots_data: str | Path | None = None,
    num_questions: int = 200,
    shots: int = 5,
    parallel: int = 16,
    repeats: int = 1,
    max_tokens: int = 256,
    compare_url: str | None = None,
) -> dict:
    """The whole evaluation as a JSON-ready dict (protocol, per-repeat figures, pairing)."""
    records = load(data)
    pool = load(shots_data) if shots_data else records[:shots]
    asked = records if shots_data else records[shots:]
    questions = asked[:num_questions]
    few = pool[:shots]
    result: dict = {
        "protocol": {
            "data": str(data),
            "shots_data": str(shots_data or data),
            "shots": shots,
            "questions": len(questions),
            "repeats": repeats,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stop": ["Question:", "\n\n\n"],
        },  # fmt: skip
        "servers": {},
    }
    runs: dict[str, list[list[Graded]]] = {}
    for name, url in (("a", base_url), ("b", compare_url)):
        if url is None:
            continue
        runs[name] = [run_once(url, questions, few, parallel, max_tokens) for _ in range(repeats)]
        result["servers"][name] = {
            "url": url,
            "repeats": [summary(g) for g in runs[name]],
            "graded": [[asdict(x) for x in g] for g in runs[name]],
        }
    if compare_url is not None:
        result["paired"] = [paired(a, b) for a, b in zip(runs["a"], runs["b"], strict=True)]
    return result


def table(result: dict) -> str:
    lines = [
        f"GSM8K {result['protocol']['shots']}-shot, {result['protocol']['questions']} questions"
    ]
    for name, server in result["servers"].items():
        for i, s in enumerate(server["repeats"]):
            lo, hi = s["interval_95"]
            lines.append(
                f"{name} {server['url']} repeat {i + 1}: accuracy {s['accuracy']:.3f} "
                f"[{lo:.3f}, {hi:.3f}] ({s['correct']}/{s['questions']}), invalid "
                f"{s['invalid_rate']:.3f}, errors {s['errors']}, p50 {s['latency_p50_s']:.1f} s"
                + (f", accept length {s['accept_length']:.2f}" if s["accept_length"] else "")
            )
    for i, p in enumerate(result.get("paired", [])):
        lines.append(
            f"paired repeat {i + 1}: only a right {p['only_a_right']}, only b right "
            f"{p['only_b_right']}, McNemar p {p['p_value']:.3f}: {p['verdict']}"
        )
    return "\n".join(lines)
