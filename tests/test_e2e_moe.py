"""A tiny random Qwen3-MoE served by stock SGLang through `--moe-runner-backend amd`
and `--quantization amd_mxfp4`, judged by HF transformers' float32 forward.

Oracles: the checkpoint itself for unquantized serving, and the same HF model
with every expert weight replaced by dequantize(quantize(w)) for MXFP4. In
float32 ours must match to 1e-3 and token for token (SGLang's own fp32 path
matches HF to 1e-4 on this model). In bf16 ours must be no noisier than
SGLang's own bf16 path against HF fp32, measured in the same run.
"""

from __future__ import annotations

import pytest

from sglang_amd import trace
from tests.oracle import (
    HFOracle,
    check_fp32_against_hf,
    logprob_errors,
    sglang_greedy,
    summarize,
)
from tests.tiny_models import (
    DENSE_MXFP4,
    fake_quantized_copy,
    quark_mxfp4_export,
    tiny_qwen3_moe,
)

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

GREEDY_TOKENS = 16
FP32 = dict(attention_backend="amd", moe_runner_backend="amd", dtype="float32")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def moe_path(tiny_dir, smollm2_path) -> str:
    return str(tiny_qwen3_moe(tiny_dir / "qwen3-moe", smollm2_path))


@pytest.fixture(scope="module")
def moe_fq_path(tiny_dir, moe_path) -> str:
    """The same model with dequantize(quantize(w)) experts (the MXFP4 oracle)."""
    return str(fake_quantized_copy(tiny_dir / "qwen3-moe", tiny_dir / "qwen3-moe-mxfp4-fq"))


@pytest.fixture(scope="module")
def hf_moe(moe_path) -> HFOracle:
    return HFOracle(moe_path)


@pytest.fixture(scope="module")
def hf_moe_mxfp4(moe_fq_path) -> HFOracle:
    return HFOracle(moe_fq_path)


def _events_from_scheduler(engines) -> list[dict]:
    import os

    return [e for e in trace.read(engines.trace_file) if e["pid"] != os.getpid()]


def test_fp32_unquantized_runner_matches_hf(engines, moe_path, hf_moe, prompts):
    # Page size 16 and 48-token prefill chunks: several chunks per long prompt.
    engine = engines.get(model_path=moe_path, page_size=16, chunked_prefill_size=48, **FP32)
    check_fp32_against_hf(engine, hf_moe, prompts)
    events = _events_from_scheduler(engines)
    assert any(e["event"] == "moe_runner_init" for e in events), events
    assert {"event": "forward_moe", "tier": "torch", "weights": "float32"} in [
        {k: v for k, v in e.items() if k != "pid"} for e in events
    ], events


def test_doctor_says_what_the_moe_engine_does(engines, moe_path):
    """The engine of the test above (same arguments: no new start) against the doctor."""
    from tests.doctor_twin import check_twin, tiers_seen

    kwargs = dict(page_size=16, chunked_prefill_size=48, **FP32)
    out = check_twin(engines.get(model_path=moe_path, **kwargs), moe_path, kwargs, tiers_seen(engines.trace_file))
    assert out["doctor"]["tiers"]["moe.fused"] == "torch" and out["doctor"]["moe"]["experts"] > 1


def test_fp32_mxfp4_matches_fake_quantized_hf(engines, moe_path, hf_moe, hf_moe_mxfp4, prompts):
    engine = engines.get(model_path=moe_path, quantization="amd_mxfp4", **FP32)
    check_fp32_against_hf(engine, hf_moe_mxfp4, prompts)
    # The quantization really happened: unquantized HF is far from what we served.
    errors, _ = logprob_errors(engine, hf_moe, prompts[:3])
    assert summarize(errors)[0] > 1e-2
    events = _events_from_scheduler(engines)
    assert any(e["event"] == "mxfp4_quantized" for e in events), events
    assert any(e["event"] == "forward_moe" and e["weights"] == "mxfp4" for e in events), events


@pytest.fixture(scope="module")
def hf_moe_mxfp4_dense(tiny_dir, moe_path) -> HFOracle:
    """Experts and attention projections dequantize(quantize(w)); routers, lm_head float."""
    src = tiny_dir / "qwen3-moe"
    return HFOracle(str(fake_quantized_copy(src, tiny_dir / "qwen3-moe-fq-dense", DENSE_MXFP4)))


def test_fp32_quark_mxfp4_export_matches_fake_quantized_hf(
    engines, moe_path, tiny_dir, hf_moe_mxfp4_dense, prompts
):
    """A pre-quantized checkpoint (Quark's OCP MXFP4 layout: experts and attention
    projections packed, routers and lm_head excluded) read by `--quantization amd_mxfp4`."""
    src = tiny_dir / "qwen3-moe"
    export = quark_mxfp4_export(src, tiny_dir / "qwen3-moe-quark-mxfp4", DENSE_MXFP4)
    engine = engines.get(model_path=str(export), quantization="amd_mxfp4", **FP32)
    check_fp32_against_hf(engine, hf_moe_mxfp4_dense, prompts)
    events = [e["event"] for e in _events_from_scheduler(engines)]
    assert "mxfp4_loaded" in events and "mxfp4_linear_loaded" in events, events


def test_triton_tiers_serve_the_quark_export(engines, tiny_dir, hf_moe_mxfp4_dense, prompts):
    """The same export through our Triton tiers inside SGLang (interpreted on CPU):
    attention projections on the dense MXFP4 GEMM (weight decoded in the loop), experts
    on the fused MoE, attention on the Triton kernels; same oracle, same bound."""
    export = quark_mxfp4_export(tiny_dir / "qwen3-moe", tiny_dir / "qwen3-moe-quark-mxfp4")
    engine = engines.get(
        env={"TRITON_INTERPRET": "1"}, model_path=str(export), quantization="amd_mxfp4", **FP32
    )
    # Two prompts sharing a prefix (the cache is hit) and 8 greedy tokens: the
    # interpreter runs every kernel on the CPU, and CI's time is bounded.
    check_fp32_against_hf(engine, hf_moe_mxfp4_dense, prompts[:2], greedy_tokens=8)
    events = {(e["event"], e.get("tier")) for e in _events_from_scheduler(engines)}
    want = {("forward_mxfp4_linear", "triton"), ("forward_moe", "triton")}
    assert want | {("forward_decode", "triton")} <= events, events


@pytest.mark.full
def test_fp32_online_dense_mxfp4_matches_fake_quantized_hf(
    engines, moe_path, hf_moe_mxfp4_dense, prompts
):
    """SGLANG_AMD_MXFP4_DENSE=1: dense linears quantized at load too (routers and lm_head
    stay float), so this serves the same weights as the Quark export above."""
    engine = engines.get(
        env={"SGLANG_AMD_MXFP4_DENSE": "1"},
        model_path=moe_path,
        quantization="amd_mxfp4",
        **FP32,
    )
    check_fp32_against_hf(engine, hf_moe_mxfp4_dense, prompts[:6])
    events = [e["event"] for e in _events_from_scheduler(engines)]
    assert "mxfp4_linear_quantized" in events, events


def _greedy_agreement(engine, oracle, prompts) -> int:
    return sum(
        sglang_greedy(engine, p, GREEDY_TOKENS) == oracle.greedy(p.ids, GREEDY_TOKENS)
        for p in prompts
    )


@pytest.mark.full  # bf16 noise is checked in make test on SmolLM2 (test_e2e_smollm2)
def test_bf16_mxfp4_within_sglang_noise(engines, moe_path, moe_fq_path, hf_moe_mxfp4, prompts):
    """bf16 noise against HF fp32 on the same (fake-quantized) weights: ours serving
    the float checkpoint with `--quantization amd_mxfp4`, against SGLang's own bf16
    path (torch_native attention, its default MoE) serving the fake-quantized copy."""
    baseline = engines.get(
        model_path=moe_fq_path, attention_backend="torch_native", dtype="bfloat16"
    )
    base, _ = logprob_errors(baseline, hf_moe_mxfp4, prompts)
    base_agree = _greedy_agreement(baseline, hf_moe_mxfp4, prompts)
    ours = engines.get(
        model_path=moe_path,
        attention_backend="amd",
        moe_runner_backend="amd",
        quantization="amd_mxfp4",
        dtype="bfloat16",
    )
    mx, _ = logprob_errors(ours, hf_moe_mxfp4, prompts)
    mx_agree = _greedy_agreement(ours, hf_moe_mxfp4, prompts)
    (b_max, b_mean), (m_max, m_mean) = summarize(base), summarize(mx)
    print(
        f"bf16 vs HF fp32 on MXFP4 weights (max / mean |dlogprob|, greedy agreement of "
        f"{len(prompts)} x {GREEDY_TOKENS} tokens):\n"
        f"  SGLang torch_native + its MoE: {b_max:.3f} / {b_mean:.4f}, {base_agree}\n"
        f"  amd + amd MoE + amd_mxfp4:     {m_max:.3f} / {m_mean:.4f}, {mx_agree}"
    )
    assert m_mean <= b_mean * 1.25
    assert m_max <= b_max * 1.5
