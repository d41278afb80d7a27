"""`sglang-amd serve` over HTTP, under load and faults, on the CPU reference platform.

One real server per variant (its own process group), taken through the
load-and-fault suite of `sglang_amd/serving/fault_suite.py`, CI-sized, in the
order a server can take it: answers (chat, streaming), concurrent load with
prefix sharing compared with solo runs, the malformed-request set, clients
that hang up mid-stream, the KV pool exhausted, and SIGTERM with requests in
flight (the last test: it stops the server). Variants: SmolLM2 (make test),
the tiny Qwen3-MoE through `--moe-runner-backend amd` and SmolLM2 with
speculative decoding (make test-full). Figures for the README come from
`sglang-amd bench serve`, which runs the same phases full-sized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from sglang_amd.bench.serve import vocab_size
from sglang_amd.serving import fault_suite
from sglang_amd.serving.fault_cases import fault_cases
from sglang_amd.serving.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

SIZE = fault_suite.CI
POOL_TOKENS, CONTEXT = 1024, 2048
MIB = 2**20


@dataclass
class Variant:
    name: str
    args: list[str]
    vocab_size: int
    knows_paris: bool
    figures: dict = field(default_factory=dict)  # phase -> figures, shared by the tests


def _variant(name: str, smollm2: str, tmp: Path) -> Variant:
    base = ["--device", "cpu", "--dtype", "float32", "--log-level", "warning",
            "--max-total-tokens", str(POOL_TOKENS), "--context-length", str(CONTEXT)]  # fmt: skip
    if name == "smollm2":
        return Variant(name, base, vocab_size(smollm2), True)
    if name == "moe":
        from tests.tiny_models import tiny_qwen3_moe

        path = str(tiny_qwen3_moe(tmp / "qwen3-moe", smollm2))
        args = ["--model-path", path, "--moe-runner-backend", "amd", *base]
        return Variant(name, args, vocab_size(path), False)
    assert name == "speculative"
    spec = ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", smollm2,
            "--speculative-num-steps", "2", "--speculative-eagle-topk", "1",
            "--speculative-num-draft-tokens", "3"]  # fmt: skip
    return Variant(name, [*base, *spec], vocab_size(smollm2), True)


@pytest.fixture(
    scope="module",
    params=[
        "smollm2",
        pytest.param("moe", marks=pytest.mark.full),
        pytest.param("speculative", marks=pytest.mark.full),
    ],
)
def served(request, smollm2_path, tmp_path_factory):
    # An in-process engine left by an earlier module would share the two cores.
    request.getfixturevalue("engines").close()
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    variant = _variant(request.param, smollm2_path, tmp)
    from tests.e2e_engines import server_env

    env = {k: v for k, v in server_env().items() if k != "SGLANG_AMD_TRACE"}
    server = ServerProcess(variant.args, tmp / "server.log", env)
    yield server, variant
    if server.alive():
        server.kill()


def _phase(served, name: str, run):
    """Each phase runs once per server; its figures are kept for the report."""
    server, variant = served
    if name not in variant.figures:
        variant.figures[name] = f = run(server, variant)
        shown = f"{len(f.outcomes)} cases, failed: {f.failed}" if name == "fuzz" else f
        print(f"\n[{variant.name}] {name}: {shown}")
    return variant.figures[name]


def test_chat_completion_answers_paris(served):
    server, variant = served
    if not variant.knows_paris:
        pytest.skip("a random tiny model knows no capitals")
    r = requests.post(
        f"{server.base}/v1/chat/completions",
        json={
            "model": server.model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
            "max_tokens": 32,
        },
        timeout=300,
    )
    r.raise_for_status()
    assert "Paris" in r.json()["choices"][0]["message"]["content"], r.text


def test_completion_streams(served):
    server, _ = served
    chunks = []
    body = {"model": server.model, "prompt": "The capital of France is", "temperature": 0,
            "max_tokens": 12, "stream": True, "ignore_eos": True}  # fmt: skip
    with requests.post(f"{server.base}/v1/completions", json=body, stream=True, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                chunks.append(line[len("data: ") :])
    assert chunks[-1] == "[DONE]"
    texts = [c["text"] for d in chunks[:-1] for c in json.loads(d)["choices"]]
    assert len([t for t in texts if t]) >= 2, chunks


def test_concurrent_load_loses_nothing_and_matches_solo_answers(served):
    f = _phase(served, "load", lambda s, v: fault_suite.run_load(s, SIZE))
    assert f.lost == 0, f.errors
    assert f.streamed and f.behind_shared_prefix
    assert not f.mismatched, f"answers under load differ from solo ones: {f.mismatched}"
    assert f.rss_peak - f.rss_before < 1024 * MIB, f


def test_malformed_requests_are_refused_clearly_and_the_server_serves_on(served):
    def run(server, variant):
        return fault_suite.run_fuzz(server, fault_cases(variant.vocab_size, CONTEXT))

    f = _phase(served, "fuzz", run)
    lines = [f"{o.name} ({o.endpoint}): expected {o.expect}, got {o.status} {o.message!r}"
             + ("" if o.healthy_after else " -- SERVER DOWN") for o in f.failed]  # fmt: skip
    assert not lines, "\n".join(lines)
    assert len(f.outcomes) == len(fault_cases(served[1].vocab_size, CONTEXT))
    assert f.healthy_at_end and f.probe_after == f.probe_before


def test_clients_hanging_up_mid_stream_free_their_requests(served):
    f = _phase(served, "disconnect", lambda s, v: fault_suite.run_disconnects(s))
    # 4 x 2000 tokens would run for minutes: drained in seconds means SGLang aborted them.
    assert f.drained_s is not None and f.drained_s < 30, f
    assert f.healthy and f.probe_same, f


def test_kv_pool_exhaustion_queues_refuses_or_cuts_clearly(served):
    def run(server, variant):
        return fault_suite.run_kv_exhaustion(server, SIZE, variant.vocab_size)

    f = _phase(served, "kv", run)
    assert f.pool_tokens == POOL_TOKENS
    assert f.lost == 0, f.errors
    assert not f.mismatched, f
    assert f.peak_waiting > 0 and 0 < f.peak_running < f.requests, f  # the pool ran out
    assert f.too_long_status == 400 and "exceeds" in f.too_long_message, f
    assert f.overflow_finish == "length", f
    assert 0 < f.overflow_completion_tokens < f.overflow_max_tokens, f
    assert f.rss_peak - f.rss_before < 1024 * MIB, f
    assert f.rss_after - f.rss_before < 256 * MIB, f


def test_eval_gsm8k_scores_a_live_server_and_finds_it_equal_to_itself(served):
    server, variant = served
    if variant.name == "moe":
        pytest.skip("a random tiny model answers nothing; the client is the same")
    from sglang_amd.eval import gsm8k

    data = Path(__file__).parent / "data" / "gsm8k"
    result = gsm8k.evaluate(
        server.base, data / "test_first16.jsonl", data / "train_first8.jsonl",
        num_questions=2, shots=1, parallel=2, max_tokens=64, compare_url=server.base,
    )  # fmt: skip
    print("\n" + gsm8k.table(result))
    for side in ("a", "b"):
        s = result["servers"][side]["repeats"][0]
        assert s["questions"] == 2 and s["errors"] == 0, s
        lo, hi = s["interval_95"]
        assert 0 <= lo <= s["accuracy"] <= hi <= 1 and hi - lo > 0.5  # 2 questions: wide
        if variant.name == "speculative":  # SmolLM2 drafting for itself: most drafts accepted
            assert s["accept_length"] and s["accept_length"] > 1.5, s
        else:
            assert s["accept_length"] is None, s
    # float32 greedy: the same server answers the same questions the same way
    assert result["paired"][0]["only_a_right"] == result["paired"][0]["only_b_right"] == 0
    assert result["paired"][0]["verdict"].startswith("no difference")


def test_sigterm_under_load_drains_and_exits_zero(served):
    server, _ = served
    f = _phase(served, "sigterm", lambda s, v: fault_suite.run_sigterm(s, SIZE))
    assert f.lost == 0 and f.mismatched == 0, f
    assert f.finished_right + f.clear_errors == f.in_flight, f
    assert f.exit_code == 0, (f, server.log_tail())
    assert f.group_gone, "server left processes behind"
    assert "Traceback" not in server.log_path.read_text()
