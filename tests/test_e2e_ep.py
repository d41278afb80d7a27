"""Expert parallelism end to end: stock SGLang with --tp-size 2 --ep-size 2
--moe-a2a-backend customized on the CPU platform, our communicator between the
ranks (gloo), judged by HF transformers' float32 forward.

Each rank holds half the experts; the prompts (different lengths, one batch) give
the ranks uneven token counts, prefill runs the high-throughput mode and decode
the low-latency one (both seen in the trace). No environment variable is set by
hand: the platform binds the ranks' threads and SGLang's CPU collectives serve
the attention-TP scatter and gather.
"""

from __future__ import annotations

import os

import pytest

from sglang_amd import trace
from tests.oracle import HFOracle, check_fp32_against_hf
from tests.tiny_models import fake_quantized_copy, tiny_deepseek_v3, tiny_qwen3_moe

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

EP2 = dict(
    attention_backend="amd",
    moe_runner_backend="amd",
    dtype="float32",
    tp_size=2,
    ep_size=2,
    moe_a2a_backend="customized",
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-ep")


def _serves_like(engines, oracle: HFOracle, prompts, **kwargs) -> None:
    """Start the EP engine, hold it to the float32 bar against `oracle`, and check in
    the events this engine's ranks wrote (the trace file is the session's) that both
    built our dispatcher and ran both modes."""
    before = len(trace.read(engines.trace_file))
    check_fp32_against_hf(engines.get(**kwargs, **EP2), oracle, prompts)
    events = [
        e
        for e in trace.read(engines.trace_file)[before:]
        if e["pid"] != os.getpid() and e["event"].startswith("ep_")
    ]
    built = {e["pid"] for e in events if e["event"] == "ep_dispatcher_init"}
    assert len(built) == 2, events
    modes = {(e["pid"], e["mode"]) for e in events if e["event"] == "ep_dispatch"}
    for pid in built:
        assert (pid, "high_throughput") in modes and (pid, "low_latency") in modes, events


def test_fp32_qwen3_moe_tp2_ep2_matches_hf(engines, tiny_dir, smollm2_path, prompts):
    path = str(tiny_qwen3_moe(tiny_dir / "qwen3-moe", smollm2_path))
    _serves_like(engines, HFOracle(path), prompts, model_path=path)


@pytest.mark.full
def test_fp32_deepseek_v3_tp2_ep2_matches_hf(engines, tiny_dir, smollm2_path, prompts):
    path = str(tiny_deepseek_v3(tiny_dir / "deepseek-v3", smollm2_path))
    _serves_like(engines, HFOracle(path), prompts, model_path=path)


@pytest.mark.full
def test_fp32_mxfp4_tp2_ep2_matches_fake_quantized_hf(engines, tiny_dir, smollm2_path, prompts):
    src = tiny_qwen3_moe(tiny_dir / "qwen3-moe", smollm2_path)
    oracle = HFOracle(str(fake_quantized_copy(src, tiny_dir / "qwen3-moe-mxfp4-fq")))
    _serves_like(engines, oracle, prompts, model_path=str(src), quantization="amd_mxfp4")
