"""`sglang-amd eval gsm8k` without SGLang: parsing, intervals, the paired test, and a
whole run against a stand-in OpenAI server. The run against a real SGLang server is in
`test_e2e_serve.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sglang_amd import cli
from sglang_amd.eval import gsm8k
from sglang_amd.eval.stats import mcnemar_exact, wilson_interval
from tests.stand_in_http import JsonServer

DATA = Path(__file__).parent / "data" / "gsm8k"


@pytest.mark.parametrize(
    "text,want",
    [
        (" She makes 9 * 2 = $18.\n#### 18", 18.0),
        (" 1,234 apples and then 5,000.5", 5000.5),
        (" The loss is -7.", -7.0),
        (" 12\n\nQuestion: what is 99?", 12.0),  # the model's own next question is cut
        (" no number here", None),
    ],
)
def test_the_prediction_is_the_last_number_before_a_next_question(text, want):
    assert gsm8k.predicted(text) == want


def test_data_and_prompt_follow_the_gsm8k_format(tmp_path):
    test = gsm8k.load(DATA / "test_first16.jsonl")
    shots = gsm8k.load(DATA / "train_first8.jsonl")
    assert len(test) == 16 and len(shots) == 8
    assert gsm8k.gold(test[0]["answer"]) == 18.0  # Janet's ducks
    p = gsm8k.prompt(shots[:2], test[0]["question"])
    assert p.count("Question: ") == 3 and p.endswith("\nAnswer:")
    assert shots[1]["answer"] in p
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(ValueError, match="#### N"):
        gsm8k.load(bad)


def test_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(81, 100)
    assert lo == pytest.approx(0.7222, abs=1e-4) and hi == pytest.approx(0.8749, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize(
    "a,b,p", [(0, 0, 1.0), (3, 3, 1.0), (0, 6, 0.03125), (1, 9, 0.021484375), (10, 2, 0.0385)]
)
def test_mcnemar_exact(a, b, p):
    assert mcnemar_exact(a, b) == pytest.approx(p, abs=1e-4)
    assert mcnemar_exact(b, a) == pytest.approx(p, abs=1e-4)


def _answer(wrong: bool):
    """A stand-in /v1/completions: every question right, or (`wrong`) every odd-numbered one wrong."""

    def post(path: str, body: dict) -> dict:
        question = body["prompt"].rsplit("Question: ", 1)[1]
        rec = next(r for r in gsm8k.load(DATA / "test_first16.jsonl") if r["question"] in question)
        answer = gsm8k.gold(rec["answer"])
        if wrong and int(answer) % 2:
            answer += 1
        out = {"choices": [{"text": f" so {answer:g}."}], "usage": {"completion_tokens": 4}}
        if body.get("return_spec_tokens_details") and not wrong:  # as SGLang speculating
            out["sglext"] = {"spec_tokens_details": {"spec_verify_ct": 2}}
        return out

    return post


@pytest.fixture
def stand_ins():
    servers = [JsonServer(lambda path: {"data": [{"id": "stand-in"}]}, _answer(wrong)) for wrong in (False, True)]
    yield [s.url for s in servers]
    for s in servers:
        s.close()


def test_a_run_grades_pairs_and_reports(stand_ins, tmp_path, capsys):
    right, wrong = stand_ins
    data = DATA / "test_first16.jsonl"
    same = gsm8k.evaluate(right, data, num_questions=12, shots=2, parallel=4, compare_url=right)
    a = same["servers"]["a"]["repeats"][0]
    assert (a["questions"], a["correct"], a["invalid_rate"], a["errors"]) == (12, 12, 0.0, 0)
    assert a["accept_length"] == 2.0  # 4 tokens over 2 verify passes
    assert same["protocol"]["questions"] == 12  # the two shots are not asked
    assert same["paired"][0]["verdict"].startswith("no difference")
    out = tmp_path / "r.json"
    argv = ["eval", "gsm8k", "--base-url", right, "--data", str(data), "--shots", "2",
            "--num-questions", "14", "--compare-url", wrong, "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    odd = sum(int(gsm8k.gold(r["answer"])) % 2 for r in gsm8k.load(data)[2:16])
    b = result["servers"]["b"]["repeats"][0]
    assert b["correct"] == 14 - odd and result["paired"][0]["only_a_right"] == odd
    assert b["accept_length"] is None  # a server that does not speculate reports none
    # 3 of 14 questions apart is within noise on so few questions (p = 0.25)
    assert result["paired"][0]["p_value"] == pytest.approx(mcnemar_exact(odd, 0))
    assert "McNemar" in capsys.readouterr().out


def test_paired_verdict_tells_noise_from_a_difference():
    def graded(rights):
        return [gsm8k.Graded(i, 1.0, 1.0 if r else 2.0, r, 0.1, 4) for i, r in enumerate(rights)]

    a = graded([True] * 20)
    assert gsm8k.paired(a, graded([True] * 17 + [False] * 3))["verdict"].startswith("no diff")
    assert gsm8k.paired(a, graded([True] * 12 + [False] * 8))["verdict"].startswith("different")
