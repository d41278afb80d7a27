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
