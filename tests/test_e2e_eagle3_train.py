"""An EAGLE3 head trained by `sglang-amd mtp train` for SmolLM2 (which ships no MTP
layer), served by SGLang through `--attention-backend amd`.

The head is self-distilled on SmolLM2's own chat answers to the 64 GSM8K training
questions in tests/data (8 held out); it is judged on the 16 GSM8K *test*
questions it never saw: greedy output identical to HF fp32 (16 prompts x 32
tokens, chat template applied), mean accept length >= 1.5 by SGLang's figures.
`full` only: training takes 9-15 minutes on 2 cores.
"""

from __future__ import annotations

import json

import pytest

from sglang_amd import cli
from sglang_amd.mtp import acceptance
from sglang_amd.mtp.eagle3_train import prompt_ids

# Training alone takes 9-15 minutes on 2 shared cores: past pytest's 900 s default.
pytestmark = [pytest.mark.e2e, pytest.mark.sglang, pytest.mark.full, pytest.mark.timeout(2400)]

SPEC_ENV = {"TRITON_INTERPRET": "1", "SGLANG_AMD_TIER": "torch"}
NEW_TOKENS = 32


def test_trained_eagle3_head_drafts_for_smollm2(engines, smollm2_path, hf_oracle, tmp_path):
    from transformers import AutoTokenizer

    head = tmp_path / "smollm2-eagle3"
    argv = ["mtp", "train", "--model", smollm2_path, "--out", str(head), "--data",
            "tests/data/gsm8k/train_first64.jsonl", "--draft-vocab", "8192", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    figures = json.loads((head / "train.json").read_text())
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    questions = [
        json.loads(line)["question"] for line in open("tests/data/gsm8k/test_first16.jsonl")
    ]
    ids = [list(prompt_ids(tok, q, chat=True)) for q in questions]
    want = [hf_oracle.greedy(p, NEW_TOKENS) for p in ids]
    engine = engines.get(
        env=SPEC_ENV,
        attention_backend="amd",
        dtype="float32",
        page_size=16,
        disable_overlap_schedule=True,
        speculative_algorithm="EAGLE3",
        speculative_draft_model_path=str(head),
        speculative_num_steps=3,
        speculative_eagle_topk=1,
        speculative_num_draft_tokens=4,
    )
    outs = engine.generate(
        input_ids=ids, sampling_params={"temperature": 0, "max_new_tokens": NEW_TOKENS}
    )
    differ = [i for i, (o, w) in enumerate(zip(outs, want, strict=True)) if o["output_ids"] != w]
    assert not differ, f"EAGLE3 greedy output differs from HF fp32 on prompts {differ}"
    acc = acceptance.from_meta(o["meta_info"] for o in outs)
    print(f"trained in {figures['seconds']:.0f} s (+{figures['data_seconds']:.0f} s of teacher "
          f"data), held-out agreement {figures['agreement_held_out']}; served: {acc.line()}")  # fmt: skip
    assert acc.accept_length >= 1.5, acc.line()
