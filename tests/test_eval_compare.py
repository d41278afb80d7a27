"""`sglang-amd eval compare` without SGLang: the arithmetic, the configurations and their
changes, the prompts, and whole runs (with `--bisect`) against stand-in servers that answer
SGLang's `/generate` from a small bigram model. The runs against real SGLang servers are in
`test_e2e_eval_compare.py`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sglang_amd.eval import agreement, compare, compare_report, configs, logprobs, prompts
from sglang_amd.eval.configs import Config
from sglang_amd.eval.logprobs import Position
from tests.stand_in_http import JsonServer

V = 40


def _position(logp: torch.Tensor, token: int, k: int) -> Position:
    vals, ids = logp.topk(k)
    return Position(token, float(logp[token]), [(int(i), float(v)) for v, i in zip(vals, ids, strict=True)])


@pytest.mark.parametrize("seed", range(6))
def test_bucketed_kl_is_exact_with_the_whole_vocabulary_and_a_lower_bound_without(seed):
    g = torch.Generator().manual_seed(seed)
    la = torch.log_softmax(torch.randn(V, generator=g, dtype=torch.float64) * 2, -1)
    lb = torch.log_softmax(la + 0.3 * torch.randn(V, generator=g, dtype=torch.float64), -1)
    exact = float((la.exp() * (la - lb)).sum())
    full = agreement.bucketed_kl(_position(la, 0, V), _position(lb, 0, V))
    assert full == pytest.approx(exact, rel=1e-9, abs=1e-12)
    for k in (1, 5, 20):
        part = agreement.bucketed_kl(_position(la, 0, k), _position(lb, 0, k))
        assert 0.0 <= part <= exact + 1e-12


def test_top1_flips_count_only_where_the_leader_is_clear():
    t = agreement.FLOAT32
    clear = Position(1, -0.1, [(1, -0.1), (2, -3.0)])
    flipped = Position(1, -0.1, [(2, -0.1), (1, -0.2)])
    tie = Position(1, -0.69, [(1, -0.6931), (2, -0.6932)])
    tie_flipped = Position(1, -0.69, [(2, -0.6931), (1, -0.6932)])
    agg = agreement.Agreement()
    agg.add(tie, tie_flipped, t.tie_margin)
    assert agg.disagreements == 0 and agg.contested == 1 and agg.top1_agreement == 1.0
    agg.add(clear, flipped, t.tie_margin)
    assert agg.disagreements == 1 and agg.top1_agreement == 0.0
    assert any("top-1 agreement" in f for f in agg.failures(t, "x"))


def test_failures_follow_the_dtype_thresholds():
    a = Position(1, -1.0, [(1, -1.0), (2, -2.0)])
    b = Position(1, -1.002, [(1, -1.002), (2, -1.998)])
    agg = agreement.Agreement()
    agg.add(a, b, agreement.FLOAT32.tie_margin)
    assert any("max |dlogprob|" in f for f in agg.failures(agreement.FLOAT32, "x"))
    assert agg.failures(agreement.BFLOAT16, "x") == []
    with pytest.raises(ValueError, match="--dtype"):
        agreement.thresholds_for("int8")


def test_greedy_divergence_and_its_near_tie():
    pos = [Position(5, -0.5, [(5, -0.5), (6, -0.5005)]), Position(7, -0.1, [(7, -0.1), (8, -4.0)])]
    a = logprobs.Generated([1, 2], [5, 7], pos)
    assert agreement.greedy(a, logprobs.Generated([1, 2], [5, 7], pos), 2e-3).index is None
    tie = agreement.greedy(a, logprobs.Generated([1, 2], [6, 7], pos), 2e-3)
    assert tie.index == 0 and tie.near_tie and tie.a_lead == pytest.approx(5e-4)
    real = agreement.greedy(a, logprobs.Generated([1, 2], [5, 8], pos), 2e-3)
    assert real.index == 1 and not real.near_tie
    assert agreement.greedy_failures([tie], agreement.FLOAT32, "g") == []
    assert agreement.greedy_failures([tie, real], agreement.FLOAT32, "g")
    assert agreement.greedy_failures([real], agreement.BFLOAT16, "g") == []


def test_configs_parse_env_flags_and_values():
    c = Config.parse("SGLANG_AMD_TIER=torch X=1 --attention-backend amd --dtype=bfloat16 "
                     "--enable-foo --cuda-graph-bs 1 2 4")  # fmt: skip
    assert c.env == {"SGLANG_AMD_TIER": "torch", "X": "1"}
    assert c.flags == {"--attention-backend": ["amd"], "--dtype": ["bfloat16"], "--enable-foo": [],
                       "--cuda-graph-bs": ["1", "2", "4"]}  # fmt: skip
    assert Config.parse(c.text()).flags == c.flags and Config.parse(c.text()).env == c.env
    with pytest.raises(ValueError, match="set by eval compare"):
        Config.parse("--port 3000")
    with pytest.raises(ValueError, match="expected --flag"):
        Config.parse("stray")


def test_changes_put_ours_first_group_speculative_and_lead_from_a_to_b():
    a = Config.parse("--attention-backend torch_native --dtype float32 --page-size 1")
    b = Config.parse(
        "SGLANG_AMD_ATTENTION_TIER=triton OTHER=1 --attention-backend amd --dtype float32 "
        "--moe-runner-backend amd --speculative-algorithm STANDALONE --speculative-num-steps 2 "
        "--chunked-prefill-size 64"
    )
    steps = configs.changes(a, b)
    assert [s.name for s in steps] == ["attention", "moe runner", "speculative decoding",
                                       "SGLANG_AMD_ATTENTION_TIER", "OTHER", "--page-size",
                                       "--chunked-prefill-size"]  # fmt: skip
    assert steps[2].describe() == ("speculative decoding: --speculative-algorithm STANDALONE, "
                                   "--speculative-num-steps 2")  # fmt: skip
    assert "no --page-size" in steps[5].describe()
    whole = configs.apply(a, steps)
    assert whole.flags == b.flags and whole.env == b.env
    assert configs.changes(a, a) == []


def test_prompt_sets_and_context_lengths(tmp_path):
    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) % 97 for c in text]}

    bundled = prompts.load(None, Tok())
    assert bundled.source == "bundled" and len(bundled.ids) == 16 and len(bundled.sha256) == 64
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "hello"}\n\n{"input_ids": [1, 2, 3], "label": "ids"}\n')
    mine = prompts.load(f, Tok())
    assert mine.labels == ["hello", "ids"] and mine.ids[1] == [1, 2, 3]
    f.write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match="'prompt', 'text' or 'input_ids'"):
        prompts.load(f, Tok())
    assert prompts.parse_lengths("1k, 8k,300") == [1024, 8192, 300]
    with pytest.raises(ValueError, match="--contexts"):
        prompts.parse_lengths("1k,lots")
    for n in (40, 1000, 5000):
        ctx = prompts.long_context(bundled, n)
        assert len(ctx) == n and ctx[-len(bundled.ids[0]) :] == bundled.ids[0]


# ---- stand-in servers -------------------------------------------------------------------


class Bigram:
    """A next-token table: what the stand-in servers compute, optionally perturbed."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.logits = torch.randn(V, V, generator=g, dtype=torch.float64) * 3

    def logp(self, prev: int, decode: bool, fault: str) -> torch.Tensor:
        row = self.logits[prev].clone()
        if fault == "decode" and decode:
            row[(prev * 7) % V] += 5.0  # a decode-only bug: prefill stays right
        if fault == "everywhere":
            row *= 1.01
        return torch.log_softmax(row, -1)


def _entry(logp: torch.Tensor, token: int, k: int) -> tuple[list, list]:
    vals, ids = logp.topk(k)
    return [float(logp[token]), token, None], [[float(v), int(i), None] for v, i in zip(vals, ids, strict=True)]


class StandIn:
    """SGLang's /generate, /get_server_info, /flush_cache and /v1/models over a Bigram."""

    def __init__(self, model: Bigram, fault: str = "", dtype: str = "float32", spec: bool = False,
                 context_length: int | None = None):  # fmt: skip
        self.model, self.fault, self.dtype, self.spec = model, fault, dtype, spec
        self.context_length = context_length
        self.http = JsonServer(self.get, self.post)
        self.url = self.http.url

    def get(self, path: str) -> dict:
        if path == "/get_server_info":
            return {"dtype": self.dtype, "version": "stand-in", "attention_backend": self.fault,
                    "context_length": self.context_length}  # fmt: skip
        return {"data": [{"id": "bigram", "root": "bigram"}]}

    def post(self, path: str, body: dict) -> dict | list[dict]:
        return {} if path == "/flush_cache" else self.generate(body)

    def generate(self, body: dict) -> list[dict]:
        k, n = body["top_logprobs_num"], body["sampling_params"]["max_new_tokens"]
        starts = body["logprob_start_len"]
        out = []
        for i, ids in enumerate(body["input_ids"]):
            start = starts[i] if isinstance(starts, list) else starts
            meta = {"input_token_logprobs": [], "input_top_logprobs": [], "output_token_logprobs": [],
                    "output_top_logprobs": []}  # fmt: skip
            if start >= 0:
                for p in range(start, len(ids)):
                    if p == start:  # SGLang reports no log-probability at the first position
                        meta["input_token_logprobs"].append([None, ids[p], None])
                        meta["input_top_logprobs"].append(None)
                        continue
                    tok, top = _entry(self.model.logp(ids[p - 1], False, self.fault), ids[p], k)
                    meta["input_token_logprobs"].append(tok)
                    meta["input_top_logprobs"].append(top)
            seq = list(ids)
            for _ in range(n):
                logp = self.model.logp(seq[-1], len(seq) > len(ids), self.fault)
                nxt = int(logp.argmax())
                tok, top = _entry(logp, nxt, k)
                meta["output_token_logprobs"].append(tok)
                meta["output_top_logprobs"].append(top)
                seq.append(nxt)
            if self.spec:
                meta["spec_verify_ct"] = math.ceil(n / 2)
            out.append({"output_ids": seq[len(ids):], "meta_info": meta})
        return out

    def close(self):
        self.http.close()


@pytest.fixture
def work():
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(0, V, (n,), generator=g).tolist() for n in (3, 9, 17)]
    ps = prompts.PromptSet("test", "0" * 64, ["p3", "p9", "p17"], ids)
    return compare.Workload(ps, contexts=[100], max_new_tokens=12, top_k=V)


@pytest.fixture
def servers():
    made = []

    def make(*args, **kwargs):
        made.append(StandIn(*args, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_the_same_model_passes_and_reports_every_group(tmp_path, work, servers):
    model = Bigram()
    a, b = servers(model), servers(model, spec=True)
    r = compare.run("bigram", compare.Target("A", url=a.url), compare.Target("B", url=b.url), work,
                    tmp_path, speculative=compare.Target("B + spec", url=b.url))  # fmt: skip
    assert r["passed"], r["comparisons"][0]["failures"]
    main, spec = r["comparisons"]
    assert set(main["groups"]) == {"prompts", "context 100"}
    g = main["groups"]["prompts"]
    assert g["teacher_forced"]["max_abs_dlogprob"] == 0.0 and g["greedy_identical"] == 3
    assert g["teacher_forced"]["positions"] == (2 + 8 + 16) + 3 * 12
    assert main["groups"]["context 100"]["teacher_forced"]["positions"] == compare.CONTEXT_TAIL + 12
    assert spec["accept_length"] == pytest.approx(2.0)
    assert r["thresholds"]["dtype"] == "float32"
    assert json.loads((tmp_path / "compare.json").read_text())["protocol"]["prompts"]["count"] == 3
    assert "PASS" in compare_report.table(r)


def test_a_decode_only_bug_fails_teacher_forcing_greedy_and_prefill_vs_decode(tmp_path, work, servers):
    a, b = servers(Bigram()), servers(Bigram(), fault="decode")
    r = compare.run("bigram", compare.Target("A", url=a.url), compare.Target("B", url=b.url), work, tmp_path)
    assert not r["passed"]
    text = "\n".join(r["comparisons"][0]["failures"])
    assert "B prefill vs decode" in text and "greedy" in text
    assert "A prefill vs decode" not in text
    assert "FAIL" in compare_report.table(r)


def test_bf16_thresholds_apply_when_either_server_is_bf16(tmp_path, work, servers):
    model = Bigram()
    a, b = servers(model), servers(model, dtype="bfloat16")
    r = compare.run("bigram", compare.Target("A", url=a.url), compare.Target("B", url=b.url), work, tmp_path)
    assert r["thresholds"]["dtype"] == "bfloat16"


def test_a_context_beyond_the_servers_length_is_refused_by_flag(tmp_path, work, servers):
    a = servers(Bigram(), context_length=100)
    with pytest.raises(ValueError, match="context 100: 100 prompt \\+ 12 new tokens exceed A's context length 100; lower --contexts"):
        compare.run("bigram", compare.Target("A", url=a.url), compare.Target("B", url=a.url), work, tmp_path)


def test_bisect_names_the_change_that_breaks_it(tmp_path, work, servers, monkeypatch):
    """Configurations map to stand-ins: the fault variable breaks decode, nothing else does."""
    model = Bigram()
    started: list[str] = []

    def fake_serving(target, model_path, log_dir):
        from contextlib import contextmanager

        @contextmanager
        def cm():
            fault = "decode" if target.config.env.get("SGLANG_AMD_INJECT_FAULT") else ""
            started.append(target.config.text())
            yield servers(model, fault=fault).url

        return cm()

    monkeypatch.setattr(compare, "serving", fake_serving)
    a = Config.parse("--attention-backend torch_native --dtype float32")
    b = Config.parse("SGLANG_AMD_INJECT_FAULT=attention.decode:drop_newest_key --attention-backend amd "
                     "--moe-runner-backend amd --dtype float32 --chunked-prefill-size 64")  # fmt: skip
    r = compare.run("m", compare.Target("A", config=a), compare.Target("B", config=b), work, tmp_path,
                    bisect_changes=True)  # fmt: skip
    bis = r["bisect"]
    assert bis["culprit"].startswith("SGLANG_AMD_INJECT_FAULT")
    assert len(bis["changes"]) == 4 and len(bis["tried"]) == 2  # two halvings of four
    assert len(started) == 4
    assert "at fault: SGLANG_AMD_INJECT_FAULT" in compare_report.table(r)


def test_the_cli_refuses_bisect_on_urls_and_bad_contexts(capsys):
    from sglang_amd import cli

    rc = cli.main(["eval", "compare", "--model", str(Path(__file__).parent / "data"),
                   "--a-url", "http://x", "--b-url", "http://y", "--bisect"])  # fmt: skip
    assert rc == 2 and "--bisect starts servers" in capsys.readouterr().err
    rc = cli.main(["eval", "compare", "--model", ".", "--a", "--port 1", "--b", "--dtype float32"])
    assert rc == 2 and "set by eval compare" in capsys.readouterr().err


def test_bisect_narrows_our_backend_flag_to_the_op_tier_at_fault(tmp_path, work, servers, monkeypatch):
    """A and B differ only in `--attention-backend`: bisection can only blame the flag;
    narrowing then forces each attention op to torch and names the one whose faster
    tier breaks decode (the stand-ins: wrong unless attention.decode is at torch)."""
    model = Bigram()
    started: list[str] = []

    def fake_serving(target, model_path, log_dir):
        from contextlib import contextmanager

        @contextmanager
        def cm():
            env = target.config.env
            ours = target.config.flag("--attention-backend") == "amd"
            bad = ours and env.get("SGLANG_AMD_ATTENTION_DECODE_TIER") != "torch"
            started.append(target.config.text())
            yield servers(model, fault="decode" if bad else "").url

        return cm()

    monkeypatch.setattr(compare, "serving", fake_serving)
    a = Config.parse("--attention-backend torch_native --dtype float32")
    b = Config.parse("--attention-backend amd --dtype float32")
    r = compare.run("m", compare.Target("A", config=a), compare.Target("B", config=b), work, tmp_path,
                    bisect_changes=True)  # fmt: skip
    nar = r["bisect"]["narrowed"]
    assert r["bisect"]["culprit"] == "attention: --attention-backend amd"
    assert [s["label"] for s in nar["tried"]] == [
        "failing + SGLANG_AMD_ATTENTION_DECODE_TIER=torch"
    ]
    assert nar["tried"][0]["passed"] and nar["at_fault"].startswith("attention.decode: its faster tier")
    assert "SGLANG_AMD_ATTENTION_DECODE_TIER=torch" in started[-1]
    table = compare_report.table(r)
    assert "narrowed to: attention.decode" in table


class _Trial:
    """narrow()'s trial, answering from a rule over the configuration."""

    def __init__(self, passes):
        self.passes, self.labels = passes, []

    def __call__(self, cfg, label):
        self.labels.append(label)
        return compare.Step(1, cfg.text(), self.passes(cfg), [])


def _culprit(text: str):
    a, b = Config.parse(""), Config.parse(text)
    return configs.changes(a, b)[0], b


def test_narrowing_tries_each_op_then_all_then_eager_then_blames_the_adapter():
    from sglang_amd.eval import narrow

    change, failing = _culprit("--attention-backend amd")
    both = _Trial(lambda c: c.env.get("SGLANG_AMD_ATTENTION_DECODE_TIER") == "torch"
                  and c.env.get("SGLANG_AMD_ATTENTION_EXTEND_TIER") == "torch")  # fmt: skip
    got = narrow.narrow(change, failing, both)
    assert len(both.labels) == 3 and got["at_fault"].startswith("the tiers of attention.decode")
    graphs = _Trial(lambda c: "--disable-cuda-graph" in c.flags)
    got = narrow.narrow(change, failing, graphs)
    assert graphs.labels[-1] == "failing + --disable-cuda-graph"
    assert got["at_fault"].startswith("CUDA graphs: eager passes")
    never = _Trial(lambda c: False)
    got = narrow.narrow(change, failing, never)
    assert len(never.labels) == 4 and "attention adapter" in got["at_fault"]
    # Already eager, and decode already forced to torch: neither is tried again.
    change, failing = _culprit(
        "SGLANG_AMD_ATTENTION_DECODE_TIER=torch --attention-backend amd --disable-cuda-graph"
    )
    never = _Trial(lambda c: False)
    got = narrow.narrow(change, failing, never)
    assert never.labels == ["failing + SGLANG_AMD_ATTENTION_EXTEND_TIER=torch"]
    assert "still fail" in got["at_fault"] and "and eager" not in got["at_fault"]


def test_narrowing_covers_only_flags_that_select_ours():
    from sglang_amd.eval import narrow

    for text, ops in (
        ("--moe-runner-backend amd", ["SGLANG_AMD_MOE_FUSED_TIER"]),
        ("--quantization amd_mxfp4", ["SGLANG_AMD_QUANT_MXFP4_LINEAR_TIER",
                                      "SGLANG_AMD_MOE_FUSED_TIER", "SGLANG_AMD_QUANT_MXFP4_TIER"]),
    ):  # fmt: skip
        change, failing = _culprit(text)
        trial = _Trial(lambda c: False)
        narrow.narrow(change, failing, trial)
        assert [lab.split(" + ")[1].split("=")[0] for lab in trial.labels[: len(ops)]] == ops
    for text in ("--attention-backend triton", "--dtype bfloat16", "--moe-runner-backend triton"):
        change, failing = _culprit(text)
        assert narrow.narrow(change, failing, _Trial(lambda c: True)) is None
