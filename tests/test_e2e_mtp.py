"""MTP (NEXTN) with a draft that agrees with the target, through `--attention-backend amd`.

A random MTP layer is nearly always rejected (test_e2e_speculative covers that),
so multi-token acceptance never runs there. Here the tiny DeepSeek-V3's MTP
layer is the target's own layer read one token later
(`tiny_deepseek_v3_agreeing_mtp`): ~0.88 of its drafts agree, so verify accepts
chains of several tokens and still rejects some. Judged on 16 prompts x 32
tokens: speculative greedy output identical to HF fp32 greedy (which SGLang fp32
without speculation reproduces token for token), accept length from SGLang's own
per-request figures (`mtp/acceptance.py`).
"""

from __future__ import annotations

import pytest

from sglang_amd.mtp import acceptance
from tests.oracle import HFOracle
from tests.tiny_models import (
    fake_quantized_copy,
    quark_mxfp4_export,
    tiny_deepseek_v3_agreeing_mtp,
    tiny_glm4_moe_agreeing_mtp,
    tiny_mimo_agreeing_mtp,
)

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

SPEC_ENV = {"TRITON_INTERPRET": "1", "SGLANG_AMD_TIER": "torch"}
NEW_TOKENS = 32


# MTP families: SGLang's draft class for each (NEXTN picks it from the architecture)
FAMILIES = {
    "deepseek_v3": tiny_deepseek_v3_agreeing_mtp,  # DeepseekV3ForCausalLMNextN (MLA)
    "glm4_moe": tiny_glm4_moe_agreeing_mtp,  # Glm4MoeForCausalLMNextN (GQA)
    "mimo": tiny_mimo_agreeing_mtp,  # MiMoMTP (GQA, dense)
}


class _Family:
    """A family's tiny model and HF's greedy answers, built on first use."""

    def __init__(self, root, smollm2: str):
        self.root, self.smollm2, self._paths, self._greedy = root, smollm2, {}, {}

    def path(self, family: str) -> str:
        if family not in self._paths:
            self._paths[family] = str(FAMILIES[family](self.root / family, self.smollm2))
        return self._paths[family]

    def greedy(self, family: str, ids: list[list[int]]) -> list[list[int]]:
        if family not in self._greedy:
            oracle = HFOracle(self.path(family))
            self._greedy[family] = [oracle.greedy(p, NEW_TOKENS) for p in ids]
        return self._greedy[family]


@pytest.fixture(scope="module")
def families(smollm2_path, tmp_path_factory) -> _Family:
    return _Family(tmp_path_factory.mktemp("agreeing-mtp"), smollm2_path)


@pytest.fixture(scope="module")
def mtp_model(families) -> str:
    return families.path("deepseek_v3")


@pytest.fixture(scope="module")
def bundled_ids(smollm2_path) -> list[list[int]]:
    from transformers import AutoTokenizer

    from sglang_amd.eval import prompts

    return prompts.load(None, AutoTokenizer.from_pretrained(smollm2_path)).ids


@pytest.fixture(scope="module")
def hf_greedy(families, bundled_ids) -> list[list[int]]:
    return families.greedy("deepseek_v3", bundled_ids)


def _serve(engines, model, ids, *, steps, topk, draft_tokens, page_size=1, **extra):
    engine = engines.get(
        **extra,
        env=SPEC_ENV,
        model_path=model,
        attention_backend="amd",
        dtype="float32",
        page_size=page_size,
        disable_overlap_schedule=True,
        speculative_algorithm="NEXTN",
        speculative_num_steps=steps,
        speculative_eagle_topk=topk,
        speculative_num_draft_tokens=draft_tokens,
    )
    return engine.generate(
        input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": NEW_TOKENS}
    )


def _check(outs, hf_greedy, what: str) -> acceptance.Acceptance:
    differ = [
        i for i, (o, r) in enumerate(zip(outs, hf_greedy, strict=True)) if o["output_ids"] != r
    ]
    assert not differ, f"{what}: speculative greedy output differs from HF fp32 on prompts {differ}"
    acc = acceptance.from_meta(o["meta_info"] for o in outs)
    print(f"{what}: {acc.line()}")
    # the draft agrees often but not always: both accept and reject paths ran
    assert 0 < acc.correct_drafts < acc.proposed_drafts
    return acc


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize(
    "steps",
    [pytest.param(1, marks=pytest.mark.full), pytest.param(2, marks=pytest.mark.full), 3],
)
def test_agreeing_nextn_chain_matches_hf_and_accepts(engines, families, bundled_ids, family, steps):
    want = families.greedy(family, bundled_ids)
    outs = _serve(engines, families.path(family), bundled_ids, steps=steps, topk=1,
                  draft_tokens=steps + 1, page_size=16)  # fmt: skip
    acc = _check(outs, want, f"{family} NEXTN {steps} steps, chain")
    if steps == 3:
        assert acc.accept_length >= 2.0, acc.line()


@pytest.mark.parametrize(
    "steps,topk",
    [pytest.param(7, 1, id="chain", marks=pytest.mark.full), pytest.param(4, 2, id="tree")],
)
def test_eight_draft_tokens_on_mla(engines, mtp_model, bundled_ids, hf_greedy, steps, topk):
    """Eight draft tokens per verify pass through our MLA verify path (the tree mask
    for top-k 2; page size 1, as SGLang requires for top-k > 1)."""
    outs = _serve(engines, mtp_model, bundled_ids, steps=steps, topk=topk, draft_tokens=8)
    acc = _check(outs, hf_greedy, f"NEXTN {steps} steps, top-k {topk}, 8 draft tokens")
    assert acc.accept_length >= 2.0, acc.line()


def test_quark_mxfp4_export_with_a_bf16_mtp_layer(
    engines, mtp_model, bundled_ids, tmp_path_factory
):
    """A Quark MXFP4 export whose MTP layer is excluded (left bf16, `re:` entry) beside
    MXFP4 experts, under `--quantization amd_mxfp4`: SGLang names that layer
    "model.decoder", the export "model.layers.2"; served as float it drafts as before.
    Oracle: HF fp32 on the same weights dequantized (the MTP layer is not HF's)."""
    from pathlib import Path

    src, work = Path(mtp_model), tmp_path_factory.mktemp("mtp-quark")
    export = quark_mxfp4_export(src, work / "export", dense=(), keep_float=r"model\.layers\.2\.")
    oracle = HFOracle(str(fake_quantized_copy(src, work / "fq", dense=())))
    want = [oracle.greedy(ids, NEW_TOKENS) for ids in bundled_ids]
    outs = _serve(engines, str(export), bundled_ids, steps=3, topk=1, draft_tokens=4,
                  page_size=16, quantization="amd_mxfp4", moe_runner_backend="amd")  # fmt: skip
    acc = _check(outs, want, "NEXTN 3 steps on a Quark MXFP4 export, bf16 MTP layer")
    assert acc.accept_length >= 2.0, acc.line()


@pytest.mark.full  # make test keeps the tree on MLA (above)
@pytest.mark.parametrize("family", ["glm4_moe", "mimo"])
def test_tree_drafts_on_the_gqa_families(engines, families, bundled_ids, family):
    """Top-k 2 tree drafts through our GQA verify path (page size 1, as SGLang needs)."""
    want = families.greedy(family, bundled_ids)
    outs = _serve(engines, families.path(family), bundled_ids, steps=3, topk=2, draft_tokens=6)
    acc = _check(outs, want, f"{family} NEXTN 3 steps, top-k 2, 6 draft tokens")
    assert acc.accept_length >= 2.0, acc.line()
