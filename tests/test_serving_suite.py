"""The load-and-fault suite's parts that need no server: the workload, the cases,
the figures' report and `sglang-amd bench serve`'s arguments.

The suite itself runs against a live server in `test_e2e_serve.py`.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from sglang_amd import cli
from sglang_amd.bench import serve as bench_serve
from sglang_amd.serving import fault_suite
from sglang_amd.serving.fault_cases import REFUSED, SERVED, fault_cases
from sglang_amd.serving.load import percentile, workload


def test_workload_mixes_lengths_streaming_and_shared_prefixes():
    reqs = workload(90, seed=3, max_tokens=(1, 8))
    assert workload(90, seed=3, max_tokens=(1, 8)) == reqs  # a figure can be rerun
    assert workload(90, seed=4, max_tokens=(1, 8)) != reqs
    assert sum(r.stream for r in reqs) == 45
    assert {r.max_tokens for r in reqs} == set(range(1, 9))
    lengths = [len(r.prompt.split()) for r in reqs]
    assert min(lengths) < 30 and max(lengths) > 150
    # two thirds start with one of the four shared prefixes, the rest with none of them
    heads = [r.prompt.split()[:40] for r in reqs]
    shared = {tuple(h) for i, h in enumerate(heads) if i % 3}
    assert len(shared) == 4
    assert all(tuple(h) not in shared for i, h in enumerate(heads) if i % 3 == 0)


@pytest.mark.parametrize(
    "values,q,want",
    [([3.0, 1.0, 2.0], 0.5, 2.0), ([5.0], 0.95, 5.0), (list(range(1, 101)), 0.95, 95)],
)
def test_percentile_is_nearest_rank(values, q, want):
    assert percentile(values, q) == want


def test_fault_cases_are_named_once_and_carry_what_their_check_needs():
    cases = fault_cases(vocab_size=1000, context_len=256)
    assert len({c.name for c in cases}) == len(cases)
    assert {c.expect for c in cases} == {REFUSED, SERVED}
    for c in cases:
        body = json.loads(c.payload("m")) if c.raw is None else None
        if body is not None and c.endpoint.startswith("/v1/"):
            assert body["model"] == "m"
        if c.killed:  # what once killed the server is refused now, by a named field
            assert c.expect == REFUSED and c.field
    by_name = {c.name: c for c in cases}
    assert by_name["token id = vocab"].body["input_ids"] == [1, 1000]
    assert by_name["last vocabulary id"].body["input_ids"][0] == 999
    assert len(by_name["prompt ids beyond context"].body["prompt"]) > 256
    with pytest.raises(ValueError):
        json.loads(by_name["temperature NaN"].payload("m"), parse_constant=_no_nan)


def _no_nan(token):
    raise ValueError(token)


def _synthetic_result() -> dict:
    outcome = fault_suite.CaseOutcome(
        "empty text", "/generate", REFUSED, 400, "the prompt | holds no token", True, True,
        "killed the scheduler", 0.01,
    )  # fmt: skip
    load = fault_suite.LoadFigures(
        10, 5, 6, 0, [], [], 3.0, 1.0, 2.0, 2.5, 0.5, 2**30, 2**30 + 5, [1.0, 2.0], [0.4, 0.5]
    )
    kv = fault_suite.KvFigures(
        1024, 3, 409, 0, [], 2, 1, 400, "Input length exceeds", "length", 22, 64, 1, 2, 1
    )
    term = fault_suite.SigtermFigures(6, 6, 0, 0, 0, 0, 9.4, 120.0, True)
    disc = fault_suite.DisconnectFigures(4, 2000, 0.5, True, True)
    fuzz = fault_suite.FuzzFigures([outcome], "Paris", "Paris", True)
    r = {"args": ["--device", "cpu"], "load": load, "fuzz": fuzz, "disconnect": disc, "kv": kv,
         "sigterm": term}  # fmt: skip
    return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in r.items()}


def test_bench_serve_report_states_every_figure(tmp_path):
    r = _synthetic_result()
    text = bench_serve.table(r, "header")
    for want in ("10 (5 streamed, 6 behind a shared prefix)", "1.0 / 2.0 / 2.5 s",
                 "exit code 0", "22 of 64 tokens", "empty text"):  # fmt: skip
        assert want in text, want
    md = bench_serve.markdown(r, "header")
    assert "| empty text | `/generate` | refused | 400 |" in md
    assert "the prompt / holds" in md  # a '|' in a message cannot break the table
    json_path, _ = bench_serve.write(r, tmp_path, "header")
    assert json.loads(json_path.read_text())["load"]["lost"] == 0


def test_bench_serve_passes_what_follows_the_double_dash_to_serve(monkeypatch, tmp_path):
    seen = {}

    def fake_run(serve_args, size, out):
        seen.update(args=serve_args, size=size)
        return {**_synthetic_result(), "args": serve_args}

    monkeypatch.setattr(bench_serve, "run", fake_run)
    argv = [
        "bench",
        "serve",
        "--size",
        "ci",
        "--out",
        str(tmp_path),
        "--",
        "--model-path",
        "x",
        "--size",
        "7",
    ]
    assert cli.main(argv) == 0
    assert seen == {"args": ["--model-path", "x", "--size", "7"], "size": fault_suite.CI}
    assert (tmp_path / "serve.md").exists()
