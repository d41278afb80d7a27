"""A tiny Qwen3-Next (Gated DeltaNet + gated full attention, MoE) served by stock SGLang
on our CPU platform: `--attention-backend amd` for the full-attention layers, our GDN
torch tier (`patches/cpu_gdn.py`) for the linear-attention ones, judged by HF
transformers' own `Qwen3NextForCausalLM` in float32.

One engine answers every e2e check: 96-token prefill chunks (a ~165-token prompt is
two extends, the second continuing the first's recurrent and conv states), SGLang's
extra_buffer radix cache (its default under the overlap schedule: the state after 64
tokens is snapshotted from the chunked form's per-chunk states, so later prompts
sharing the prefix start from it), and a 64-token decode track interval (a decoded
sequence crossing 64 tokens snapshots its state with the radix cache's slot copy,
which a follow-up request then starts from). `make test-full` adds Qwen3-Next MTP
(NEXTN chain drafts from an agreeing MTP layer, a second engine).

Without SGLang's GPU: the patch's targets are checked to still exist with the
signatures it wraps (so an SGLang upgrade cannot silently disable it), to be
registered only on our platform and to pass anything but CPU tensors through, and
the start rules refuse, naming the flag, what the torch tier does not serve.
"""

from __future__ import annotations

import inspect
import os
from types import SimpleNamespace

import pytest
import torch

from sglang_amd import trace
from tests.oracle import HFOracle, check_fp32_against_hf, sglang_greedy, sglang_logprobs
from tests.tiny_qwen3_next import tiny_qwen3_next, tiny_qwen3_next_agreeing_mtp

ENGINE = dict(
    attention_backend="amd",
    dtype="float32",
    chunked_prefill_size=96,
    mamba_track_interval=64,
)


@pytest.fixture(scope="module")
def qwen3_next(tmp_path_factory, smollm2_path) -> str:
    return str(tiny_qwen3_next(tmp_path_factory.mktemp("tiny-qwen3-next"), smollm2_path))


@pytest.fixture(scope="module")
def hf_qwen3_next(qwen3_next) -> HFOracle:
    return HFOracle(qwen3_next)


def _scheduler_events(engines) -> set[tuple]:
    events = trace.read(engines.trace_file)
    return {(e["event"], e.get("tier")) for e in events if e["pid"] != os.getpid()}


@pytest.mark.e2e
@pytest.mark.sglang
def test_fp32_qwen3_next_matches_hf(engines, qwen3_next, hf_qwen3_next, prompts):
    """Teacher-forced logprobs within 1e-3 of HF fp32 over chunked prefills and prefix-cache
    hits, greedy output token-identical (16 tokens, 10 prompts)."""
    engine = engines.get(model_path=qwen3_next, **ENGINE)
    assert max(len(p.ids) for p in prompts) > ENGINE["chunked_prefill_size"]
    check_fp32_against_hf(engine, hf_qwen3_next, prompts)
    seen = _scheduler_events(engines)
    want = {
        ("gdn_kernel", None),
        ("forward_gdn_chunked", "torch"),
        ("forward_gdn_recurrent", "torch"),
        ("forward_gdn_conv1d", "torch"),
        ("forward_extend", "torch"),  # --attention-backend amd, full-attention layers
        ("forward_decode", "torch"),
    }
    assert want <= seen, seen


@pytest.mark.e2e
@pytest.mark.sglang
def test_decode_snapshot_serves_a_follow_up(engines, qwen3_next, hf_qwen3_next, prompts):
    """A 40-token prompt decoded past 64 tokens: SGLang snapshots the state at 64 while
    decoding (the slot copy); the conversation's next turn (prompt + answer + more)
    starts from it, scored against HF."""
    engine = engines.get(model_path=qwen3_next, **ENGINE)
    first = prompts[0].ids[:40]
    answer = sglang_greedy(engine, SimpleNamespace(ids=first), 40)
    assert answer == hf_qwen3_next.greedy(first, 40)
    follow_up = SimpleNamespace(ids=first + answer + prompts[4].ids, shared_prefix_len=65)
    got, start, cached = sglang_logprobs(engine, follow_up)
    want = hf_qwen3_next.token_logprobs(follow_up.ids)[start - 1 :]
    worst = max(abs(a - b) for a, b in zip(got, want, strict=True))
    print(f"follow-up over a decode snapshot: cached {cached}, max |dlogprob| {worst:.2e}")
    assert cached >= 64 and worst <= 1e-3


# Speculative helpers of SGLang's are Triton kernels, interpreted on the CPU
# (patches/cpu_speculative.py); our ops stay on the torch tier.
SPEC_ENV = {"TRITON_INTERPRET": "1", "SGLANG_AMD_TIER": "torch"}


@pytest.mark.e2e
@pytest.mark.sglang
@pytest.mark.full  # a second engine (target + MTP draft), interpreted speculative helpers
def test_nextn_mtp_greedy_matches_hf_and_accepts(engines, tmp_path_factory, smollm2_path, prompts):
    """Qwen3-Next MTP (`Qwen3NextForCausalLMMTP`, NEXTN, 3 steps, chain) with a draft that
    mostly agrees: verify runs the GDN layers' recurrent form over the drafts keeping
    each step's state and conv window, and SGLang commits the accepted step's. Pages
    of 16 keep SGLang's extra_buffer radix cache on (prefix hits, and decode crossing
    the 64-token track interval commits into track slots too). Greedy output must
    equal HF fp32's (which non-speculative serving reproduces, test above)."""
    from sglang_amd.mtp import acceptance

    path = str(tiny_qwen3_next_agreeing_mtp(tmp_path_factory.mktemp("q3n-mtp"), smollm2_path))
    oracle = HFOracle(path)
    engine = engines.get(
        env=SPEC_ENV, model_path=path, attention_backend="amd", dtype="float32",
        page_size=16, mamba_track_interval=64, disable_overlap_schedule=True,
        speculative_algorithm="NEXTN", speculative_num_steps=3, speculative_eagle_topk=1,
        speculative_num_draft_tokens=4,
    )  # fmt: skip
    outs = [
        engine.generate(input_ids=p.ids, sampling_params={"temperature": 0, "max_new_tokens": 32})
        for p in prompts
    ]
    differ = [i for i, (o, p) in enumerate(zip(outs, prompts, strict=True))
              if o["output_ids"] != oracle.greedy(p.ids, 32)]  # fmt: skip
    assert not differ, f"speculative greedy output differs from HF fp32 on prompts {differ}"
    assert any(o["meta_info"]["cached_tokens"] > 0 for o in outs[1:4])
    acc = acceptance.from_meta(o["meta_info"] for o in outs)
    print(f"Qwen3-Next NEXTN 3 steps: {acc.line()}")
    assert 0 < acc.correct_drafts < acc.proposed_drafts
    assert acc.accept_length >= 1.5, acc.line()


# --- the patch, without starting an engine ----------------------------------------------


@pytest.mark.sglang
def test_every_patch_target_has_its_hook():
    """Each target is checked (exists, wrapped, signature) with every other patch's
    in tests/test_patches.py; here, that the two tables name the same targets."""
    from sglang_amd.patches import cpu_gdn

    assert set(cpu_gdn.TARGETS) == set(cpu_gdn.HOOKS)


@pytest.mark.sglang
def test_sglang_still_has_no_gdn_kernel_extension_point():
    """If SGLang grows a way to plug in a GDN kernel (or serves it on an out-of-tree
    CPU platform), this fails: then use that instead of patches/cpu_gdn.py."""
    from sglang.srt.layers.attention.linear import gdn_backend
    from sglang.srt.layers.attention.linear.kernels import gdn_triton

    init = inspect.getsource(gdn_backend.GDNKernelDispatcher.__init__)
    assert 'raise ValueError(f"Unsupported GDN decode backend' in init
    assert "is_custom" not in init
    # SGLang's own CPU GDN path is sgl-kernel's CPU build, chosen by is_cpu()
    assert "from sgl_kernel.mamba import chunk_gated_delta_rule_cpu" in inspect.getsource(
        gdn_triton
    )


@pytest.mark.sglang
def test_patch_is_registered_only_on_our_platform_and_passes_other_devices_through(
    monkeypatch,
):
    from sglang_amd.patches import cpu_gdn

    monkeypatch.delenv("SGLANG_PLATFORM", raising=False)
    assert cpu_gdn.register() is False
    monkeypatch.setenv("SGLANG_PLATFORM", "some_gpu_platform")
    assert cpu_gdn.register() is False
    monkeypatch.setenv("SGLANG_PLATFORM", "sglang_amd_cpu")
    assert cpu_gdn.register() is True

    calls = []

    def original(*args, **kwargs):
        calls.append(args)
        return "sglang's"

    meta = torch.empty(3, 4, device="meta")  # not the CPU: SGLang's kernel runs
    for target, hook in cpu_gdn.HOOKS.items():
        if target == cpu_gdn.DISPATCHER_INIT:  # registered only where the device is the CPU
            continue
        method = cpu_gdn.TARGETS[target][0] == "self"
        args = (object(), meta, meta) if method else (meta, meta)
        assert hook(original, *args) == "sglang's", target
    assert len(calls) == len(cpu_gdn.HOOKS) - 1


def _gdn_model(dtype=torch.float32):
    from transformers import Qwen3NextConfig

    return SimpleNamespace(hf_config=Qwen3NextConfig(num_hidden_layers=2), dtype=dtype)


def test_start_rules_refuse_what_the_torch_tier_does_not_serve(monkeypatch):
    from sglang_amd import capability
    from sglang_amd.flags import UnsupportedConfigError
    from sglang_amd.linear_attention.capability import CAPABILITY, CONV_DTYPE_ENV

    monkeypatch.setenv("SGLANG_PLATFORM", "sglang_amd_cpu")
    monkeypatch.delenv(CONV_DTYPE_ENV, raising=False)
    ok = dict(device="cpu", dtype="float32", linear_attn_backend="triton")
    assert CAPABILITY in capability.active(SimpleNamespace(**ok))
    assert CAPABILITY not in capability.active(SimpleNamespace(**{**ok, "device": "cuda"}))
    assert CAPABILITY.problems(SimpleNamespace(**ok), _gdn_model()) == []
    bad = {
        "--linear-attn-decode-backend flashinfer": dict(linear_attn_decode_backend="flashinfer"),
        "--enable-linear-replayssm": dict(enable_linear_replayssm=True),
        "--speculative-eagle-topk 2": dict(speculative_algorithm="NEXTN", speculative_eagle_topk=2),
        f"{CONV_DTYPE_ENV}=bfloat16 with a float32 model": dict(dtype="auto"),
    }
    for flag, args in bad.items():
        problems = CAPABILITY.problems(SimpleNamespace(**{**ok, **args}), _gdn_model())
        assert len(problems) == 1 and flag in problems[0], (flag, problems)
    with pytest.raises(UnsupportedConfigError, match="--linear-attn-backend cutedsl"):
        capability.check_start(
            SimpleNamespace(**{**ok, "linear_attn_backend": "cutedsl"}), _gdn_model()
        )
    # a model without GDN layers is asked nothing
    dense = SimpleNamespace(hf_config=SimpleNamespace(), dtype=torch.float32)
    assert CAPABILITY.problems(SimpleNamespace(**{**ok, "enable_mis": True}), dense) == []


def test_prepare_sets_the_conv_dtype_and_takes_it_back(monkeypatch):
    from sglang_amd.linear_attention import capability as la

    monkeypatch.delenv(la.CONV_DTYPE_ENV, raising=False)
    la.prepare(SimpleNamespace(dtype="float32"))
    assert os.environ[la.CONV_DTYPE_ENV] == "float32"
    la.prepare(SimpleNamespace(dtype="bfloat16"))
    assert la.CONV_DTYPE_ENV not in os.environ
    monkeypatch.setenv(la.CONV_DTYPE_ENV, "float16")  # the user's choice stands
    la.prepare(SimpleNamespace(dtype="float32"))
    assert os.environ[la.CONV_DTYPE_ENV] == "float16"


@pytest.mark.sglang
def test_platform_fixes_for_hybrid_models(monkeypatch):
    """Extra-buffer support, the state pool sized from the token pool (a size given
    stands), the default device module's current device, and pinning without CUDA."""
    from sglang.srt.platforms.cpu import CpuSRTPlatform  # noqa: F401 (before ours, as SGLang does)

    from sglang_amd import platform

    plat = platform.AmdCpuReferencePlatform()
    assert plat.support_mamba_cache_extra_buffer()
    args = SimpleNamespace(attention_backend="amd", max_total_tokens=None)
    plat.apply_server_args_defaults(args)
    assert args.max_mamba_cache_size == platform.MAMBA_SLOTS_PER_REQUEST * 256
    for given, want in (
        (dict(max_total_tokens=100), 5 * 50),
        (dict(max_total_tokens=4096, max_running_requests=7), 5 * 7),
        (dict(max_total_tokens=4096, max_mamba_cache_size=3), 3),
    ):
        args = SimpleNamespace(attention_backend="amd", **given)
        plat.apply_server_args_defaults(args)
        assert args.max_mamba_cache_size == want, given

    # torch as the scheduler process sees it; monkeypatch puts it back afterwards
    monkeypatch.setattr(torch, "get_device_module", torch.get_device_module)
    monkeypatch.setattr(torch.Tensor, "pin_memory", torch.Tensor.pin_memory)
    for _ in range(2):  # idempotent
        plat.init_backend()
    module = torch.get_device_module()
    assert module.current_device() == torch.device("cpu")
    assert module.is_available is torch.get_device_module("cuda").is_available
    # torch.compile reaches torch's own cached function through __wrapped__
    assert callable(torch.get_device_module.__wrapped__.cache_clear)
    t = torch.ones(3)
    assert torch.cuda.is_available() or t.pin_memory() is t
