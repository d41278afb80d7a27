"""`sglang-amd doctor` on published configs (tests/data/doctor/*/config.json, sources in
each SOURCE.md), each planned for the plain launch (tp 1) on one MI300X: the whole report
against the one checked in beside it (expected.json), and the facts that matter checked by
their own arithmetic, so a regenerated expected file cannot hide a wrong number. Regenerate
the expected files after a deliberate change with SGLANG_AMD_UPDATE_DOCTOR_FIXTURES=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sglang_amd.doctor.gpu_budget import GPUS

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
        return {name: probe(str(FIXTURES / name), [], gpu=GPUS["MI300X"]) for name in NAMES}


@pytest.fixture(scope="module")
def probe_one(reports):
    """One more launch through the doctor (after `reports`, so SGLang is imported once)."""
    from sglang_amd.doctor.sglang_probe import probe
    from tests.e2e_engines import engine_environment

    def run(name: str, flags: list[str], **kwargs) -> dict:
        with engine_environment():
            return probe(str(FIXTURES / name), flags, **kwargs)

    return run


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
    assert (
        llama["context_length"] == 131072 and llama["one_request_at_context_gib_per_rank"] == 16.0
    )


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
    # Served on this machine's CPU platform (a GPU would refuse it at start); on one
    # MI300X its 671B parameters are what block it.
    assert dsa["tiers"]["attention.indexer"] and dsa["tiers"]["attention.sparse"]
    assert dsa["blocking"][0].startswith("weights do not fit")
    oss = reports["gpt-oss-120b"]
    assert (
        "attention sinks" in oss["attention"]["path"]
        and "sliding window 128 on 18" in oss["attention"]["path"]
    )
    assert "Unknown quantization method: mxfp4" in oss["blocking"][0]
    # The rest resolve; on one MI300X at tp 1 only the three smallest fit (the GPU budget).
    too_big = {"deepseek-v3", "kimi-k2", "quark-mxfp4", "qwen3-235b-a22b", "glm-4.5"}
    for n in set(NAMES) - {"deepseek-v3.2", "gpt-oss-120b"}:
        assert "sglang_class" in reports[n]
        want = ["weights do not fit"] if n in too_big else []
        assert [b[: len("weights do not fit")] for b in reports[n]["blocking"]] == want, n


def test_mtp_layers_outside_the_exclude_list_are_reported(reports):
    q = reports["quark-mxfp4"]
    assert q["quantization"]["checkpoint_method"] == "quark"
    assert q["quantization"]["mtp_layers_excluded"] is False
    assert any(
        "do not cover the MTP layers" in n or "does not cover the MTP layers" in n
        for n in q["notes"]
    )
    # MXFP4 experts: about half a byte per parameter against fp8's one
    assert 0.45 < q["weights"]["total_gib"] / reports["deepseek-v3"]["weights"]["total_gib"] < 0.65


def test_a_directory_without_config_is_a_usage_error(tmp_path, capsys):
    from sglang_amd import cli

    assert cli.main(["doctor", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err


# Qwen3-Next's Gated DeltaNet layers (config.json): 16 key heads and 32 value heads of 128,
# a causal conv of kernel 4 over q, k and v, and a 128x128 state per value head.
_QWEN3_NEXT_CONV = (2 * 16 * 128 + 32 * 128) * (4 - 1)  # elements per layer, bf16
_QWEN3_NEXT_SSM = 32 * 128 * 128  # elements per layer, fp32 unless --mamba-ssm-dtype


def test_linear_state_is_conv_plus_ssm_over_the_linear_layers(reports):
    from sglang_amd.doctor.cli import text

    st = reports["qwen3-next"]["linear_state"]
    assert st["layers"] == 36 and st["conv_dtype"] == "bfloat16" and st["ssm_dtype"] == "float32"
    assert st["bytes_per_request_per_rank"] == 36 * (_QWEN3_NEXT_CONV * 2 + _QWEN3_NEXT_SSM * 4)
    assert st["bytes_per_request_per_rank"] == 77_266_944  # 73.7 MiB a request
    assert st["sglang_config"].endswith("Qwen3NextConfig.mamba2_cache_params")
    assert all("linear_state" not in reports[n] for n in NAMES if n != "qwen3-next")
    assert "linear state   77,266,944 B per request per rank (36 layers" in text(
        reports["qwen3-next"]
    )


def test_linear_state_shards_over_tp_and_follows_the_ssm_dtype_flag(probe_one):
    r = probe_one("qwen3-next", ["--mamba-ssm-dtype", "bfloat16"], tp=4, weights=False)
    st = r["linear_state"]
    assert st["ssm_dtype"] == "bfloat16" and st["ssm_shape_per_layer"] == [8, 128, 128]
    assert st["bytes_per_request_per_rank"] == 36 * (_QWEN3_NEXT_CONV + _QWEN3_NEXT_SSM) * 2 // 4


def test_default_mem_fraction_static_is_sglangs_rule():
    """memory_hook.handle_gpu_memory_settings, by hand: reserve 512 MiB + 1.5 MiB per chunked
    prefill token + 128 MiB per 8 ranks... + 2 MiB per decode graph batch + prefill graphs."""
    from sglang.srt.arg_groups.cuda_graph_hook import generate_prefill_cuda_graph_batch_sizes

    from sglang_amd.doctor.gpu_budget import (
        LaunchShape,
        default_mem_fraction_static,
        prefill_graph_sizes,
    )

    for max_bs in (2048, 4096, 8192, 16384):
        assert prefill_graph_sizes(max_bs) == generate_prefill_cuda_graph_batch_sizes(max_bs)
    # H100 (80 GiB, CUDA), tp 1, GQA: chunk 8192, 256 decode graphs, 58 prefill graphs of 8 MiB.
    reserved = 512 + 8192 * 1.5 + 1024 / 8 + 256 * 2 + 58 * 8
    assert (
        default_mem_fraction_static(GPUS["H100"], LaunchShape())
        == round(1 - reserved / 81920, 3)
        == 0.830
    )
    # MI300X (192 GiB, ROCm: no prefill graphs), tp 8, MLA: chunk 16384, 512 decode graphs.
    reserved = 512 + 16384 * 1.5 + 1024 + 512 * 2
    assert default_mem_fraction_static(GPUS["MI300X"], LaunchShape(tp=8, mla=True)) == 0.862
    assert round(1 - reserved / 196608, 3) == 0.862
    # H100, tp 8, MLA: its prefill graphs reserve a flat 1.5 GiB.
    assert default_mem_fraction_static(GPUS["H100"], LaunchShape(tp=8, mla=True)) == 0.8


def test_llama_on_one_h100(probe_one):
    """8,030,261,248 bf16 parameters; 0.830 x 80 GiB static; 128 KiB of KV a token."""
    r = probe_one("llama-3.1-8b", [], gpu=GPUS["H100"])
    params = (
        2 * 128256 * 4096
        + 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096)
        + 4096
    )
    assert params == 8_030_261_248 and r["weights"]["per_rank_bytes"] == 2 * params
    b = r["gpu_budget"]
    assert (
        b["mem_fraction_static"] == 0.83
        and b["mem_fraction_static_from"] == "SGLang's default rule"
    )
    assert (
        b["kv_tokens_per_rank"]
        == int((80 * 0.83 - 2 * params / 2**30) * 2**30) // 131072
        == 421_416
    )
    assert b["requests_at_full_context"] == 3 and b["max_running_requests"] == 2048
    assert not r["blocking"]


def test_weights_that_do_not_fit_block_naming_the_flags(reports, probe_one):
    # A given fraction is used as given: 0.15 x 80 GiB = 12 GiB < 14.96 GiB of weights.
    r = probe_one("llama-3.1-8b", ["--mem-fraction-static", "0.15"], gpu=GPUS["H100"])
    assert r["gpu_budget"]["mem_fraction_static_from"] == "--mem-fraction-static"
    assert "kv_tokens_per_rank" not in r["gpu_budget"]
    (why,) = r["blocking"]
    assert why.startswith(
        "weights do not fit: 14.96 GiB per rank against 0.15 x 80 GiB = 12.00 GiB"
    )
    assert "raise --tp-size (the weights shard over it) or --mem-fraction-static above 0.187" in why
    # DeepSeek-V3 on one MI300X: no fraction helps.
    (why,) = reports["deepseek-v3"]["blocking"]
    assert "--tp-size 1" in why and "no --mem-fraction-static can help" in why


def test_deepseek_v3_on_eight_mi300x(probe_one):
    """MLA keeps one 576-wide latent per layer on every rank; weights shard eight ways."""
    r = probe_one("deepseek-v3", [], tp=8, gpu=GPUS["MI300X"])
    b, w = r["gpu_budget"], r["weights"]["per_rank_bytes"]
    assert 75 < w / 2**30 < 85  # ~671e9 fp8 parameters / 8, plus the replicated norms
    assert b["mem_fraction_static"] == 0.862
    assert b["kv_tokens_per_rank"] == int((192 * 0.862 - w / 2**30) * 2**30) // (
        (512 + 64) * 61 * 2
    )
    assert not r["blocking"] and r["launch"].endswith("--tp-size 8")


def test_hybrid_budget_splits_the_rest_between_state_and_kv(reports):
    """_handle_max_mamba_cache: 0.9/1.9 of what the weights leave goes to state slots; Qwen3-Next
    resolves the extra-buffer strategy with overlap, 3 + 2 slots a running request."""
    r = reports["qwen3-next"]
    b, w, per = r["gpu_budget"], r["weights"]["per_rank_bytes"], 77_266_944
    # MI300X, tp 1, GQA: 512 + 16384 x 1.5 + 128 + 512 x 2 MiB reserved of 196608
    assert b["mem_fraction_static"] == 0.867
    rest = (192 - w / 2**30) - 192 * (1 - 0.867)
    slots = int((rest * 0.9 / 1.9 * 2**30 - per) // per)
    assert b["linear_state"] == {"slots": slots, "slots_per_request": 5, "requests": slots // 5,
                                 "gib_per_rank": round((slots + 1) * per / 2**30, 2)}  # fmt: skip
    assert slots == 117 and b["max_running_requests"] == 23
    kv = int((rest - (slots + 1) * per / 2**30) * 2**30)
    assert b["kv_tokens_per_rank"] == kv // (2 * 256 * 2 * 12 * 2)


@pytest.mark.parametrize(
    "flags,gpu,device,want",
    [
        ({}, "MI300X", "cpu", ("on (SGLang default)", "off (SGLang default on ROCm)")),
        ({}, "H100", "cuda", ("on (SGLang default)", "on (SGLang default on CUDA)")),
        ({"disable_cuda_graph": True}, "H100", "cuda", ("disabled (flag)", "disabled (flag)")),
        ({"disable_prefill_cuda_graph": True}, "B200", "cuda",
         ("on (SGLang default)", "disabled (flag)")),
        ({"cuda_graph_backend_decode": "breakable"}, "MI355X", "cuda",
         ("breakable", "off (SGLang default on ROCm)")),
        ({}, None, "cpu", ("disabled (CPU server)", "disabled (CPU server)")),
        ({"pp_size": 2}, "H100", "cuda",
         ("on (SGLang default)", "off (SGLang default under pipeline parallelism)")),
    ],
)  # fmt: skip
def test_cuda_graph_phases_follow_the_flags_and_the_planned_gpu(flags, gpu, device, want):
    """The phases are read from the flags (SGLang resolves its graph config only inside
    the server: reading that gave "disabled" for every plan)."""
    from types import SimpleNamespace

    pytest.importorskip("sglang")
    from sglang_amd.doctor import sglang_memory

    base = dict(disable_cuda_graph=False, disable_decode_cuda_graph=False,
                disable_prefill_cuda_graph=False, cuda_graph_backend_decode=None,
                cuda_graph_backend_prefill=None, pp_size=1)  # fmt: skip
    view = SimpleNamespace(**{**base, **flags})
    got = sglang_memory.graph_phases(view, device, GPUS[gpu] if gpu else None)
    assert (got["decode"], got["prefill"]) == want
