"""The SGLang side of DSA (`attention/sglang_dsa.py`) on its own: the path SGLang's
DeepSeek code is told to take per layer and forward, and where the indexer's forward
is installed. The whole path against HF is tests/test_e2e_dsa.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytestmark = [pytest.mark.sglang]


def _batch(mode: str, prefix: list[int] | None, seq_lens: list[int]):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    return SimpleNamespace(forward_mode=getattr(ForwardMode, mode), extend_prefix_lens_cpu=prefix,
                           seq_lens_cpu=torch.tensor(seq_lens))  # fmt: skip


@pytest.mark.parametrize(
    "mode,prefix,seq_lens,want",
    [
        ("EXTEND", [0, 0], [16, 3], "MHA"),  # every visible token is in the top 16
        ("EXTEND", [0, 0], [17, 3], "MLA"),  # one sequence past index_topk
        ("EXTEND", [0, 5], [9, 8], "MLA"),  # a cached prefix: absorbed over the pool
        ("EXTEND", None, [4], "MLA"),  # prefix lengths unknown
        ("DECODE", None, [4], "MLA"),
        ("TARGET_VERIFY", [4], [4], "MLA"),
        ("DRAFT_EXTEND_V2", [0], [4], "MLA"),
    ],
)
def test_dsa_layers_attend_densely_only_where_sparse_would_pick_everything(
    mode, prefix, seq_lens, want
):
    from sglang.srt.models.deepseek_common.attention_forward_methods.forward_methods import (
        AttnForwardMethod,
    )

    from sglang_amd.attention.sglang_dsa import forward_handler

    attn = SimpleNamespace(use_dsa=True, indexer=SimpleNamespace(index_topk=16))
    assert forward_handler(attn, _batch(mode, prefix, seq_lens)) == getattr(AttnForwardMethod, want)


def test_other_deepseek_layers_get_the_triton_rule(monkeypatch):
    from sglang.srt.models.deepseek_common import attention_backend_handler

    from sglang_amd.attention.sglang_dsa import forward_handler

    asked = []
    monkeypatch.setattr(attention_backend_handler, "handle_attention_triton",
                        lambda attn, batch: asked.append((attn, batch)) or "triton's")  # fmt: skip
    attn, batch = SimpleNamespace(use_dsa=False), _batch("EXTEND", [0], [40])
    assert forward_handler(attn, batch) == "triton's" and asked == [(attn, batch)]


def test_register_answers_for_amd_and_installs_the_indexer_on_our_platform():
    from sglang.kernels.fused_op import BaseFusedOp, _oot_dispatch_key
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.models.deepseek_common.attention_backend_handler import (
        AttentionBackendRegistry,
    )
    from sglang.srt.platforms import current_platform

    from sglang_amd.attention import sglang_dsa

    sglang_dsa.register()
    sglang_dsa.register()  # idempotent
    assert AttentionBackendRegistry.get_handler("amd") is sglang_dsa.forward_handler
    if not current_platform.is_out_of_tree():
        pytest.skip("the indexer's forward is installed on an out-of-tree platform only")
    key = _oot_dispatch_key()
    assert BaseFusedOp._oot_forward_registry[key][Indexer] is sglang_dsa.indexer_forward


def test_sglang_builds_every_deepseek_indexer_with_ue8m0_scales():
    """The fp8 mode rounds its scales because SGLang's DeepSeek model always builds its
    Indexer with scale_fmt "ue8m0" and keeps it on the layer (`indexer_forward` reads
    it there). Fails when SGLang stops doing either."""
    import inspect

    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.models import deepseek_v2

    assert 'scale_fmt="ue8m0"' in inspect.getsource(deepseek_v2)
    assert "self.scale_fmt = scale_fmt" in inspect.getsource(Indexer.__init__)


@pytest.mark.parametrize("scale_fmt,rounds", [("ue8m0", True), (None, False)])
def test_indexer_forward_rounds_fp8_scales_as_the_layer_says(monkeypatch, scale_fmt, rounds):
    from sglang.srt.model_executor import forward_context

    from sglang_amd.attention import sglang_dsa
    from sglang_amd.attention.sglang_backend import AmdAttnBackend

    asked = {}
    backend = object.__new__(AmdAttnBackend)
    backend.dsa = SimpleNamespace(index=lambda *a, **kw: asked.update(kw) or "table")
    monkeypatch.setattr(forward_context, "get_attn_backend", lambda: backend)
    heads, dim, rope, hidden, tokens = 2, 128, 16, 8, 3
    g = torch.Generator().manual_seed(0)
    wq, wk = torch.randn(heads * dim, 4, generator=g), torch.randn(dim, hidden, generator=g)
    layer = SimpleNamespace(
        n_heads=heads, head_dim=dim, rope_head_dim=rope, softmax_scale=dim**-0.5, index_topk=4,
        scale_fmt=scale_fmt, wq_b=lambda x: (x @ wq.t(),), wk=lambda x: (x @ wk.t(),),
        k_norm=lambda x: x, rotary_emb=lambda pos, q, k: (q, k),
        weights_proj=SimpleNamespace(weight=torch.randn(heads, hidden, generator=g)),
    )  # fmt: skip
    batch = SimpleNamespace(out_cache_loc=torch.arange(tokens))
    x, q_lora = torch.randn(tokens, hidden, generator=g), torch.randn(tokens, 4, generator=g)
    got = sglang_dsa.indexer_forward(layer, x, q_lora, torch.arange(tokens), batch, layer_id=0)
    assert got == "table" and asked["round_scale"] is rounds


@pytest.mark.parametrize("mode,new", [("decode", 1), ("extend", 3)], ids=["decode", "verify"])
def test_graph_batches_are_laid_out_on_the_device(no_host_reads, mode, new):
    """Under a CUDA graph (`graph_max_kv_len` set) a decode batch and a chain target
    verify (`uniform_qo` draft tokens a request, as the verify graph's metadata says)
    are laid out from device tensors alone, with no host read; an extend of uneven
    lengths inside a graph is refused naming --disable-cuda-graph."""
    from sglang_amd.attention.attend import ForwardMetadata
    from sglang_amd.attention.sglang_dsa import DsaLayers

    backend = SimpleNamespace(device="cpu")
    layers = DsaLayers(backend)
    kv = torch.tensor([10, 20])
    backend.forward_metadata = ForwardMetadata(
        mode=mode, req_pool_indices=torch.tensor([4, 7]), kv_lens=kv, qo_lens=torch.full((2,), new),
        kv_lens_cpu=[], qo_lens_cpu=[], uniform_qo=new if mode == "extend" else None,
        graph_max_kv_len=64,
    )  # fmt: skip

    with no_host_reads():
        rows, rows_cpu, visible, visible_cpu = layers._token_layout()
    assert rows_cpu is None and visible_cpu is None
    want_rows = [4] * new + [7] * new
    want_visible = list(range(11 - new, 11)) + list(range(21 - new, 21))
    assert rows.tolist() == want_rows and visible.tolist() == want_visible
    backend.forward_metadata = ForwardMetadata(
        mode="extend", req_pool_indices=torch.tensor([4]), kv_lens=kv[:1], qo_lens=kv[:1],
        kv_lens_cpu=[10], qo_lens_cpu=[10], graph_max_kv_len=64,
    )  # fmt: skip
    with pytest.raises(NotImplementedError, match="--disable-cuda-graph"):
        layers._token_layout()
