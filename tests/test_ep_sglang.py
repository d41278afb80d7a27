"""Expert parallelism's SGLang side without starting a server: the start rules, the
CLI choice and dispatcher hook, the CPU platform's tensor-parallel fixes, `env`.

The served path is tests/test_e2e_ep.py; the communicator across real ranks is
tests/test_ep_dispatch.py.
"""

from __future__ import annotations

import argparse
import inspect
from types import SimpleNamespace

import pytest

from sglang_amd.ep.support import FLAG, ep_graph_refusals, ep_problems
from sglang_amd.flags import UnsupportedConfigError

pytestmark = [pytest.mark.sglang]

GOOD = dict(
    moe_a2a_backend="customized",
    tp_size=2,
    ep_size=2,
    moe_runner_backend="amd",
    deepep_mode="auto",
    device="cpu",
)


def test_a_served_configuration_has_no_problems():
    assert ep_problems(SimpleNamespace(**GOOD), None) == []
    mx = {**GOOD, "moe_runner_backend": "auto", "quantization": "amd_mxfp4"}
    assert ep_problems(SimpleNamespace(**mx), None) == []
    assert ep_problems(SimpleNamespace(**{**GOOD, "moe_a2a_backend": "none"}), None) == []


@pytest.mark.parametrize(
    "change, env, words",
    [
        (dict(ep_size=1), {}, "--ep-size equal to --tp-size"),
        (dict(enable_dp_attention=True), {}, "--enable-dp-attention"),
        (dict(enable_two_batch_overlap=True), {}, "--enable-two-batch-overlap"),
        (dict(moe_runner_backend="triton"), {}, "--moe-runner-backend amd"),
        ({}, {"SGLANG_AMD_EP_WIRE": "int4"}, "SGLANG_AMD_EP_WIRE='int4'"),
        ({}, {"SGLANG_AMD_EP_TIER": "mori"}, "no MoRI tier yet"),
        ({}, {"SGLANG_AMD_EP_LOW_LATENCY_MAX_TOKENS": "0"}, "LOW_LATENCY_MAX_TOKENS"),
    ],
)
def test_what_we_do_not_serve_is_refused_naming_the_flag(monkeypatch, change, env, words):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (problem,) = ep_problems(SimpleNamespace(**{**GOOD, **change}), None)
    assert words in problem, problem


def test_wire_needs_a_hidden_size_it_can_block(monkeypatch):
    monkeypatch.setenv("SGLANG_AMD_EP_WIRE", "fp8")
    model = SimpleNamespace(hf_config=SimpleNamespace(hidden_size=96))
    (problem,) = ep_problems(SimpleNamespace(**GOOD), model)
    assert "multiple of 128" in problem


def test_graphs_on_a_gpu_only_for_low_latency_decode():
    graphs = SimpleNamespace(
        decode=SimpleNamespace(backend="full"), prefill=SimpleNamespace(backend="breakable")
    )
    gpu = {**GOOD, "device": "cuda"}
    assert set(ep_graph_refusals(SimpleNamespace(**gpu), graphs)) == {"decode", "prefill"}
    ll = SimpleNamespace(**{**gpu, "deepep_mode": "low_latency"})
    assert set(ep_graph_refusals(ll, graphs)) == {"prefill"}
    assert ep_graph_refusals(SimpleNamespace(**GOOD), graphs) == {}


@pytest.mark.full  # 24 s; the rules above are the same checks without an Engine
def test_engine_start_refuses_before_any_process(smollm2_path):
    import sglang as sgl

    from tests.e2e_engines import ENGINE_DEFAULTS, ensure_cpu_platform

    ensure_cpu_platform()
    kwargs = {**ENGINE_DEFAULTS, **GOOD, "ep_size": 1}
    kwargs.pop("deepep_mode")
    with pytest.raises(UnsupportedConfigError, match="--ep-size"):
        sgl.Engine(model_path=smollm2_path, **kwargs)


def test_cli_accepts_customized_and_sglang_builds_our_dispatcher():
    from sglang.srt.layers.moe.fused_moe_triton import layer
    from sglang.srt.plugins.hook_registry import HookRegistry
    from sglang.srt.server_args import ServerArgs

    from sglang_amd import plugin
    from sglang_amd.patches import ep_dispatcher

    plugin.register()
    HookRegistry.apply_hooks()
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    ns = parser.parse_args(["--model-path", "m", "--moe-a2a-backend", "customized"])
    assert ns.moe_a2a_backend == "customized"
    assert all(t in HookRegistry._patched for t in ep_dispatcher.TARGETS)
    assert inspect.unwrap(layer.create_moe_dispatcher) is not layer.create_moe_dispatcher
    source = inspect.getsource(inspect.unwrap(layer.create_moe_dispatcher))
    # The gap the hook fills: SGLang still has nothing for customized.
    assert "is_customized" not in source and "NotImplementedError" in source


def test_sglang_still_owes_a_sum_after_a_customized_combine():
    """The second hook's reason: SGLang names the a2a backends whose combine completes
    the sum, and customized is not among them. When it is, drop the hook."""
    from sglang.srt.layers.moe import utils

    source = inspect.getsource(inspect.unwrap(utils.post_experts_output_is_complete))
    assert "is_pplx()" in source and "customized" not in source


def test_cpu_collectives_patch_still_lands():
    """SGLang must still route CPU groups by the module flag we set; when it stops,
    drop patches/cpu_tensor_parallel.py."""
    import importlib

    from sglang_amd.patches import cpu_tensor_parallel as patch

    for target, flag in patch.TARGETS.items():
        module, cls, fn = target.rsplit(".", 2)
        source = inspect.getsource(getattr(getattr(importlib.import_module(module), cls), fn))
        assert flag in source, target
    for name in patch.MODULES:
        assert isinstance(importlib.import_module(name)._is_cpu, bool)


def test_platform_binds_threads_and_picks_our_runner_for_ep(monkeypatch):
    from sglang_amd.platform import THREADS_BIND_ENV, AmdCpuReferencePlatform, cpu_binds

    assert cpu_binds(2, [0, 1, 2, 3]) == "0,1|2,3"
    assert cpu_binds(3, [0, 1]) == "0,1|0,1|0,1"
    monkeypatch.delenv(THREADS_BIND_ENV, raising=False)
    args = SimpleNamespace(
        attention_backend="amd", max_total_tokens=1, tp_size=2, ep_size=2, moe_runner_backend="auto"
    )
    AmdCpuReferencePlatform().apply_server_args_defaults(args)
    import os

    assert len(os.environ[THREADS_BIND_ENV].split("|")) == 2
    assert args.moe_runner_backend == "amd"
    monkeypatch.setenv(THREADS_BIND_ENV, "7")
    AmdCpuReferencePlatform().apply_server_args_defaults(args)
    assert os.environ[THREADS_BIND_ENV] == "7"  # an operator's choice is kept


def test_env_reports_the_ep_tier_wire_and_mode():
    from sglang_amd.cli import env_report

    out = env_report()
    assert f"expert parallelism ({FLAG}" in out
    assert "transport torch" in out and "wire      none" in out and "low_latency" in out
