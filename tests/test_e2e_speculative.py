"""Speculative decoding through `--attention-backend amd`, judged by HF fp32 greedy.

Three paths of the backend only speculative decoding reaches: target verify
(the drafts attend to the prefix and, through the tree mask, to their
ancestors), draft extend (DRAFT_EXTEND_V2) and multi-step draft decode (one
backend per step, each branch reading its own draft chain). Greedy speculative
output must equal greedy output without speculation, which SGLang fp32 gets
token for token from HF fp32 `generate`: any wrong mask, slot or length in
verify changes a committed token.

- STANDALONE with the target as its own draft (SmolLM2, GQA): in fp32 the draft
  proposes exactly the target's greedy tokens, so nearly every draft is accepted
  and the accept paths run; asserted through SGLang's verify count. Chain
  (top-k 1, page 16) and tree (top-k 2, page 1) drafts.
- NEXTN on a tiny DeepSeek-V3 (MLA, absorbed decode) with a random MTP layer:
  drafts are mostly rejected, the reject paths run.

On the CPU SGLang's speculative helper kernels are Triton, run by Triton's
interpreter; our own ops are pinned to the torch tier for speed.
"""

from __future__ import annotations

import os

import pytest

from sglang_amd import trace
from sglang_amd.mtp import acceptance
from tests.oracle import HFOracle
from tests.tiny_models import tiny_deepseek_v3

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

SPEC_ENV = {"TRITON_INTERPRET": "1", "SGLANG_AMD_TIER": "torch"}
NEW_TOKENS = 24
STEPS = 3


def _current_engine_events(engines) -> list[dict]:
    """Trace events of the scheduler that built a backend last (the engine in use)."""
    events = [e for e in trace.read(engines.trace_file) if e["pid"] != os.getpid()]
    pid = [e["pid"] for e in events if e["event"] == "backend_init"][-1]
    return [e for e in events if e["pid"] == pid]


def _spec_events(engines) -> set[str]:
    return {e["mode"] for e in _current_engine_events(engines) if e["event"] == "spec_forward"}


def _generate_all(engine, prompts):
    outs = engine.generate(
        input_ids=[p.ids for p in prompts],
        sampling_params={"temperature": 0, "max_new_tokens": NEW_TOKENS},
    )
    return outs


def _check_against_hf(outs, oracle: HFOracle, prompts) -> acceptance.Acceptance:
    mismatched = [
        i
        for i, (p, o) in enumerate(zip(prompts, outs, strict=True))
        if o["output_ids"] != oracle.greedy(p.ids, NEW_TOKENS)
    ]
    assert not mismatched, f"speculative greedy output differs from HF fp32 on {mismatched}"
    return acceptance.from_meta(o["meta_info"] for o in outs)


@pytest.mark.parametrize(
    "topk,draft_tokens,page_size",
    [
        # make test keeps speculative decoding on MLA (NEXTN chain, Triton tree, below);
        # self-drafting SmolLM2 repeats it (and CI's time is bounded).
        pytest.param(1, STEPS + 1, 16, id="chain", marks=pytest.mark.full),
        pytest.param(2, 6, 1, id="tree", marks=pytest.mark.full),
    ],
)
def test_self_drafting_matches_hf_and_accepts(
    engines, smollm2_path, hf_oracle, prompts, topk, draft_tokens, page_size
):
    engine = engines.get(
        env=SPEC_ENV,
        attention_backend="amd",
        dtype="float32",
        page_size=page_size,
        disable_overlap_schedule=True,
        speculative_algorithm="STANDALONE",
        speculative_draft_model_path=smollm2_path,
        speculative_num_steps=STEPS,
        speculative_eagle_topk=topk,
        speculative_num_draft_tokens=draft_tokens,
    )
    acc = _check_against_hf(_generate_all(engine, prompts), hf_oracle, prompts)
    print(f"{topk=}: {acc.line()}")
    # The draft is the target: at most STEPS + 1 tokens per pass, nearly always reached.
    assert acc.accept_length >= 2.5
    assert {"target_verify", "draft_extend", "draft_decode"} <= _spec_events(engines)


@pytest.fixture(scope="module")
def nextn_model(smollm2_path, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("dsv3-nextn") / "m"
    return str(tiny_deepseek_v3(out, smollm2_path, dense=True, nextn=True))


def _nextn_engine(engines, path, env, topk, draft_tokens):
    return engines.get(
        env=env,
        model_path=path,
        attention_backend="amd",
        dtype="float32",
        disable_overlap_schedule=True,
        speculative_algorithm="NEXTN",
        speculative_num_steps=STEPS,
        speculative_eagle_topk=topk,
        speculative_num_draft_tokens=draft_tokens,
        speculative_draft_load_format="dummy",
    )


def test_nextn_on_mla_matches_hf(engines, nextn_model, prompts):
    engine = _nextn_engine(engines, nextn_model, SPEC_ENV, 1, STEPS + 1)
    outs = _generate_all(engine, prompts)
    acc = _check_against_hf(outs, HFOracle(nextn_model), prompts)
    print(f"NEXTN (random MTP layer): {acc.line()}")
    assert acc.verify_passes > 0


def test_triton_tiers_serve_tree_drafts_on_mla(engines, nextn_model, prompts):
    """Our Triton tiers inside SGLang (interpreted): tree-masked verify through the
    extend kernel, per-branch draft decode through the MLA decode kernel."""
    engine = _nextn_engine(engines, nextn_model, {"TRITON_INTERPRET": "1"}, 2, 6)
    few = prompts[:2]  # interpreted kernels: few prompts keep CI's time bounded
    _check_against_hf(_generate_all(engine, few), HFOracle(nextn_model), few)
    tiers = {(e["event"], e.get("tier")) for e in _current_engine_events(engines)}
    assert {("forward_extend", "triton"), ("forward_decode", "triton")} <= tiers
    assert {"target_verify", "draft_extend", "draft_decode"} <= _spec_events(engines)
