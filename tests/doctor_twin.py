"""Does `sglang-amd doctor` say what a started engine actually does?

The e2e modules call `check_twin` with an engine they already started (no extra
start): the doctor is run in this process on the same model directory with the
same arguments as flags, and its rows are compared with the engine's own
account (`get_server_info`: resolved backends, KV pool bytes and token
capacity) and with the tiers our ops recorded in the scheduler process
(SGLANG_AMD_TRACE). The doctor runs in the environment the engine's processes
saw (`engine_environment`: without the interpreter this process runs under,
which would make it predict Triton where the engine runs torch).
"""

from __future__ import annotations

from tests.e2e_engines import ENGINE_DEFAULTS, engine_environment

GIB = 2**30
ROUNDING_GB = 0.0005  # SGLang rounds its memory figures to 0.001 GB


def engine_flags(kwargs: dict) -> list[str]:
    flags: list[str] = []
    for key, value in {**ENGINE_DEFAULTS, **kwargs}.items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def tiers_seen(trace_file) -> dict[str, set[str]]:
    """op -> the tiers its trace events name, in the scheduler of the engine started last
    (the process of the newest `backend_init`: the trace file is shared by the session)."""
    from sglang_amd import trace
    from sglang_amd.tiers import OPS

    events = trace.read(trace_file)
    pid = [e["pid"] for e in events if e["event"] == "backend_init"][-1]
    op_of = {spec.trace_event: name for name, spec in OPS.items() if spec.trace_event}
    seen: dict[str, set[str]] = {}
    for e in events:
        if e["pid"] == pid and e["event"] in op_of and e.get("tier"):
            seen.setdefault(op_of[e["event"]], set()).add(e["tier"])
    return seen


def check_twin(engine, model_path: str, kwargs: dict, tiers_seen: dict[str, set[str]]) -> dict:
    from sglang_amd.doctor.sglang_probe import probe

    with engine_environment():
        report = probe(model_path, engine_flags(kwargs))
    assert not report["blocking"], report["blocking"]
    info = engine.get_server_info()
    assert report["backends"]["attention"] == info["attention_backend"]
    assert report["backends"]["moe_runner"] == info["moe_runner_backend"]
    state = info["internal_states"][0]["memory_usage"]
    capacity = state["token_capacity"]
    per_token = state["kvcache"] * GIB / capacity
    want = sum(report["kv_cache"]["bytes_per_token_per_rank"].values())
    slack = ROUNDING_GB * GIB / capacity
    assert abs(per_token - want) <= slack + 0.002 * want, (per_token, want, state)
    for op, tier in report["tiers"].items():
        assert tiers_seen.get(op) == {tier}, (op, tier, tiers_seen)
    return {"doctor": report, "engine_memory": state}
