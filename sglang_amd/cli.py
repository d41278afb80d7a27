"""`sglang-amd`: serve through our backends, report the environment, fetch the reference model.

sglang-amd serve [launch_server args]   SGLang's launch_server with our plugin;
                                        no --model-path with --device cpu, or on
                                        a machine without a GPU, serves SmolLM2
                                        on the CPU platform
sglang-amd env                          versions, device, and the tier each op uses
sglang-amd model smollm2                convert (once) and print the model path
sglang-amd bench attention|moe          our kernels against peers (table, JSON, PNG)
sglang-amd bench serve [-- SERVE ARGS]  the load-and-fault suite against a live server
sglang-amd bench mtp --model M [...]     decode tokens/s with and without MTP, accept length
sglang-amd mtp train --model M --out D --data JSONL
                                        an EAGLE3 draft head by self-distillation
sglang-amd eval gsm8k --base-url URL --data JSONL [--compare-url URL2]
                                        few-shot GSM8K accuracy with its interval;
                                        with two servers, whether they differ
sglang-amd eval compare --a ARGS --b ARGS [--contexts 1k,8k] [--bisect]
                                        two configurations token by token against
                                        the dtype's thresholds; --bisect names the
                                        change at fault
sglang-amd doctor MODEL_DIR [--tp N --ep N --flags ...]
                                        from config.json alone: SGLang's class, the
                                        attention path, our tiers, KV bytes, graphs,
                                        the launch command; exit 1 if it cannot serve
sglang-amd audit [--quick] [--peers]    every kernel compiled for gfx942, gfx950,
                                        sm_90 and sm_100 (no GPU needed): registers,
                                        spills, LDS, occupancy, instructions, gates;
                                        --peers: SGLang's kernels beside ours;
                 [--aiter-src DIR]      with a ROCm/aiter checkout (or
                                        $SGLANG_AMD_AITER_SRC), aiter's Triton
                                        kernels too (gfx942/gfx950)
sglang-amd audit --traffic [--quick]    bytes each op moves against its ideal, and
                 [--peers]              launches per forward, under the interpreter;
                                        --peers: SGLang's kernels counted beside ours
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Sequence

from sglang_amd import SGLANG_VERSION, __version__
from sglang_amd.audit import cli as audit_cli
from sglang_amd.doctor import cli as doctor_cli
from sglang_amd.eval import compare_cli


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of `flag VALUE` or `flag=VALUE` in `args` (the last one wins, as
    in argparse); None when absent."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a[len(flag) + 1 :]
    return value


def serve_args(args: Sequence[str], *, has_gpu: bool | None = None) -> tuple[list[str], dict]:
    """The launch_server arguments and extra environment `sglang-amd serve ARGS` uses."""
    import torch

    from sglang_amd.flags import ATTENTION_BACKEND, CPU_PLATFORM

    if has_gpu is None:
        has_gpu = torch.cuda.is_available()
    argv = list(args)
    env: dict[str, str] = {}
    # An explicit --device cpu means the CPU reference setup even on a GPU machine
    # (the e2e tests serve that way everywhere); only a GPU serve needs a model named.
    cpu = not has_gpu or _flag_value(argv, "--device") == "cpu"
    if not _has_flag(argv, "--model-path") and not _has_flag(argv, "--model"):
        if not cpu:
            raise SystemExit(
                "sglang-amd serve: pass --model-path (a GPU is present; "
                "--device cpu serves the SmolLM2 reference model instead)"
            )
        from sglang_amd.reference_model import smollm2_path

        argv = ["--model-path", str(smollm2_path())] + argv
    if cpu:
        if "SGLANG_PLATFORM" not in os.environ:
            env["SGLANG_PLATFORM"] = CPU_PLATFORM
        if not _has_flag(argv, "--device"):
            argv += ["--device", "cpu"]
        if _has_flag(argv, "--speculative-algorithm"):
            # SGLang's speculative helpers are Triton kernels: on CPU tensors they need
            # the interpreter, which would also make our own ops pick Triton; keep them on torch.
            for var, value in (("TRITON_INTERPRET", "1"), ("SGLANG_AMD_TIER", "torch")):
                if var not in os.environ:
                    env[var] = value
    if not _has_flag(argv, "--attention-backend"):
        argv += ["--attention-backend", ATTENTION_BACKEND]
    return argv, env


def _serve(args: Sequence[str]) -> int:
    """SGLang's launch_server main, in this process, with our errors made one line."""
    from sglang_amd.reference_model import ReferenceModelError

    try:  # the SmolLM2 default fetches the model: a missing package is one line too
        argv, env = serve_args(args)
    except ReferenceModelError as exc:
        print(f"sglang-amd serve: {exc}", file=sys.stderr)
        return 1
    os.environ.update(env)  # before sglang resolves its platform
    print("sglang-amd serve: launch_server", " ".join(argv), flush=True)
    from sglang.launch_server import run_server
    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import prepare_server_args
    from sglang.srt.utils import kill_process_tree

    from sglang_amd.flags import SglangAmdError

    load_plugins()
    server_args = prepare_server_args(argv)
    try:
        run_server(server_args)
    except SglangAmdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        kill_process_tree(os.getpid(), include_parent=False)
    return 0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def env_report() -> str:
    """What `sglang-amd env` prints."""
    import torch

    from sglang_amd.capability import NOT_YET, capabilities
    from sglang_amd.target_info import (
        current_target,
        device_kind,
        gpu_name,
        probe_aiter,
        probe_triton,
    )
    from sglang_amd.tiers import OPS, TIER_ORDER, TierError, select

    device = device_kind()
    target = current_target()
    sglang = _version("sglang")
    lines = [
        f"sglang-amd {__version__}",
        f"sglang     {sglang}"
        + (
            ""
            if sglang == SGLANG_VERSION
            else f"  (WARNING: sglang-amd is pinned to {SGLANG_VERSION})"
        ),
        f"torch      {torch.__version__} (cuda {torch.version.cuda}, hip {torch.version.hip})",
        f"triton     {_version('triton')}",
        f"aiter      {_version('amd-aiter')}",
        f"device     {device}: {gpu_name()}",
        f"target     {target.arch} ({target.vendor}, {target.compute_units} compute units, "
        f"warp {target.warp_size}): the launch flags' key",
        f"SGLANG_PLATFORM={os.environ.get('SGLANG_PLATFORM', '')}",
        f"triton tier: {probe_triton().reason}",
        f"aiter tier:  {probe_aiter().reason}",
        "",
        f"{'op':<18} {'tier':<7} why",
    ]
    for name, spec in OPS.items():
        try:
            sel = select(name)
        except TierError as exc:
            lines.append(f"{name:<18} {'ERROR':<7} {exc}")
            continue
        lines.append(f"{name:<18} {sel.tier.value:<7} {sel.reason}")
        for tier, answer in sel.considered:
            if tier != sel.tier and TIER_ORDER.index(tier) < TIER_ORDER.index(sel.tier):
                lines.append(f"{'':<18} {'- ' + tier.value:<7} skipped: {answer.reason}")
        lines.append(f"{'':<18} (force with {' or '.join(spec.env_vars)}=aiter|triton|torch)")
    lines += ["", "capabilities (flags -> ops)"]
    for cap in capabilities():
        flags = ", ".join(cap.flags) or "(always on)"
        ops = ", ".join(cap.ops) or "no tiered op"
        lines.append(f"  {cap.name:<10} {flags} -> {ops}")
    for cap in capabilities():
        if cap.env_lines is not None:
            lines += ["", *cap.env_lines()]
    lines += ["", "not yet (refused at start or absent; see the README):"]
    lines += [f"  - {item}" for item in NOT_YET]
    lines += ["", *graph_report(device, _selected_tiers())]
    return "\n".join(lines)


def _selected_tiers() -> dict[str, str]:
    from sglang_amd.tiers import OPS, TierError, select

    tiers = {}
    for op in OPS:
        try:
            tiers[op] = select(op).tier.value
        except TierError:
            tiers[op] = "error"
    return tiers


def graph_report(device: str, tiers: dict[str, str]) -> list[str]:
    """Which CUDA-graph phases each capability's flags keep on this machine (default
    graph config: full decode graphs, breakable prefill graphs), from the same rules
    the plugin applies at server start. `tiers`: op name -> tier value."""
    from types import SimpleNamespace

    from sglang_amd.capability import capabilities, graph_refusals

    if device == "cpu":
        return ["CUDA graphs: not on this machine (no GPU)"]
    graphs = SimpleNamespace(
        decode=SimpleNamespace(backend="full"), prefill=SimpleNamespace(backend="breakable")
    )
    lines = ["CUDA graphs with these tiers (decode: full, prefill: breakable)"]
    for cap in capabilities():
        for flags, values in cap.env_setups.items():
            args = SimpleNamespace(device="cuda", **values)
            refused = graph_refusals(args, graphs, None, tier_of=tiers.__getitem__)
            for phase in ("decode", "prefill"):
                state = f"off: {refused[phase]}" if phase in refused else "captured"
                lines.append(f"  {flags:<34} {phase:<8} {state}")
    return lines


def _bench_serve(ns: argparse.Namespace) -> int:
    import datetime
    from pathlib import Path

    from sglang_amd.bench import serve
    from sglang_amd.serving import fault_suite

    size = {"ci": fault_suite.CI, "full": fault_suite.FULL}[ns.size]
    out = Path(ns.out)
    result = serve.run(ns.serve_args, size, out)
    header = (
        f"sglang-amd bench serve ({size.name}) | {' '.join(result['args'])} | "
        f"{datetime.date.today()} | commit {_commit()}"
    )
    print(serve.table(result, header))
    json_path, png_path = serve.write(result, out, header)
    print(f"wrote {json_path}, {out / 'serve.md'}" + (f" and {png_path}" if png_path else ""))
    return 0


def _bench_ep(ns: argparse.Namespace) -> int:
    import datetime
    from pathlib import Path

    import torch

    from sglang_amd.bench import ep
    from sglang_amd.target_info import gpu_name

    gpus = torch.cuda.device_count()
    on_gpu = gpus >= 2 and not ns.smoke
    cases = ep.gpu_cases(gpus) if on_gpu else (ep.SMOKE_CASES if ns.smoke else ep.CPU_CASES)
    where = f"{gpus} x {gpu_name()} (nccl)" if on_gpu else "CPU ranks (gloo)"
    header = (
        f"sglang-amd bench ep | {where} | {ns.dtype} | {datetime.date.today()} | commit {_commit()}"
        + (" | SMOKE (not a measurement)" if ns.smoke else "")
    )
    if gpus == 1:
        print("bench ep: one GPU here; expert parallelism needs two or more, so CPU ranks run")
    result = ep.run(
        cases,
        getattr(torch, ns.dtype),
        iters=3 if ns.smoke else 20,
        backend="nccl" if on_gpu else "gloo",
    )
    print(ep.table(result, header))
    json_path, png_path = ep.write(result, Path(ns.out), header)
    print(
        f"wrote {json_path}"
        + (f" and {png_path}" if png_path else " (no PNG: pip install matplotlib)")
    )
    return 0


def _bench(ns: argparse.Namespace) -> int:
    if ns.what == "serve":
        return _bench_serve(ns)
    if ns.what == "ep":
        return _bench_ep(ns)
    import datetime
    from pathlib import Path

    import torch

    from sglang_amd.bench import attention, dsa, moe, report
    from sglang_amd.target_info import gpu_name

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    smoke = ns.smoke or device.type == "cpu"
    module = {"attention": attention, "moe": moe, "dsa": dsa}[ns.what]
    cases = module.SMOKE_CASES if smoke else module.GPU_CASES
    commit = _commit()
    layout = f" page {ns.page_size}" if ns.what == "attention" else ""
    header = (
        f"sglang-amd bench {ns.what} | {gpu_name()} | {ns.dtype}{layout} | "
        f"{datetime.date.today()} | commit {commit}"
        + (" | SMOKE (not a measurement)" if smoke else "")
    )
    dtype = getattr(torch, ns.dtype)
    if ns.what == "attention":
        result = attention.run(cases, device, dtype, ns.page_size)
    else:
        result = module.run(cases, device, dtype)
    print(report.table(result, header))
    json_path, png_path = report.write(result, Path(ns.out), ns.what, header)
    print(
        f"wrote {json_path}"
        + (f" and {png_path}" if png_path else " (no PNG: pip install matplotlib)")
    )
    return 0


def _eval(ns: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sglang_amd.eval import gsm8k

    if ns.eval_cmd == "compare":
        return compare_cli.main(ns)

    result = gsm8k.evaluate(
        ns.base_url.rstrip("/"), ns.data, ns.shots_data, ns.num_questions, ns.shots,
        ns.parallel, ns.repeats, ns.max_tokens,
        ns.compare_url.rstrip("/") if ns.compare_url else None,
    )  # fmt: skip
    print(gsm8k.table(result))
    if ns.out:
        Path(ns.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {ns.out}")
    errors = sum(r["errors"] for s in result["servers"].values() for r in s["repeats"])
    return 1 if errors else 0


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        # Everything after `serve` belongs to launch_server, untouched.
        return _serve(argv[1:])
    parser = argparse.ArgumentParser(prog="sglang-amd", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("serve", help="run sglang.launch_server with our backends", add_help=False)
    sub.add_parser("env", help="versions, device, and the tier each op will use")
    sub.add_parser("mtp", help="mtp train: an EAGLE3 draft head (sglang-amd mtp train -h)")
    model = sub.add_parser("model", help="prepare a reference model and print its path")
    model.add_argument("name", choices=["smollm2"])
    model.add_argument("--quiet", action="store_true", help="no progress bar")
    bench = sub.add_parser("bench", help="benchmark our kernels against peers (table + PNG)")
    bench.add_argument("what", choices=["attention", "moe", "dsa", "ep", "serve", "mtp"])
    bench.add_argument("--out", default="bench-out", help="folder for the JSON and PNG")
    bench.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    bench.add_argument("--page-size", type=int, default=16, help="attention only")
    bench.add_argument(
        "--smoke", action="store_true", help="tiny shapes (the default without a GPU)"
    )
    bench.add_argument(
        "--size",
        default="full",
        choices=["ci", "full"],
        help="serve only: the suite's size (ci: what make test runs; full: 200 requests at once)",
    )
    ev = sub.add_parser("eval", help="accuracy against a running server")
    ev_sub = ev.add_subparsers(dest="eval_cmd", required=True)
    gsm = ev_sub.add_parser("gsm8k", help="few-shot GSM8K over /v1/completions")
    gsm.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:30000")
    gsm.add_argument("--data", required=True, help="GSM8K-format JSONL of questions")
    gsm.add_argument(
        "--shots-data", default=None, help="JSONL of few-shot examples (default: --data's head)"
    )
    gsm.add_argument("--num-questions", type=int, default=200)
    gsm.add_argument("--shots", type=int, default=5)
    gsm.add_argument("--parallel", type=int, default=16)
    gsm.add_argument("--repeats", type=int, default=1)
    gsm.add_argument("--max-tokens", type=int, default=256)
    gsm.add_argument("--compare-url", default=None, help="a second server, same questions")
    gsm.add_argument("--out", default=None, help="write the JSON record here")
    compare_cli.add_parser(ev_sub)
    doctor_cli.add_parser(sub)
    audit_cli.add_parser(sub)
    if argv[:1] == ["mtp"]:  # its own options (sglang_amd/mtp/cli.py)
        from sglang_amd.mtp import cli as mtp_cli

        return mtp_cli.main(argv[1:])
    if argv[:2] == ["bench", "mtp"]:  # its own options (sglang_amd/bench/sglang_mtp.py)
        from sglang_amd.bench import sglang_mtp as mtp

        return mtp.main(argv[2:], _commit())
    # `bench serve [options] -- SERVE ARGS`: what follows `--` goes to `sglang-amd serve`.
    serve_args: list[str] = []
    if argv[:2] == ["bench", "serve"] and "--" in argv:
        cut = argv.index("--")
        argv, serve_args = argv[:cut], argv[cut + 1 :]
    ns = parser.parse_args(argv)
    ns.serve_args = serve_args
    if ns.cmd == "audit":
        return audit_cli.main(ns, argv, _commit())
    if ns.cmd == "bench":
        return _bench(ns)
    if ns.cmd == "eval":
        return _eval(ns)
    if ns.cmd == "doctor":
        return doctor_cli.main(ns)
    if ns.cmd == "env":
        print(env_report())
        return 0
    if ns.cmd == "model":
        from sglang_amd.reference_model import ReferenceModelError, resolve

        try:
            print(resolve(ns.name, progress=not ns.quiet))
        except ReferenceModelError as exc:
            print(f"sglang-amd model: {exc}", file=sys.stderr)
            return 1
        return 0
    parser.error(f"unknown command {ns.cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
