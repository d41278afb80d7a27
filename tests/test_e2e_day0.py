"""Roadmap models through our backends that reuse paths served elsewhere, each
once against HF transformers' float32 forward (the coverage table's evidence,
`sglang_amd/models/coverage.py`).

Qwen3 dense (GQA with q/k norms) under `--attention-backend amd`; Kimi-K2's
shape (the DeepSeek-V3 architecture with one expert group and top-8 routing)
under `--attention-backend amd --moe-runner-backend amd`. Each with page size 16
and 48-token prefill chunks (several chunks per long prompt) and the radix
cache's shared-prefix prompts: logprobs within 1e-3, greedy identical.
"""

from __future__ import annotations

import pytest

from tests.oracle import HFOracle, check_fp32_against_hf
from tests.tiny_models import tiny_kimi_k2, tiny_qwen3

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

CHUNKED = dict(page_size=16, chunked_prefill_size=48, dtype="float32")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("day0")


def test_qwen3_dense_matches_hf(engines, tiny_dir, smollm2_path, prompts):
    path = str(tiny_qwen3(tiny_dir / "qwen3", smollm2_path))
    engine = engines.get(model_path=path, attention_backend="amd", **CHUNKED)
    check_fp32_against_hf(engine, HFOracle(path), prompts)


def test_kimi_k2_matches_hf(engines, tiny_dir, smollm2_path, prompts):
    path = str(tiny_kimi_k2(tiny_dir / "kimi-k2", smollm2_path))
    oracle = HFOracle(path)
    config = oracle.model.config
    assert (config.n_group, config.num_experts_per_tok, config.n_routed_experts) == (1, 8, 48)
    engine = engines.get(
        model_path=path, attention_backend="amd", moe_runner_backend="amd", **CHUNKED
    )
    check_fp32_against_hf(engine, oracle, prompts)
