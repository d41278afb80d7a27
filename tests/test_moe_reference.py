"""Routers, expert alignment and the fused-MoE torch reference against
Hugging Face transformers' own Qwen3-MoE and DeepSeek-V3 modules (float32)."""

from __future__ import annotations

import pytest
import torch

from sglang_amd.moe.align import align_by_expert, max_blocks
from sglang_amd.moe.reference import fused_moe_reference, quantize_experts
from sglang_amd.moe.routing import grouped_topk, softmax_topk
from sglang_amd.quant.mxfp4 import fake_quantize_mxfp4
from tests.hypothesis_compat import given, settings, st

# align_by_expert is one Triton kernel: compiled on a GPU, the interpreter on CPU.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _init(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module


def assert_same_routing(w, ids, hf_w, hf_ids, tol=1e-5):
    """Same experts per token (in any order) with the same weights."""
    for wa, ia, wb, ib in zip(w, ids, hf_w, hf_ids, strict=True):
        a = dict(zip(ia.tolist(), wa.tolist(), strict=True))
        b = dict(zip(ib.tolist(), wb.tolist(), strict=True))
        assert a.keys() == b.keys()
        assert all(abs(a[e] - b[e]) < tol for e in a)


def qwen3_config(experts=8, k=2, hidden=64, inter=32):
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        hidden_size=hidden,
        moe_intermediate_size=inter,
        num_experts=experts,
        num_experts_per_tok=k,
        norm_topk_prob=True,
        hidden_act="silu",
    )


def deepseek_config():
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        hidden_size=64,
        moe_intermediate_size=32,
        n_routed_experts=16,
        num_experts_per_tok=4,
        n_group=4,
        topk_group=2,
        n_shared_experts=1,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        hidden_act="silu",
    )


@pytest.mark.parametrize("experts,k", [(8, 1), (8, 2), (64, 8)])
def test_softmax_topk_matches_qwen3_router(experts, k):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeTopKRouter

    router = _init(Qwen3MoeTopKRouter(qwen3_config(experts, k)), experts + k)
    x = torch.randn(37, 64)
    logits, hf_w, hf_ids = router(x)
    w, ids = softmax_topk(logits, k)
    assert_same_routing(w, ids, hf_w, hf_ids)


def test_grouped_topk_matches_deepseek_router():
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

    cfg = deepseek_config()
    router = _init(DeepseekV3TopkRouter(cfg), 3)
    router.e_score_correction_bias.copy_(torch.randn(16) * 0.3)
    x = torch.randn(53, 64)
    logits, hf_w, hf_ids = router(x)
    w, ids = grouped_topk(logits, 4, 4, 2, router.e_score_correction_bias, True, 2.5)
    assert_same_routing(w, ids, hf_w, hf_ids)
    for row in ids:  # the chosen experts come from at most topk_group groups
        assert len(set((row // 4).tolist())) <= 2


@pytest.mark.parametrize("tokens", [1, 7, 130])
def test_fused_reference_matches_qwen3_experts(tokens):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeExperts

    experts = _init(Qwen3MoeExperts(qwen3_config(8, 2)), tokens)
    x = torch.randn(tokens, 64)
    w, ids = softmax_topk(torch.randn(tokens, 8), 2)
    want = experts(x, ids.long(), w)
    got = fused_moe_reference(x, experts.gate_up_proj, experts.down_proj, w, ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_deepseek_moe_block_with_shared_expert():
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    block = _init(DeepseekV3MoE(deepseek_config()), 11)
    x = torch.randn(2, 9, 64)
    want = block(x)
    logits = torch.nn.functional.linear(x.view(-1, 64), block.gate.weight)
    w, ids = grouped_topk(logits, 4, 4, 2, block.gate.e_score_correction_bias, True, 2.5)
    routed = fused_moe_reference(
        x.view(-1, 64), block.experts.gate_up_proj, block.experts.down_proj, w, ids
    )
    got = routed + block.shared_experts(x.view(-1, 64))
    torch.testing.assert_close(got.view_as(want), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("experts,k,tokens", [(8, 1, 5), (8, 2, 64), (64, 8, 3), (64, 2, 512)])
def test_mxfp4_experts_equal_hf_on_fake_quantized_weights(experts, k, tokens):
    """The e2e oracle for MXFP4: HF's experts with every weight replaced by
    dequantize(quantize(w)). Includes experts that receive no token."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeExperts

    hf = _init(Qwen3MoeExperts(qwen3_config(experts, k)), experts * k)
    q = quantize_experts(hf.gate_up_proj.data, hf.down_proj.data)
    with torch.no_grad():
        hf.gate_up_proj.copy_(fake_quantize_mxfp4(hf.gate_up_proj))
        hf.down_proj.copy_(fake_quantize_mxfp4(hf.down_proj))
    x = torch.randn(tokens, 64)
    w, ids = softmax_topk(torch.randn(tokens, experts), k)
    torch.testing.assert_close(
        fused_moe_reference(x, q, None, w, ids), hf(x, ids.long(), w), atol=1e-5, rtol=1e-5
    )


def test_sizes_not_multiple_of_32_are_named():
    with pytest.raises(ValueError, match="hidden_size=48"):
        quantize_experts(torch.randn(2, 64, 48), torch.randn(2, 48, 32))
    with pytest.raises(ValueError, match="moe_intermediate_size=40"):
        quantize_experts(torch.randn(2, 80, 64), torch.randn(2, 64, 40))


@settings(max_examples=30, deadline=None)
@given(
    tokens=st.integers(1, 80),
    k=st.integers(1, 4),
    experts=st.sampled_from([4, 8, 64]),
    block=st.sampled_from([1, 4, 16]),
    seed=st.integers(0, 2**16),
)
def test_align_by_expert(tokens, k, experts, block, seed):
    g = torch.Generator().manual_seed(seed)
    ids = (
        torch.stack([torch.randperm(experts, generator=g)[:k] for _ in range(tokens)])
        if k <= experts
        else None
    )
    if ids is None:
        return
    ids[0, 0] = -1  # a slot routed nowhere (expert parallel)
    slots, block_expert, total = align_by_expert(ids.to(DEVICE), experts, block)
    slots, block_expert = slots.cpu(), block_expert.cpu()
    nb = max_blocks(tokens * k, experts, block)
    assert total == nb * block and slots.numel() == total and block_expert.numel() == nb
    flat = ids.reshape(-1)
    real = slots[slots < flat.numel()].long()
    assert sorted(real.tolist()) == [s for s in range(flat.numel()) if flat[s] >= 0]
    owner = block_expert.repeat_interleave(block)
    assert torch.equal(flat[real], owner[slots < flat.numel()].long())
    # Used blocks come first, one run per expert in order, each padded to a block;
    # the tail (expert -1) holds only sentinels.
    used = block_expert[block_expert >= 0]
    assert torch.equal(used, used.sort().values)
    assert (block_expert[used.numel() :] == -1).all()
    assert (slots[used.numel() * block :] == flat.numel()).all()
    counts = torch.bincount(flat[flat >= 0], minlength=experts)
    assert used.numel() == int(((counts + block - 1) // block).sum())


def test_align_reads_nothing_back_to_the_host(monkeypatch):
    """What CUDA-graph capture needs: no host read of device values (a capture
    would fail), so every output's size follows from the shapes alone."""
    for name in ("item", "tolist", "__int__", "__bool__", "__index__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, _no_host_read(name))
    shapes = set()
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(-1, 8, (5, 2), generator=g).to(DEVICE)
        slots, block_expert, total = align_by_expert(ids, 8, 4)
        shapes.add((slots.shape, block_expert.shape, total))
    assert len(shapes) == 1


def _no_host_read(name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"align_by_expert called Tensor.{name}: a host sync")

    return refuse
