"""`sglang-amd bench serve`: the load-and-fault suite, full-sized, as figures.

Where it sits: starts `sglang-amd serve` (SmolLM2 in float32 on the CPU
platform by default, or the serve arguments given after `--`), runs every phase
of `serving/fault_suite.py` against it (the SIGTERM phase last, it stops the
server), and writes what the README's reliability section quotes: requests,
concurrency, lost, mismatched against solo answers, p50/p95 latency, the
KV-exhaustion and SIGTERM outcomes, and every malformed request with its
answer. Output: a text table, `serve.json`, `serve.md` and `serve.png`
(latency distribution under load, against the same requests sent alone).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from sglang_amd.plotting import pyplot, save
from sglang_amd.serving import fault_suite
from sglang_amd.serving.fault_cases import fault_cases
from sglang_amd.serving.server_process import ServerProcess

DEFAULT_ARGS = ["--device", "cpu", "--dtype", "float32", "--max-total-tokens", "1024",
                "--context-length", "2048", "--log-level", "warning"]  # fmt: skip


def vocab_size(model_path: str) -> int:
    """The model's vocabulary size from its config (no weights read)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_path)
    return int(getattr(cfg, "get_text_config", lambda: cfg)().vocab_size)


def run(serve_args: list[str], size: fault_suite.SuiteSize, out: Path) -> dict:
    """Every phase against one server started with `serve_args`; the figures as a dict."""
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    t0 = time.monotonic()
    server = ServerProcess(serve_args or DEFAULT_ARGS, out / "serve-server.log", env)
    try:
        info = server.info()
        vocab, context = vocab_size(info["root"]), int(info["max_model_len"])
        result = {"args": serve_args or DEFAULT_ARGS, "size": dataclasses.asdict(size),
                  "model": info["root"], "vocab_size": vocab, "context": context,
                  "start_s": time.monotonic() - t0}  # fmt: skip
        phases = [
            ("load", lambda: fault_suite.run_load(server, size)),
            ("fuzz", lambda: fault_suite.run_fuzz(server, fault_cases(vocab, context))),
            ("disconnect", lambda: fault_suite.run_disconnects(server)),
            ("kv", lambda: fault_suite.run_kv_exhaustion(server, size, vocab)),
            ("sigterm", lambda: fault_suite.run_sigterm(server, size)),
        ]
        for name, phase in phases:
            t = time.monotonic()
            result[name] = dataclasses.asdict(phase())
            result[name]["phase_s"] = time.monotonic() - t
            print(f"bench serve: {name} done in {result[name]['phase_s']:.0f} s", flush=True)
    finally:
        if server.alive():
            server.kill()
    return result


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def summary_rows(r: dict) -> list[tuple[str, str]]:
    """(figure, value) rows shared by the table and the markdown."""
    load, kv, term, disc, fuzz = r["load"], r["kv"], r["sigterm"], r["disconnect"], r["fuzz"]
    outcomes = fuzz["outcomes"]
    refused = sum(o["expect"] == "refused" for o in outcomes)
    passed = sum(o["passed"] and o["healthy_after"] for o in outcomes)
    return [
        ("concurrent requests (all at once)", f"{load['requests']} ({load['streamed']} streamed, "
         f"{load['behind_shared_prefix']} behind a shared prefix)"),
        ("lost", str(load["lost"])),
        ("answers differing from the same request alone (float32 greedy)", str(len(load["mismatched"]))),
        ("latency under load p50 / p95 / max", f"{load['p50_s']:.1f} / {load['p95_s']:.1f} / {load['max_s']:.1f} s"),
        ("latency alone p50", f"{load['solo_p50_s']:.2f} s"),
        ("load wall time", f"{load['wall_s']:.1f} s"),
        ("malformed / edge requests", f"{len(outcomes)} sent ({refused} must be refused, "
         f"{len(outcomes) - refused} served): {passed} answered as expected, server up after each"),
        ("probe answer after the malformed set", "same as before" if fuzz["probe_after"] == fuzz["probe_before"] else "DIFFERENT"),
        ("clients hanging up mid-stream", f"{disc['streams']} x {disc['max_tokens']} tokens asked; "
         f"scheduler empty after {disc['drained_s']:.1f} s" if disc["drained_s"] is not None else "never drained"),
        ("KV pool exhausted", f"{kv['requests']} x {kv['prompt_tokens']}-token prompts on a {kv['pool_tokens']}-token pool: "
         f"at most {kv['peak_running']} running and {kv['peak_waiting']} waiting, {kv['lost']} lost, {len(kv['mismatched'])} differing"),
        ("prompt longer than the pool", f"HTTP {kv['too_long_status']}: {kv['too_long_message'][:90]}"),
        ("output overflowing the pool", f"finish_reason {kv['overflow_finish']} after "
         f"{kv['overflow_completion_tokens']} of {kv['overflow_max_tokens']} tokens"),
        ("server memory (RSS) before / peak / after", f"{_mib(kv['rss_before'])} / {_mib(kv['rss_peak'])} / {_mib(kv['rss_after'])}"),
        ("SIGTERM with requests in flight", f"{term['in_flight']} in flight: {term['finished_right']} finished right, "
         f"{term['clear_errors']} clear errors, {term['lost']} lost; exit code {term['exit_code']} "
         f"{term['exit_s']:.1f} s after the signal; processes left: {'none' if term['group_gone'] else 'SOME'}"),
    ]  # fmt: skip


def table(r: dict, header: str) -> str:
    rows = summary_rows(r)
    width = max(len(k) for k, _ in rows)
    lines = [header, *(f"{k:<{width}}  {v}" for k, v in rows), "", "malformed / edge requests:"]
    for o in r["fuzz"]["outcomes"]:
        mark = "ok  " if o["passed"] and o["healthy_after"] else "FAIL"
        lines.append(
            f"  {mark} {o['name']:<36} {o['expect']:<8} HTTP {o['status']}  {o['message'][:80]}"
        )
    return "\n".join(lines)


def markdown(r: dict, header: str) -> str:
    lines = [f"_{header}_", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in summary_rows(r)]
    lines += ["", "| request | endpoint | expected | answer | message | before our checks |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for o in r["fuzz"]["outcomes"]:
        ok = "" if o["passed"] and o["healthy_after"] else " **FAILED**"
        msg = o["message"][:90].replace("|", "/")
        lines.append(
            f"| {o['name']} | `{o['endpoint']}` | {o['expect']} | {o['status']}{ok} | {msg} | {o['killed']} |"
        )
    return "\n".join(lines) + "\n"


def write(r: dict, out: Path, header: str) -> tuple[Path, Path | None]:
    (out / "serve.json").write_text(json.dumps({"header": header, **r}, indent=1, default=str))
    (out / "serve.md").write_text(markdown(r, header))
    plt = pyplot()
    if plt is None:
        return out / "serve.json", None
    fig, ax = plt.subplots(figsize=(7, 4))
    lat = sorted(r["load"]["latencies_s"])
    solo = sorted(r["load"]["solo_latencies_s"])
    for values, label in ((lat, f"{len(lat)} requests at once"), (solo, "each alone")):
        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
    ax.set_xlabel("latency (s)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(header, fontsize=8)
    ax.legend()
    png = save(fig, out / "serve.png", dpi=120)
    return out / "serve.json", png
