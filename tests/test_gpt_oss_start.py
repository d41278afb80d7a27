"""gpt-oss resolves under `--attention-backend amd` (the engine run is
tests/test_e2e_gpt_oss.py).

Two pieces of SGLang 0.5.23 stand in the way, each checked here so that a
change in SGLang shows: its per-model step asserts a closed list of attention
backends for GptOssForCausalLM (`patches/gpt_oss_backend_check.py` puts ours on
it for that step only), and it gives hybrid sliding-window models a separate
window pool our kernels do not read (`models/sglang_registration.py` declares
one full pool under `amd`, through SGLang's model-override registry).
"""

from __future__ import annotations

import inspect
import json

import pytest

from sglang_amd.patches import gpt_oss_backend_check as patch

pytestmark = [pytest.mark.sglang]


def _gpt_oss_config(path) -> str:
    from transformers import GptOssConfig

    config = GptOssConfig(
        vocab_size=256, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
    ).to_dict()  # fmt: skip
    config["architectures"] = ["GptOssForCausalLM"]
    (path / "config.json").write_text(json.dumps(config, default=str))
    return str(path)


def test_the_closed_list_is_still_there():
    """Should SGLang open its list (or stop reading it this way), the patch must go."""
    import importlib

    module = importlib.import_module(patch.TARGET)
    source = inspect.getsource(getattr(module, patch.FUNCTION))
    branch = source[source.index('model_arch in ["GptOssForCausalLM"]') :]
    branch = branch[: branch.index("elif model_arch")]
    assert patch.NEEDLE in branch and "attention_backends_of(" in branch
    assert f'"{patch.STAND_IN}"' in branch  # the stand-in is a member of the list
    assert "amd" not in branch


def test_amd_listed_is_scoped():
    import importlib

    module = importlib.import_module(patch.TARGET)
    original = module.attention_backends_of
    with patch.amd_listed():
        assert module.attention_backends_of is not original
    assert module.attention_backends_of is original


def _resolve(path, **kw):
    from sglang.srt.arg_groups.overrides import resolved_view
    from sglang.srt.server_args import ServerArgs

    from sglang_amd import plugin

    plugin.register()
    args = ServerArgs(model_path=path, device="cpu", skip_tokenizer_init=True, **kw)
    args.resolve_once()
    return resolved_view(args)


def test_gpt_oss_resolves_with_amd_on_one_full_pool(tmp_path):
    view = _resolve(_gpt_oss_config(tmp_path), attention_backend="amd")
    assert view.attention_backend == "amd"
    assert view.disable_hybrid_swa_memory is True


def test_other_backends_keep_sglangs_window_pool(tmp_path):
    view = _resolve(_gpt_oss_config(tmp_path), attention_backend="triton")
    assert not view.disable_hybrid_swa_memory


def test_without_the_patch_sglang_refuses_amd(tmp_path, monkeypatch):
    """The patch is what lets it start (not some other change in SGLang)."""
    monkeypatch.setattr(patch, "applies", lambda model_config: False)
    with pytest.raises(AssertionError, match=patch.NEEDLE):
        _resolve(_gpt_oss_config(tmp_path), attention_backend="amd")


def test_a_dtype_other_than_the_stored_one_is_refused(tmp_path):
    """SGLang builds gpt-oss's attention and router in the stored dtype: another --dtype
    would die at the first forward, so it is refused at start, naming --dtype."""
    from sglang_amd.flags import UnsupportedConfigError

    path = _gpt_oss_config(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["dtype"] = "bfloat16"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        UnsupportedConfigError, match="--dtype float32 on a gpt-oss checkpoint stored in bfloat16"
    ):
        _resolve(path, attention_backend="amd", dtype="float32")
    assert _resolve(path, attention_backend="amd", dtype="bfloat16").dtype == "bfloat16"
