"""Tiny DeepSeek-V3 models (MLA, kv_lora_rank 64 != qk_nope_head_dim 32; and MLA + MoE
with grouped sigmoid routing, correction bias, shared expert, routed scaling 2.5)
served by stock SGLang through `--attention-backend amd`, judged by HF fp32.

SGLang hands MLA to a backend in two forms: fresh prefill as plain MHA over the
decompressed K/V of the new tokens (the pool holds only the latent), and decode /
extend over a cached prefix in the absorbed form over the latent pool (V = the
first kv_lora_rank columns). The shared-prefix prompts make the second form run
in extend too (cached tokens > 0 asserted); page size 16 and 48-token chunks too.
"""

from __future__ import annotations

import os

import pytest

from sglang_amd import trace
from tests.oracle import (
    HFOracle,
    check_fp32_against_hf,
    logprob_errors,
    summarize,
)
from tests.tiny_models import fake_quantized_copy, quark_mxfp4_export, tiny_deepseek_v3

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

GREEDY_TOKENS = 16
FP32 = dict(attention_backend="amd", dtype="float32", page_size=16, chunked_prefill_size=48)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-dsv3")


def _scheduler_events(engines) -> set[tuple[str, str | None]]:
    events = trace.read(engines.trace_file)
    return {(e["event"], e.get("tier")) for e in events if e["pid"] != os.getpid()}


@pytest.mark.full
def test_fp32_dense_mla_matches_hf(engines, tiny_dir, smollm2_path, prompts):
    path = str(tiny_deepseek_v3(tiny_dir / "dense", smollm2_path, dense=True))
    check_fp32_against_hf(engines.get(model_path=path, **FP32), HFOracle(path), prompts)
    assert {("forward_extend", "torch"), ("forward_decode", "torch")} <= _scheduler_events(engines)


@pytest.mark.full  # SGLang's backend, patched; MLA itself is served in make test by ours
def test_torch_native_with_our_patch_matches_hf(engines, tiny_dir, smollm2_path, prompts):
    """patches/torch_native_mla.py: SGLang's own torch_native now agrees with HF on MLA
    (unpatched it raises a shape error on this config: kv_lora_rank != qk_nope_head_dim)."""
    path = str(tiny_deepseek_v3(tiny_dir / "dense", smollm2_path, dense=True))
    engine = engines.get(model_path=path, **{**FP32, "attention_backend": "torch_native"})
    check_fp32_against_hf(engine, HFOracle(path), prompts[:6])


def test_fp32_mla_moe_matches_hf(engines, tiny_dir, smollm2_path, prompts):
    path = str(tiny_deepseek_v3(tiny_dir / "moe", smollm2_path))
    engine = engines.get(model_path=path, moe_runner_backend="amd", **FP32)
    check_fp32_against_hf(engine, HFOracle(path), prompts)
    assert ("forward_moe", "torch") in _scheduler_events(engines)


def test_doctor_says_what_the_mla_engine_does(engines, tiny_dir, smollm2_path):
    """The engine of the test above (same arguments: no new start) against the doctor:
    MLA's KV bytes are the latent and the rope part once per layer."""
    from tests.doctor_twin import check_twin, tiers_seen

    path = str(tiny_deepseek_v3(tiny_dir / "moe", smollm2_path))
    kwargs = dict(moe_runner_backend="amd", **FP32)
    out = check_twin(engines.get(model_path=path, **kwargs), path, kwargs, tiers_seen(engines.trace_file))
    assert out["doctor"]["attention"]["path"] == "MLA"


@pytest.mark.full
def test_fp32_mla_moe_mxfp4_matches_fake_quantized_hf(engines, tiny_dir, smollm2_path, prompts):
    src = tiny_deepseek_v3(tiny_dir / "moe", smollm2_path)
    oracle = HFOracle(str(fake_quantized_copy(src, tiny_dir / "moe-mxfp4-fq")))
    engine = engines.get(model_path=str(src), quantization="amd_mxfp4", **FP32)
    check_fp32_against_hf(engine, oracle, prompts)


# MLA's own projections; SGLang fuses q_a_proj and kv_a_proj_with_mqa into one
# linear while loading, and DeepSeek splits kv_b_proj into the absorbed w_kc / w_vc.
MLA_MXFP4 = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")


@pytest.mark.full
def test_fp32_quark_export_with_mxfp4_mla_matches_fake_quantized_hf(
    engines, tiny_dir, smollm2_path, prompts
):
    """A Quark export that also packs the attention projections, kv_b_proj included:
    the model reads kv_b_proj.weight while loading, so ours decodes it to float the
    moment it is loaded (a packed one would be split as bytes)."""
    src = tiny_deepseek_v3(tiny_dir / "moe", smollm2_path)
    oracle = HFOracle(str(fake_quantized_copy(src, tiny_dir / "moe-fq-mla", MLA_MXFP4)))
    export = quark_mxfp4_export(src, tiny_dir / "moe-quark-mla", MLA_MXFP4)
    engine = engines.get(model_path=str(export), quantization="amd_mxfp4", **FP32)
    check_fp32_against_hf(engine, oracle, prompts[:6])
    events = {e for e, _ in _scheduler_events(engines)}
    want = {"mxfp4_loaded", "mxfp4_linear_loaded", "mxfp4_linear_decoded_at_load"}
    assert want <= events, events


@pytest.mark.full
def test_triton_tiers_inside_sglang_match_hf(engines, tiny_dir, smollm2_path, prompts):
    """Our Triton attention (MHA prefill, absorbed MLA decode/extend) and Triton fused
    MoE (MXFP4 W4A16) inside SGLang, interpreted on CPU: same oracle, same bound."""
    src = tiny_deepseek_v3(tiny_dir / "moe", smollm2_path)
    oracle = HFOracle(str(fake_quantized_copy(src, tiny_dir / "moe-mxfp4-fq")))
    engine = engines.get(
        env={"TRITON_INTERPRET": "1"}, model_path=str(src), quantization="amd_mxfp4", **FP32
    )
    check_fp32_against_hf(engine, oracle, prompts[:6])
    events = _scheduler_events(engines)
    assert {("forward_extend", "triton"), ("forward_decode", "triton")} <= events, events
    assert ("forward_moe", "triton") in events, events


@pytest.mark.full
def test_bf16_mla_moe_no_noisier_than_sglang(engines, tiny_dir, smollm2_path, prompts):
    """bf16 against HF fp32: ours (amd attention + amd MoE runner) against SGLang's own
    path (torch_native, patched for MLA, and its default MoE) on the same checkpoint."""
    path = str(tiny_deepseek_v3(tiny_dir / "moe", smollm2_path))
    oracle = HFOracle(path)
    theirs, _ = logprob_errors(
        engines.get(model_path=path, attention_backend="torch_native", dtype="bfloat16"),
        oracle,
        prompts,
    )
    ours, _ = logprob_errors(
        engines.get(
            model_path=path, attention_backend="amd", moe_runner_backend="amd", dtype="bfloat16"
        ),
        oracle,
        prompts,
    )
    (o_max, o_mean), (t_max, t_mean) = summarize(ours), summarize(theirs)
    print(
        f"bf16 vs HF fp32 (tiny DeepSeek-V3): amd max {o_max:.3f} mean {o_mean:.4f}; "
        f"SGLang torch_native max {t_max:.3f} mean {t_mean:.4f}"
    )
    assert o_mean <= t_mean * 1.25
    assert o_max <= t_max * 1.5
