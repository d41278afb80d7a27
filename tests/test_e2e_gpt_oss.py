"""A tiny random gpt-oss served by stock SGLang through our backends, judged by HF
transformers' float32 forward.

`--attention-backend amd` computes its attention sinks and its alternating
sliding-window layers (one full KV pool: `models/sglang_registration.py`);
`--moe-runner-backend amd` its experts with biases and the clamped SwiGLU;
`--quantization amd_mxfp4` reads its own MXFP4 checkpoint (`*_blocks` /
`*_scales`). The tiny model (`tests/tiny_gpt_oss.py`): window 8, so every
prompt crosses it; sinks, biases and clamps drawn to matter. Oracles: the float
checkpoint itself, and for the MXFP4 one transformers' own dequantization of the
same file, in float32. Page size 16 with 48-token prefill chunks and the
shared-prefix prompts (radix cache hits): logprobs within 1e-3, greedy identical.
"""

from __future__ import annotations

import os

import pytest

from sglang_amd import trace
from tests.oracle import HFOracle, check_fp32_against_hf, logprob_errors, summarize
from tests.tiny_gpt_oss import gpt_oss_dequantized_copy, tiny_gpt_oss, tiny_gpt_oss_mxfp4

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

FP32 = dict(
    attention_backend="amd",
    moe_runner_backend="amd",
    dtype="float32",
    page_size=16,
    chunked_prefill_size=48,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gpt-oss")


@pytest.fixture(scope="module")
def float_path(tiny_dir, smollm2_path) -> str:
    return str(tiny_gpt_oss(tiny_dir / "float", smollm2_path))


@pytest.fixture(scope="module")
def hf_float(float_path) -> HFOracle:
    return HFOracle(float_path)


def _scheduler_events(engines) -> set[tuple]:
    return {
        (e["event"], e.get("tier"))
        for e in trace.read(engines.trace_file)
        if e["pid"] != os.getpid()
    }


def test_fp32_matches_hf(engines, float_path, hf_float, prompts):
    assert max(len(p.ids) for p in prompts) > 2 * hf_float.model.config.sliding_window
    engine = engines.get(model_path=float_path, **FP32)
    check_fp32_against_hf(engine, hf_float, prompts)
    events = _scheduler_events(engines)
    assert {("forward_moe", "torch")} <= events, events


def test_fp32_mxfp4_checkpoint_matches_hf_on_the_same_weights(
    engines, tiny_dir, float_path, hf_float, prompts
):
    # Dense weights kept float32 (gpt-oss ships them bf16): the oracle is fp32.
    import torch

    mxfp4 = tiny_gpt_oss_mxfp4(tiny_dir / "float", tiny_dir / "mxfp4", torch.float32)
    oracle = HFOracle(str(gpt_oss_dequantized_copy(mxfp4, tiny_dir / "mxfp4-dequantized")))
    engine = engines.get(model_path=str(mxfp4), quantization="amd_mxfp4", **FP32)
    check_fp32_against_hf(engine, oracle, prompts)
    # The experts really are the MXFP4 ones: the float checkpoint is far from them.
    errors, _ = logprob_errors(engine, hf_float, prompts[:3])
    assert summarize(errors)[0] > 1e-2
    events = {event for event, _ in _scheduler_events(engines)}
    assert "mxfp4_loaded" in events, events


@pytest.mark.full
def test_triton_tiers_match_hf(engines, float_path, hf_float, prompts):
    """Our Triton attention (sinks, window) and fused MoE (biases, clamped SwiGLU)
    inside SGLang, interpreted on the CPU: the same oracle and bound."""
    engine = engines.get(env={"TRITON_INTERPRET": "1"}, model_path=float_path, **FP32)
    check_fp32_against_hf(engine, hf_float, prompts[:2], greedy_tokens=8)
    events = _scheduler_events(engines)
    want = {("forward_decode", "triton"), ("forward_extend", "triton"), ("forward_moe", "triton")}
    assert want <= events, events
