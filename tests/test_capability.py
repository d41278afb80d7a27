"""The capability protocol: a new family plugs in without touching plugin.py or cli.py.

A dummy capability (its own flag, a start check, a graph refusal, a registration)
is added at run time; SGLang's resolution hook (plugin._validate_flags), the
plugin's registration and `sglang-amd env` all pick it up."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sglang_amd import capability
from sglang_amd.capability import Capability
from sglang_amd.flags import UnsupportedConfigError

REGISTERED: list[str] = []


def _register() -> None:
    REGISTERED.append("dummy")


def _used(args) -> list[str]:
    return ["--dummy-flag on"] if getattr(args, "dummy_flag", None) == "on" else []


def _problems(args, model_config) -> list[str]:
    if getattr(args, "dummy_bad", False):
        return ["--dummy-flag on cannot serve this; drop --dummy-flag"]
    return []


def _graph_refusals(args, graphs, model_config, tier_of) -> dict[str, str]:
    assert tier_of("attention.decode") in ("torch", "triton", "error")
    return {"decode": "the dummy reads the host"}


DUMMY = Capability(
    name="dummy",
    flags=("--dummy-flag on",),
    ops=("attention.decode",),
    used=_used,
    problems=_problems,
    graph_refusals=_graph_refusals,
    registration=f"{__name__}:_register",
    env_setups={"--dummy-flag on": dict(dummy_flag="on")},
)


@pytest.fixture
def dummy():
    capability.add_capability(DUMMY)
    yield DUMMY
    capability.remove_capability(DUMMY.name)


def test_builtins_are_attention_moe_quant_serving_ep_models():
    names = [c.name for c in capability.capabilities()]
    assert names == ["attention", "moe", "quant", "serving", "ep", "models", "linear_attention"]
    for cap in capability.capabilities():
        assert cap.registration.count(":") == 1
        # Every family but serving (always on: request checks) and models (on with
        # any of ours: coverage) owns flags and tiered ops (ep: its local permutes;
        # its transport is chosen in ep/support.py).
        assert bool(cap.flags) == (cap.name not in ("serving", "models")), cap.name
        assert bool(cap.ops) == (cap.name not in ("serving", "models")), cap.name


def test_inactive_capabilities_are_asked_nothing(dummy):
    args = SimpleNamespace(device="cuda")
    assert capability.active(args) == []
    assert capability.graph_refusals(args, None, tier_of=lambda op: 1 / 0) == {}


def test_dummy_checks_and_refusals_reach_the_shared_loops(dummy):
    args = SimpleNamespace(device="cuda", dummy_flag="on", dummy_bad=True)
    assert capability.active(args) == [dummy]
    with pytest.raises(UnsupportedConfigError, match="drop --dummy-flag"):
        capability.check_start(args, None)
    args.dummy_bad = False
    assert capability.check_start(args, None) == [dummy]
    graphs = SimpleNamespace(decode=SimpleNamespace(backend="full"))
    assert capability.graph_refusals(args, graphs, tier_of=lambda op: "triton") == {
        "decode": "the dummy reads the host"
    }


def test_env_reports_the_dummy(dummy):
    from sglang_amd import cli

    lines = cli.graph_report("cuda", {"attention.decode": "triton"} | _all_triton())
    assert any(
        "--dummy-flag on" in line and "off: the dummy reads the host" in line for line in lines
    )
    report = cli.env_report()
    assert "dummy" in report and "--dummy-flag on -> attention.decode" in report


def _all_triton() -> dict[str, str]:
    from sglang_amd.tiers import OPS

    return dict.fromkeys(OPS, "triton")


@pytest.mark.sglang
def test_plugin_runs_the_dummy_registration_and_resolution_rules(dummy, monkeypatch):
    """plugin.register and the resolution hook, with SGLang's own graph config."""
    import sglang.srt.arg_groups.model_override_base as model_override_base
    import sglang.srt.arg_groups.overrides as overrides
    from sglang.srt.model_executor.cuda_graph_config import default_cuda_graph_config

    from sglang_amd import plugin

    REGISTERED.clear()
    capability.register_all()
    assert REGISTERED == ["dummy"]

    declared = {}
    monkeypatch.setattr(overrides, "resolved_view", lambda args: args)
    monkeypatch.setattr(model_override_base, "model_config_of", lambda args: None)
    monkeypatch.setattr(
        overrides, "declare_resolution", lambda args, name, **kw: declared.update(kw)
    )
    config = default_cuda_graph_config()
    args = SimpleNamespace(device="cuda", dummy_flag="on", cuda_graph_config=config)
    previous = []
    plugin._validate_flags(args, previous.append)
    assert previous == [args]
    assert str(declared["cuda_graph_config"].decode.backend) == "disabled"
    assert str(declared["cuda_graph_config"].prefill.backend) == str(config.prefill.backend)
    args.dummy_bad = True
    with pytest.raises(UnsupportedConfigError, match="--dummy-flag"):
        plugin._validate_flags(args, lambda a: None)
