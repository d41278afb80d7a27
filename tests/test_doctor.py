"""`sglang-amd doctor` on published configs (tests/data/doctor/*/config.json, sources in
each SOURCE.md): the whole report against the one checked in beside it (expected.json),
and the facts that matter checked by their own arithmetic, so a regenerated expected file
cannot hide a wrong number. Regenerate the expected files after a deliberate change with
SGLANG_AMD_UPDATE_DOCTOR_FIXTURES=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sglang]

FIXTURES = Path(__file__).parent / "data" / "doctor"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").is_file())


@pytest.fixture(scope="module")
def reports() -> dict[str, dict]:
    """Each fixture through the doctor in this process (SGLang is imported once for the
    session), seeing the environment a server would."""
    from sglang_amd.doctor.sglang_probe import probe
    from tests.e2e_engines import engine_environment

    with engine_environment():
        return {name: probe(str(FIXTURES / name), []) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_report_matches_the_checked_in_one(reports, name):
    got = {k: v for k, v in reports[name].items() if k not in ("model", "launch")}
    got = json.loads(json.dumps(got, default=str))
    path = FIXTURES / name / "expected.json"
    if os.environ.get("SGLANG_AMD_UPDATE_DOCTOR_FIXTURES") == "1":
        path.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(path.read_text())
    assert reports[name]["launch"] == f"sglang-amd serve --model-path {FIXTURES / name}"


def _kv(r: dict) -> int:
    return r["kv_cache"]["bytes_per_token_per_rank"]["full"]


def test_mla_models_store_the_latent_once_per_layer(reports):
    v3 = reports["deepseek-v3"]
    assert v3["attention"]["path"] == "MLA" and _kv(v3) == (512 + 64) * 61 * 2
    assert v3["draft_class"].endswith("DeepseekV3ForCausalLMNextN") and v3["mtp_layers"] == 1
    kimi = reports["kimi-k2"]  # model_type kimi_k2: the DeepSeek-V3 class, 384 experts, no MTP
    assert kimi["sglang_class"] == v3["sglang_class"] and kimi["moe"]["experts"] == 384
    assert kimi["mtp_layers"] == 0 and "draft_class" not in kimi
    assert 0.9 < kimi["weights"]["total_gib"] * 2**30 / 1.0e12 < 1.1  # ~1T parameters in fp8


def test_gqa_kv_bytes_are_kv_heads_times_k_and_v_times_layers(reports):
    assert _kv(reports["llama-3.1-8b"]) == 8 * 128 * 2 * 32 * 2
    assert _kv(reports["qwen3-235b-a22b"]) == 4 * 128 * 2 * 94 * 2
    assert _kv(reports["qwen3-32b"]) == 8 * 128 * 2 * 64 * 2
    assert 14 < reports["llama-3.1-8b"]["weights"]["total_gib"] < 15.5  # 8.0e9 parameters, bf16
    llama = reports["llama-3.1-8b"]["kv_cache"]
    assert llama["context_length"] == 131072 and llama["one_request_at_context_gib_per_rank"] == 16.0


def test_sliding_layers_hold_only_their_window():
    from types import SimpleNamespace

    from sglang_amd.doctor.model_facts import attention, kv_bytes_per_request

    cfg = SimpleNamespace(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=64,
                          layer_types=["sliding_attention", "full_attention"] * 2, sliding_window=128)  # fmt: skip
    att = attention(cfg)
    assert att.layers == {"sliding": 2, "full": 2} and att.sliding_window == 128
    assert kv_bytes_per_request(att, {"full": 10, "sliding": 10}, 1000) == 10 * 1000 + 10 * 128


def test_hybrid_linear_attention_counts_only_full_layers(reports):
    nxt = reports["qwen3-next"]
    assert nxt["attention"]["layers"] == {"full": 12, "linear": 36}
    assert nxt["attention"]["path"].startswith("hybrid: 36 linear-attention + 12 GQA")
    assert _kv(nxt) == 2 * 256 * 2 * 12 * 2


def test_what_blocks_serving_is_named(reports):
    dsa = reports["deepseek-v3.2"]
    assert dsa["attention"]["path"] == "DSA (MLA + top-k indexer)"
    assert "--attention-backend amd does not serve DeepSeek sparse attention" in dsa["blocking"][0]
    oss = reports["gpt-oss-120b"]
    assert "attention sinks" in oss["attention"]["path"] and "sliding window 128 on 18" in oss["attention"]["path"]
    assert "Unknown quantization method: mxfp4" in oss["blocking"][0]
    assert all(not reports[n]["blocking"] for n in NAMES if n not in ("deepseek-v3.2", "gpt-oss-120b"))


def test_mtp_layers_outside_the_exclude_list_are_reported(reports):
    q = reports["quark-mxfp4"]
    assert q["quantization"]["checkpoint_method"] == "quark"
    assert q["quantization"]["mtp_layers_excluded"] is False
    assert any("do not cover the MTP layers" in n or "does not cover the MTP layers" in n for n in q["notes"])
    # MXFP4 experts: about half a byte per parameter against fp8's one
    assert 0.45 < q["weights"]["total_gib"] / reports["deepseek-v3"]["weights"]["total_gib"] < 0.65


def test_a_directory_without_config_is_a_usage_error(tmp_path, capsys):
    from sglang_amd import cli

    assert cli.main(["doctor", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err
