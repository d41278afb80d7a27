"""Bad flag combinations fail at server start with one message naming the flag.

Checked in process through `sgl.Engine` (the resolution hook runs while
ServerArgs resolve, before any scheduler starts) and once through the CLI,
whose whole error output must be one line.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from sglang_amd.flags import UnsupportedConfigError
from sglang_amd.tiers import TierUnavailableError

pytestmark = [pytest.mark.sglang]


@pytest.fixture
def engine_kwargs(smollm2_path):
    from tests.e2e_engines import ENGINE_DEFAULTS, ensure_cpu_platform

    ensure_cpu_platform()
    return dict(model_path=smollm2_path, **ENGINE_DEFAULTS)


def test_fp8_kv_cache_is_refused_naming_the_flag(engine_kwargs):
    import sglang as sgl

    with pytest.raises(UnsupportedConfigError, match="--kv-cache-dtype fp8_e5m2"):
        sgl.Engine(attention_backend="amd", kv_cache_dtype="fp8_e5m2", **engine_kwargs)


def test_forced_tier_that_cannot_run_is_refused(engine_kwargs, monkeypatch):
    import sglang as sgl

    monkeypatch.setenv("SGLANG_AMD_ATTENTION_TIER", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(TierUnavailableError, match="SGLANG_AMD_ATTENTION_TIER=triton"):
        sgl.Engine(attention_backend="amd", **engine_kwargs)


def test_other_backends_are_left_alone():
    from types import SimpleNamespace

    from sglang_amd.attention.support import unsupported_reasons

    args = SimpleNamespace(
        attention_backend="torch_native",
        prefill_attention_backend=None,
        decode_attention_backend=None,
        kv_cache_dtype="fp8_e5m2",
        speculative_algorithm="EAGLE",
    )
    assert unsupported_reasons(args, None) == []
    args.decode_attention_backend = "amd"
    reasons = unsupported_reasons(args, None)
    assert any("--decode-attention-backend amd" in r and "--kv-cache-dtype" in r for r in reasons)
    assert not any("--speculative-algorithm" in r for r in reasons)  # EAGLE is served


def test_model_features_we_do_not_serve_are_refused():
    from types import SimpleNamespace

    from sglang_amd.attention.support import check_server_args

    args = SimpleNamespace(attention_backend="amd", kv_cache_dtype="auto")
    mla = SimpleNamespace(attention_arch=SimpleNamespace(name="MLA"))
    check_server_args(args, mla)  # MLA is served (tests/test_e2e_mla.py)
    hybrid = SimpleNamespace(is_hybrid_swa=True)
    with pytest.raises(UnsupportedConfigError, match="hybrid sliding-window KV pools"):
        check_server_args(args, hybrid)


@pytest.mark.e2e
@pytest.mark.full  # 53 s on CI: a launcher subprocess; the in-process refusals above stand in
def test_cli_prints_one_line_and_exits_2(smollm2_path):
    from tests.e2e_engines import server_env

    env = server_env(SGLANG_PLATFORM="sglang_amd_cpu")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sglang_amd.cli",
            "serve",
            "--model-path",
            smollm2_path,
            "--kv-cache-dtype",
            "fp8_e4m3",
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--kv-cache-dtype fp8_e4m3" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_cpu_speculative_decoding_needs_the_triton_interpreter(engine_kwargs, monkeypatch):
    import sglang as sgl

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(UnsupportedConfigError, match="TRITON_INTERPRET=1"):
        sgl.Engine(
            attention_backend="amd",
            speculative_algorithm="STANDALONE",
            speculative_draft_model_path=engine_kwargs["model_path"],
            speculative_num_steps=2,
            speculative_eagle_topk=1,
            speculative_num_draft_tokens=3,
            **engine_kwargs,
        )


def test_speculative_algorithms_we_do_not_serve_are_refused():
    from types import SimpleNamespace

    from sglang_amd.attention.support import unsupported_reasons

    args = SimpleNamespace(attention_backend="amd", speculative_algorithm="NGRAM", device="cuda")
    (reason,) = unsupported_reasons(args, None)
    assert "--speculative-algorithm" in reason and "NGRAM" in reason and "EAGLE" in reason
    args.speculative_algorithm = "EAGLE3"
    assert unsupported_reasons(args, None) == []


def test_dsa_models_are_served_on_the_cpu_platform_and_refused_where_not_yet(monkeypatch):
    """DeepSeek-V3.2-style sparse attention (an index_topk in the config) runs on the
    CPU platform (tests/test_e2e_dsa.py); what it does not serve yet is refused at
    start, naming the flag: a GPU, tree drafts, DSA's parallel modes, a
    mistyped indexer mode. A model without index_topk is none of this."""
    from types import SimpleNamespace

    from sglang_amd.attention.support import unsupported_reasons

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # CPU speculative decoding asks for it
    args = SimpleNamespace(attention_backend="amd", kv_cache_dtype="auto", device="cpu")
    hf = SimpleNamespace(architectures=["DeepseekV32ForCausalLM"], index_topk=2048)
    model = SimpleNamespace(hf_config=hf)
    assert unsupported_reasons(args, model) == []
    chain = SimpleNamespace(**{**vars(args), "speculative_algorithm": "NEXTN"})
    assert unsupported_reasons(chain, model) == []
    for change, words in (
        (dict(device="cuda"), "CPU platform only"),
        (dict(speculative_algorithm="NEXTN", speculative_eagle_topk=2), "chain drafts"),
        (dict(enable_prefill_cp=True), "--enable-prefill-cp"),
        (dict(dcp_size=2), "--dcp-size"),
    ):
        (reason,) = unsupported_reasons(SimpleNamespace(**{**vars(args), **change}), model)
        assert "--attention-backend amd" in reason and words in reason, reason
    nested = SimpleNamespace(text_config=hf)  # multimodal wrappers nest the text config
    gpu = SimpleNamespace(**{**vars(args), "device": "cuda"})
    assert unsupported_reasons(gpu, SimpleNamespace(hf_config=nested))
    monkeypatch.setenv("SGLANG_AMD_DSA_INDEXER", "fp4")
    (reason,) = unsupported_reasons(args, model)
    assert "SGLANG_AMD_DSA_INDEXER='fp4'" in reason and "fp8" in reason
    monkeypatch.delenv("SGLANG_AMD_DSA_INDEXER")
    hf.index_topk = None
    assert unsupported_reasons(gpu, SimpleNamespace(hf_config=hf)) == []


def test_our_dsa_rule_covers_every_model_sglang_treats_as_dsa():
    """SGLang's own test for DSA models (is_deepseek_dsa) needs index_topk; if it
    ever keys on something else, our refusal must follow."""
    import inspect
    from types import SimpleNamespace

    from sglang.srt.configs import model_config

    source = inspect.getsource(model_config.is_deepseek_dsa)
    assert '"index_topk"' in source and "is not None" in source
    hf = SimpleNamespace(architectures=["DeepseekV32ForCausalLM"], index_topk=None)
    assert not model_config.is_deepseek_dsa(hf)
    hf.index_topk = 64
    assert model_config.is_deepseek_dsa(hf)


def _tiny_v32_config(path) -> str:
    import json

    from transformers import DeepseekV3Config

    config = DeepseekV3Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, q_lora_rank=32,
        kv_lora_rank=32, qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=16,
        n_routed_experts=4, num_experts_per_tok=2,
    ).to_dict()  # fmt: skip
    config.update(architectures=["DeepseekV32ForCausalLM"], model_type="deepseek_v32",
                  index_topk=16, index_head_dim=128, index_n_heads=4)  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


def test_dsa_refusal_comes_before_sglangs_model_hooks(tmp_path):
    """SGLang's DSA model hook asks torch for the CUDA device's capability; on a machine
    without one that was "Found no NVIDIA driver" before our refusal could be shown.
    Resolving a tiny DeepSeek-V3.2 config for a GPU we do not serve DSA on yet ends
    in our reason."""
    from sglang.srt.server_args import ServerArgs

    from sglang_amd import plugin

    plugin.register()
    args = ServerArgs(model_path=_tiny_v32_config(tmp_path), device="cuda",
                      attention_backend="amd", skip_tokenizer_init=True)  # fmt: skip
    with pytest.raises(UnsupportedConfigError, match=r"--attention-backend amd.*CPU platform"):
        args.resolve_once()


@pytest.mark.parametrize("kv", ["auto", "bfloat16"])
def test_dsa_resolves_on_the_cpu_with_the_kv_dtype_asked_for(tmp_path, kv):
    """On the CPU SGLang's DSA resolution runs with "no GPU generation"
    (patches/cpu_dsa_resolution.py); the bfloat16 KV cache it imposes for its own
    DSA kernels is given back to --kv-cache-dtype (ours serve float32 too)."""
    import torch
    from sglang.srt.arg_groups.overrides import resolved_view
    from sglang.srt.server_args import ServerArgs

    from sglang_amd import plugin

    if torch.cuda.is_available():
        pytest.skip("resolution on a machine without a CUDA device")
    plugin.register()
    args = ServerArgs(model_path=_tiny_v32_config(tmp_path), device="cpu", kv_cache_dtype=kv,
                      attention_backend="amd", skip_tokenizer_init=True)  # fmt: skip
    args.resolve_once()
    view = resolved_view(args)
    assert view.kv_cache_dtype == kv and view.page_size == 64
    with pytest.raises(RuntimeError):  # the answer was scoped to SGLang's step
        torch.cuda.get_device_capability()
