"""`sglang-amd eval compare` against real servers on the CPU platform, float32.

make test: SmolLM2, A = SGLang's torch_native attention, B = ours with a deliberate
decode bug (`SGLANG_AMD_INJECT_FAULT=attention.decode:drop_newest_key`), `--bisect`.
The pair must fail where the bug shows (greedy text, B's decode against B's own
prefill) and nowhere else, and the bisection must try A + `--attention-backend amd`
alone (ours against torch_native: it must pass) before naming the fault variable.
make test-full: the tiny Qwen3-MoE (our MoE runner) and the tiny DeepSeek-V3 (MLA)
against SGLang's own paths, a one-percent output scale on extend caught by
teacher forcing alone, and a decode bug confined to our Triton tier that
`--bisect` must narrow from `--attention-backend amd` to attention.decode. Three servers at most per test, one at a time.
"""

from __future__ import annotations

import pytest

from sglang_amd.eval import compare, compare_report, prompts
from sglang_amd.eval.configs import Config

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

BASE = "--device cpu --dtype float32 --log-level warning --max-total-tokens 4096 --context-length 4096"
FAULT = "SGLANG_AMD_INJECT_FAULT=attention.decode:drop_newest_key"


@pytest.fixture
def quiet_env(monkeypatch, request):
    # Servers inherit the environment: the interpreter would put our ops on Triton.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("SGLANG_AMD_TRACE", raising=False)
    request.getfixturevalue("engines").close()  # an in-process engine would share the cores


def _work(model: str, contexts: list[int], count: int = 16) -> compare.Workload:
    from transformers import AutoTokenizer

    ps = prompts.load(None, AutoTokenizer.from_pretrained(model))
    ps.labels, ps.ids = ps.labels[:count], ps.ids[:count]
    return compare.Workload(ps, contexts, max_new_tokens=16, top_k=20)


def _run(model, a: str, b: str, work, tmp_path, **kw) -> dict:
    r = compare.run(model, compare.Target("A", config=Config.parse(a)),
                    compare.Target("B", config=Config.parse(b)), work, tmp_path, **kw)  # fmt: skip
    print("\n" + compare_report.table(r))
    return r


def test_smollm2_decode_bug_is_caught_and_bisected(quiet_env, smollm2_path, tmp_path):
    # 8 prompts at 512 tokens: the dropped key moves greedy output on every one of them,
    # and the test's four servers stay within CI's time (16 at 1024 took 10-14 minutes).
    r = _run(smollm2_path, f"--attention-backend torch_native {BASE}",
             f"{FAULT} --attention-backend amd {BASE}", _work(smollm2_path, [512], count=8),
             tmp_path, bisect_changes=True)  # fmt: skip
    main = r["comparisons"][0]
    failures = "\n".join(main["failures"])
    assert not r["passed"]
    assert "B prefill vs decode" in failures and "greedy" in failures
    assert "A prefill vs decode" not in failures
    # Teacher forcing runs prefills only: the decode bug cannot reach it.
    for group in main["groups"].values():
        assert group["teacher_forced"]["max_abs_dlogprob"] <= 1e-3
        assert group["prefill_vs_decode_a"]["max_abs_dlogprob"] <= 1e-3
    bis = r["bisect"]
    assert bis["changes"] == ["attention: --attention-backend amd", FAULT]
    [step] = bis["tried"]
    assert step["applied"] == 1 and step["passed"], step  # amd against torch_native, float32
    assert bis["culprit"].startswith("SGLANG_AMD_INJECT_FAULT")


@pytest.mark.full
@pytest.mark.timeout(2400)
def test_a_triton_only_decode_bug_is_narrowed_to_its_op(quiet_env, smollm2_path, tmp_path):
    """Both sides interpret Triton (our ops then serve on it); the fault hits only
    the Triton tier of attention.decode. Bisection blames the backend flag, and
    narrowing must find that forcing attention.decode to torch passes. Two prompts,
    six new tokens: B's every layer runs in Triton's interpreter."""
    env = "TRITON_INTERPRET=1 SGLANG_AMD_INJECT_FAULT=attention.decode@triton:drop_newest_key"
    work = _work(smollm2_path, [], count=2)
    work.max_new_tokens = 6
    r = _run(smollm2_path, f"{env} --attention-backend torch_native {BASE}",
             f"{env} --attention-backend amd {BASE}", work, tmp_path,
             bisect_changes=True)  # fmt: skip
    bis = r["bisect"]
    assert not r["passed"] and bis["culprit"] == "attention: --attention-backend amd"
    nar = bis["narrowed"]
    assert [s["passed"] for s in nar["tried"]] == [True], nar["tried"]
    assert nar["at_fault"].startswith("attention.decode: its faster tier"), nar


@pytest.mark.full
def test_extend_scaled_one_percent_fails_teacher_forcing(quiet_env, smollm2_path, tmp_path):
    r = _run(smollm2_path, f"--attention-backend amd {BASE}",
             f"SGLANG_AMD_INJECT_FAULT=attention.extend:scale:1.01 --attention-backend amd {BASE}",
             _work(smollm2_path, [], count=8), tmp_path)  # fmt: skip
    failures = "\n".join(r["comparisons"][0]["failures"])
    assert "prompts: A vs B: max |dlogprob|" in failures


@pytest.mark.full
def test_speculative_on_and_off_agree_and_accept(quiet_env, smollm2_path, tmp_path):
    spec = (f"--speculative-algorithm STANDALONE --speculative-draft-model-path {smollm2_path} "
            "--speculative-num-steps 2 --speculative-eagle-topk 1 --speculative-num-draft-tokens 3")  # fmt: skip
    r = _run(smollm2_path, f"--attention-backend torch_native {BASE}", f"--attention-backend amd {BASE}",
             _work(smollm2_path, [], count=8), tmp_path,
             speculative=compare.Target("B + speculative", config=Config.parse(f"--attention-backend amd {BASE} {spec}")))  # fmt: skip
    assert r["passed"], [c["failures"] for c in r["comparisons"]]
    on = r["comparisons"][1]
    assert on["groups"]["prompts"]["greedy_identical"] == 8
    assert on["accept_length"] > 2.0  # the draft is the target: nearly every draft accepted


@pytest.mark.full
@pytest.mark.parametrize("family", ["moe", "mla"])
def test_tiny_families_amd_against_sglang_paths(quiet_env, smollm2_path, tmp_path, family):
    from tests.tiny_models import tiny_deepseek_v3, tiny_qwen3_moe

    if family == "moe":
        model = str(tiny_qwen3_moe(tmp_path / "qwen3-moe", smollm2_path))
        a, b = "--attention-backend torch_native", "--attention-backend amd --moe-runner-backend amd"
    else:
        model = str(tiny_deepseek_v3(tmp_path / "dsv3", smollm2_path))
        a, b = "--attention-backend torch_native", "--attention-backend amd --moe-runner-backend amd"
    tiny = BASE.replace("--context-length 4096", "--context-length 2048")  # their max positions
    r = _run(model, f"{a} {tiny}", f"{b} {tiny}", _work(model, [512], count=8), tmp_path)
    assert r["passed"], r["comparisons"][0]["failures"]
