"""A tiny DeepSeek-V3.2 (DSA: lightning indexer + top-k sparse MLA, index_topk 16)
served by stock SGLang through `--attention-backend amd` on the CPU platform,
judged by HF transformers' own `DeepseekV32ForCausalLM` in float32.

index_topk 16 is below every interesting length here, so the sparse path carries
the result: the shared-prefix prompts (~115 tokens) hit the radix cache (one
64-token page cached at least: an extend over a cached prefix), 64-token chunks
split the long prompts (later chunks extend over earlier ones), and the short
prompts start dense (every sequence <= index_topk: MHA over the new tokens) and
cross index_topk while decoding. The same engine answers both checks below.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

from sglang_amd import trace
from tests.oracle import HFOracle, check_fp32_against_hf
from tests.tiny_models import tiny_deepseek_v32, tiny_deepseek_v32_agreeing_mtp

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

FP32 = dict(attention_backend="amd", dtype="float32", chunked_prefill_size=64)


@pytest.fixture(scope="module")
def tiny_v32(tmp_path_factory, smollm2_path) -> str:
    return str(tiny_deepseek_v32(tmp_path_factory.mktemp("tiny-dsv32"), smollm2_path))


def _dsa_prompts(prompts):
    """Three shared-prefix prompts (the second and third hit the radix cache) and two
    short ones (5 and 6 tokens: dense prefill, sparse from the 17th token on)."""
    return prompts[:3] + prompts[4:6]


def test_fp32_dsa_matches_hf(engines, tiny_v32, prompts):
    engine = engines.get(model_path=tiny_v32, **FP32)
    check_fp32_against_hf(engine, HFOracle(tiny_v32), _dsa_prompts(prompts))
    events = trace.read(engines.trace_file)
    seen = {(e["event"], e.get("tier")) for e in events if e["pid"] != os.getpid()}
    # The indexer picked and sparse attention ran (not a dense fallback).
    assert {("forward_indexer", "torch"), ("forward_sparse", "torch")} <= seen, seen


@contextlib.contextmanager
def hf_with_deepseeks_fp8_indexer():
    """HF's `DeepseekV32Indexer` scoring as DeepSeek-V3.2's inference does (and
    SGLang's dsa backend): Hadamard-rotated, block-128 float8 queries and keys
    (`index_k_cache.fp8_indexer_inputs`, unit-tested against DeepSeek's
    definition) with power-of-two scales (the `ue8m0` format SGLang builds every
    indexer with), the rest HF's forward line for line. The oracle of the FP8 mode."""
    from transformers.models.deepseek_v32 import modeling_deepseek_v32 as hf

    from sglang_amd.attention.index_k_cache import fp8_indexer_inputs

    def forward(self, hidden_states, q_resid, position_embeddings, attention_mask,
                position_ids=None, past_key_values=None):  # fmt: skip
        batch, seq, _ = hidden_states.shape
        assert batch == 1, "the oracle scores one prompt at a time"
        rope, rest = self.qk_rope_head_dim, self.head_dim - self.qk_rope_head_dim
        cos, sin = position_embeddings
        q = self.wq_b(q_resid).view(batch, seq, self.n_heads, self.head_dim)
        q_rot, q_pass = torch.split(q, [rope, rest], dim=-1)
        k = self.k_norm(self.wk(hidden_states)).unsqueeze(2)
        k_rot, k_pass = torch.split(k, [rope, rest], dim=-1)
        q_rot, k_rot = hf.apply_rotary_pos_emb(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
        q = torch.cat([q_rot, q_pass], dim=-1)
        k = torch.cat([k_rot, k_pass], dim=-1).squeeze(2)
        if past_key_values is not None:
            k = past_key_values.update_indexer(k, self.layer_idx)
        raw = self.weights_proj(hidden_states.to(self.weights_proj.weight.dtype)).float()
        q8, w, k8, k_scale = fp8_indexer_inputs(q[0], k[0], raw[0], round_scale=True)
        head_scores = torch.relu(torch.einsum("shd,nd->shn", q8.float(), k8.float())) * k_scale
        index_scores = torch.einsum("sh,shn->sn", w, head_scores).unsqueeze(0)
        if attention_mask.dtype == torch.bool:
            index_scores = index_scores.masked_fill(~attention_mask, float("-inf"))
        else:
            index_scores = index_scores + attention_mask
        topk = min(self.index_topk, index_scores.shape[-1])
        return index_scores.topk(topk, dim=-1).indices.to(torch.int32)

    original = hf.DeepseekV32Indexer.forward
    hf.DeepseekV32Indexer.forward = forward
    try:
        yield
    finally:
        hf.DeepseekV32Indexer.forward = original


@pytest.mark.full
def test_fp32_dsa_fp8_indexer_matches_hf_with_deepseeks_fp8_indexer(engines, tiny_v32, prompts):
    """SGLANG_AMD_DSA_INDEXER=fp8: keys in SGLang's own FP8 index-K pool. Its rounding
    picks other tokens than the float indexer at near ties (6 of 10 greedy outputs
    of 8 tokens kept here), so its oracle is HF with DeepSeek's FP8 scoring."""
    engine = engines.get(env={"SGLANG_AMD_DSA_INDEXER": "fp8"}, model_path=tiny_v32, **FP32)
    with hf_with_deepseeks_fp8_indexer():
        check_fp32_against_hf(engine, HFOracle(tiny_v32), _dsa_prompts(prompts))


@pytest.mark.full
def test_nextn_chain_drafts_over_dsa_match_hf(engines, smollm2_path, tmp_path_factory, prompts):
    """NEXTN (a random MTP layer, SGLang loads it with dummy weights: drafts mostly
    rejected) over DSA: target verify and draft extend index and attend through the
    forward's own token map, and each draft-decode step (a backend of its own) reads
    the index keys the others wrote. Greedy output equals HF's without drafts."""
    from tests.test_e2e_speculative import (
        SPEC_ENV,
        STEPS,
        _check_against_hf,
        _generate_all,
        _nextn_engine,
        _spec_events,
    )

    path = str(tiny_deepseek_v32(tmp_path_factory.mktemp("tiny-dsv32-nextn"), smollm2_path,
                                 nextn=True))  # fmt: skip
    engine = _nextn_engine(engines, path, SPEC_ENV, 1, STEPS + 1)
    few = _dsa_prompts(prompts)
    acc = _check_against_hf(_generate_all(engine, few), HFOracle(path), few)
    print(f"NEXTN over DSA: {acc.completion_tokens} tokens in {acc.verify_passes} verify passes")
    assert acc.verify_passes > 0
    assert {"target_verify", "draft_extend", "draft_decode"} <= _spec_events(engines)


@pytest.fixture(scope="module")
def agreeing_v32(tmp_path_factory, smollm2_path) -> str:
    return str(tiny_deepseek_v32_agreeing_mtp(tmp_path_factory.mktemp("tiny-dsv32-mtp"),
                                              smollm2_path))  # fmt: skip


def test_agreeing_nextn_chain_over_dsa_matches_hf_and_accepts(engines, agreeing_v32, prompts):
    """NEXTN over DSA with an MTP layer (its indexer too) that agrees with the target,
    3 steps: drafts accepted and rejected in target verify, draft extend and each
    draft-decode step, all indexing and attending sparsely; greedy output identical
    to HF's without drafts. (Tree drafts: SGLang refuses them over 64-token pages.)"""
    from sglang_amd.mtp import acceptance
    from tests.test_e2e_speculative import NEW_TOKENS, SPEC_ENV, _spec_events

    engine = engines.get(
        env=SPEC_ENV, model_path=agreeing_v32, **FP32, disable_overlap_schedule=True,
        speculative_algorithm="NEXTN", speculative_num_steps=3, speculative_eagle_topk=1,
        speculative_num_draft_tokens=4,
    )  # fmt: skip
    few = _dsa_prompts(prompts)
    outs = engine.generate(input_ids=[p.ids for p in few],
                           sampling_params={"temperature": 0, "max_new_tokens": NEW_TOKENS})  # fmt: skip
    oracle = HFOracle(agreeing_v32)
    differ = [i for i, (p, o) in enumerate(zip(few, outs, strict=True))
              if o["output_ids"] != oracle.greedy(p.ids, NEW_TOKENS)]  # fmt: skip
    assert not differ, f"speculative greedy output differs from HF fp32 on {differ}"
    acc = acceptance.from_meta(o["meta_info"] for o in outs)
    print(f"NEXTN over DSA: {acc.line()}")
    assert 0 < acc.correct_drafts < acc.proposed_drafts
    assert acc.accept_length >= 2.0, acc.line()
    assert {"target_verify", "draft_extend", "draft_decode"} <= _spec_events(engines)
