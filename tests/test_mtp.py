"""MTP heads without SGLang: acceptance sums, the NextN head, its checkpoint names."""

from __future__ import annotations

import json

import pytest
import torch

from sglang_amd.mtp import acceptance, teacher
from sglang_amd.mtp.checkpoint import SHARD, write_into_checkpoint
from sglang_amd.mtp.nextn_head import NextNHead
from tests.tiny_models import tiny_deepseek_v3, tiny_deepseek_v3_agreeing_mtp


def _meta(tokens: int, verify: int, correct: int, proposed: int) -> dict:
    return {"completion_tokens": tokens, "spec_verify_ct": verify,
            "spec_num_correct_drafts": correct, "spec_num_proposed_drafts": proposed}  # fmt: skip


def test_acceptance_sums_tokens_over_passes_not_ratios():
    acc = acceptance.from_meta(
        [_meta(30, 10, 20, 30), _meta(4, 4, 0, 12), {"completion_tokens": 1}]
    )
    assert acc.requests == 3
    assert acc.accept_length == pytest.approx(34 / 14)  # not (3 + 1) / 2
    assert acc.accept_rate == pytest.approx(20 / 42)
    assert acc.per_request == pytest.approx([3.0, 1.0])
    assert "accept length 2.43" in acc.line()
    assert acc.as_dict()["verify_passes"] == 14


def test_acceptance_refuses_responses_without_speculation():
    with pytest.raises(acceptance.NoSpeculationError, match="--speculative-algorithm"):
        acceptance.from_meta(
            [{"completion_tokens": 8}, {"completion_tokens": 8, "spec_verify_ct": 0}]
        )
    assert acceptance.from_meta([]).accept_length == 0.0


@pytest.fixture(scope="module")
def agreeing(smollm2_path, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    path = tiny_deepseek_v3_agreeing_mtp(tmp_path_factory.mktemp("mtp") / "m", smollm2_path)
    return path, AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def test_hf_mtp_loader_reads_our_checkpoint_and_agrees_with_the_head(agreeing):
    """transformers' own MTP model (`MtpModel`, an independent implementation of
    DeepSeek's MTP module) loads the layer we wrote, by the checkpoint names SGLang
    also reads (experts one by one, `shared_head.norm`), with nothing missing, and
    computes what `NextNHead` computes (fp32; the checkpoint is bf16, so the head
    is compared after the same rounding)."""
    from transformers.modeling_layers import MtpModel

    path, target = agreeing
    n = target.config.num_hidden_layers
    index = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
    mtp = {k for k, v in index.items() if v == SHARD}
    assert all(k.startswith(f"model.layers.{n}.") for k in mtp)
    # transformers finds MTP layers by its ignore patterns (61 for DeepSeek-V3's 61 layers)
    target._keys_to_ignore_on_load_unexpected = [rf"model\.layers\.{n}\..*"]
    hf = MtpModel.from_pretrained(target).float().eval()
    head = NextNHead(target)
    head.copy_target_layer()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    torch.manual_seed(0)
    t = 12
    hidden, ids = torch.randn(2, t, target.config.hidden_size), torch.randint(0, 49152, (2, t))
    pos = torch.arange(t).expand(2, t)
    mask = torch.full((t, t), float("-inf")).triu(1)[None, None]
    with torch.no_grad():
        embeds = target.model.embed_tokens(ids)
        want = hf.layers[0](embeds, hidden, position_embeddings=target.model.rotary_emb(embeds, pos),
                            attention_mask=mask, position_ids=pos, past_key_values=None)  # fmt: skip
        got = head(hidden, ids, pos)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # writing again replaces the layer in place
    write_into_checkpoint(head, path, torch.bfloat16)
    assert json.loads((path / "model.safetensors.index.json").read_text())["weight_map"] == index


def test_copied_head_drafts_what_the_target_says(agreeing, prompts):
    """Teacher-forced agreement of the copied head at draft steps 1-3 (SGLang then
    accepts ~2.9 tokens a pass at 3 steps: test_e2e_mtp); a random head agrees ~never."""
    _, target = agreeing
    seqs = teacher.greedy_continuations(target, [p.ids for p in prompts[:4]], 16)
    traces = teacher.teacher_traces(target, seqs)
    head = NextNHead(target)
    with torch.no_grad():
        head.eh_proj.weight.normal_(0.0, 0.2)  # a random head
    assert max(teacher.agreement(head, traces, 2)) < 0.1
    head.copy_target_layer()
    rates = teacher.agreement(head, traces, 3)
    print("agreement per draft step", rates)
    assert min(rates) > 0.6


def test_heads_refuse_what_sglang_would_not_load(smollm2_path, tmp_path):
    from transformers import AutoModelForCausalLM

    dense = tiny_deepseek_v3(tmp_path / "dense", smollm2_path, dense=True, nextn=True)
    target = AutoModelForCausalLM.from_pretrained(dense, dtype=torch.float32)
    with pytest.raises(ValueError, match="always MoE"):
        NextNHead(target).copy_target_layer()
    target.config.num_nextn_predict_layers = 0
    with pytest.raises(ValueError, match="EAGLE3"):
        NextNHead(target)


def test_bench_mtp_refuses_bad_options_naming_them(capsys):
    from sglang_amd.bench import sglang_mtp as mtp

    for argv, needle in (
        (["--model", "m", "--batches", "1,x"], "--batches '1,x'"),
        (["--model", "m", "--batches", "0"], "--batches needs sizes >= 1"),
        (["--model", "m", "--new-tokens", "1"], "--new-tokens at least 2"),
    ):
        with pytest.raises(SystemExit):
            mtp.parse_args(argv)
        assert needle in capsys.readouterr().err
    ns = mtp.parse_args(
        ["--model", "m", "--steps", "2", "--device", "cpu", "--simulate-acc-len", "1.5"]
    )
    assert ns.draft_tokens == 3 and ns.batches == [1, 4, 16]
    spec = mtp.engine_kwargs(ns, True)
    assert spec["speculative_num_draft_tokens"] == 3 and spec["dtype"] == "float32"
    assert spec["disable_radix_cache"]  # else the N-token run skips the prefill the 1-token run paid
    assert "speculative_algorithm" not in mtp.engine_kwargs(ns, False)
    # the CPU platform: our torch tier for both; the interpreter and the simulated
    # acceptance only for the speculative engine
    assert mtp.engine_env(ns, False) == {"SGLANG_AMD_TIER": "torch"}
    assert mtp.engine_env(ns, True) == {"SGLANG_AMD_TIER": "torch", "TRITON_INTERPRET": "1",
                                        mtp.SIMULATE_ENV: "1.5"}  # fmt: skip


@pytest.mark.e2e
@pytest.mark.sglang
@pytest.mark.full  # two engines; test_e2e_mtp serves the same model in make test
def test_bench_mtp_smoke_writes_table_json_and_png(agreeing, tmp_path, capsys):
    from sglang_amd import cli
    from tests.e2e_engines import engine_environment, ensure_cpu_platform

    ensure_cpu_platform()
    path, _ = agreeing
    argv = ["bench", "mtp", "--model", str(path), "--batches", "1,2", "--new-tokens", "8",
            "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    with engine_environment():
        assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "sglang-amd bench mtp | CPU platform" in out and "accept len" in out
    result = json.loads((tmp_path / "mtp.json").read_text())
    assert [r["batch"] for r in result["rows"]] == [1, 2]
    for r in result["rows"]:
        assert r["identical"] == r["batch"]  # greedy: the same tokens with and without MTP
        assert r["accept_length"] > 1.0 and r["base_tok_s"] > 0 and r["mtp_tok_s"] > 0
    assert (tmp_path / "mtp.png").is_file()
