"""`sglang-amd doctor MODEL_DIR [MODEL_DIR ...] [--tp N --ep N --flags "..."]
[--gpu NAME | --gpu-memory GIB] [--json FILE]`.

Where it sits: `cli.py` hands the subcommand here; `sglang_probe.py` does the work.
Prints one readable report per model (with the GPU budget when `--gpu` or
`--gpu-memory` names the memory; `gpu_budget.py`), writes the reports as JSON when asked,
and exits 1 when any model has a reason that blocks serving (each names the
flag or value to change), 0 otherwise. Never imports sglang itself.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from sglang_amd.doctor.gpu_budget import GPUS, Gpu


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what serving a model would use, from its config alone")
    p.add_argument("models", nargs="+", metavar="MODEL_DIR", help="a directory with config.json")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size to plan for")
    p.add_argument("--ep", type=int, default=1, help="expert-parallel size to plan for")
    p.add_argument("--flags", default="", help='serve flags, e.g. "--moe-runner-backend amd"')
    p.add_argument(
        "--no-weights", action="store_true", help="skip the weight estimate (and the GPU budget)"
    )
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument(
        "--gpu", choices=sorted(GPUS), help="size the KV pool on this GPU (its HBM capacity)"
    )
    gpu.add_argument(
        "--gpu-memory",
        type=float,
        metavar="GIB",
        help="size the KV pool on a ROCm GPU of this much memory",
    )
    p.add_argument("--json", default=None, help="write the reports here")


def _kv(report: dict) -> str:
    kv = report["kv_cache"]
    parts = ", ".join(f"{k} {v:,} B" for k, v in kv["bytes_per_token_per_rank"].items())
    return (f"{parts} per token per rank ({kv['dtype']}, page {kv['page_size']}); one request at "
            f"the {kv['context_length']:,}-token context: {kv['one_request_at_context_gib_per_rank']} GiB per rank")  # fmt: skip


def _state(report: dict) -> str:
    st = report["linear_state"]
    if "error" in st:
        return st["error"]
    conv = " + ".join("x".join(map(str, c)) for c in st["conv_shapes_per_layer"])
    ssm = "x".join(map(str, st["ssm_shape_per_layer"]))
    return (f"{st['bytes_per_request_per_rank']:,} B per request per rank ({st['layers']} layers: "
            f"conv {conv} {st['conv_dtype']} + ssm {ssm} {st['ssm_dtype']})")  # fmt: skip


def _budget(report: dict) -> str:
    b = report["gpu_budget"]
    frac = b["mem_fraction_static"]
    src = "" if b["mem_fraction_static_from"].startswith("--") else " (SGLang's default)"
    line = (f"{b['gpu']} {b['gpu_memory_gib']:g} GiB x {frac}{src} = {b['static_gib_per_rank']} GiB per rank: "
            f"weights {b['weights_gib_per_rank']} GiB")  # fmt: skip
    if "linear_state" in b:
        s = b["linear_state"]
        line += (f", linear state {s['slots']:,} slots ({s['slots_per_request']} per request: "
                 f"{s['requests']:,} requests) {s['gib_per_rank']} GiB")  # fmt: skip
    if "kv_tokens_per_rank" in b:
        line += f", KV {b['kv_pool_gib_per_rank']} GiB = {b['kv_tokens_per_rank']:,} tokens"
    if "max_running_requests" in b:
        line += (f"; full-context requests {b['requests_at_full_context']:,}, "
                 f"max running requests {b['max_running_requests']:,}")  # fmt: skip
    return line


def text(report: dict) -> str:
    lines = [f"{report['model']}: {', '.join(report['architectures'])}"]
    add = lines.append
    add(f"  attention      {report['attention']['path']}")
    if report.get("moe"):
        m = report["moe"]
        add(f"  moe            {m['experts']} experts, top-{m['top_k']}, intermediate {m['intermediate']}, "
            f"{m['shared_experts']} shared, {m['dense_layers']} dense layers first")  # fmt: skip
    if report["blocking"]:
        add("  BLOCKED")
        lines += [f"    - {b}" for b in report["blocking"]]
    if "sglang_class" in report:  # resolved: a budget may block, the rest still holds
        add(
            f"  sglang class   {report['sglang_class']}"
            + ("" if report["native"] else "  (Transformers fallback)")
        )
        if report["mtp_layers"]:
            add(
                f"  mtp            {report['mtp_layers']} layer(s), draft {report.get('draft_class')}"
            )
        add(f"  backends       {report['backends']}")
        add(f"  our tiers      {report['tiers'] or 'none of ours selected'}")
        if report.get("quantization"):
            q = {k: v for k, v in report["quantization"].items() if k != "exclude"}
            add(f"  quantization   {q}")
        add(f"  kv cache       {_kv(report)}")
        if "linear_state" in report:
            add(f"  linear state   {_state(report)}")
        if "weights" in report:
            add(f"  weights        {report['weights']}")
        add(f"  cuda graphs    {report['cuda_graphs']}")
        if "gpu_budget" in report:
            add(f"  gpu budget     {_budget(report)}")
    for n in report["notes"]:
        add(f"  note: {n}")
    add(f"  launch         {report['launch']}")
    return "\n".join(lines)


def main(ns: argparse.Namespace) -> int:
    from sglang_amd.doctor.sglang_probe import probe

    flags = shlex.split(ns.flags)
    gpu = GPUS[ns.gpu] if ns.gpu else None
    if ns.gpu_memory:
        gpu = Gpu("ROCm GPU", ns.gpu_memory, "rocm")
    reports = []
    for model in ns.models:
        if not (Path(model) / "config.json").is_file():
            print(f"sglang-amd doctor: {model} has no config.json", file=sys.stderr)
            return 2
        reports.append(probe(model, flags, ns.tp, ns.ep, weights=not ns.no_weights, gpu=gpu))
        print(text(reports[-1]), flush=True)
    if ns.json:
        Path(ns.json).write_text(json.dumps(reports, indent=1, default=str))
        print(f"wrote {ns.json}")
    return 1 if any(r["blocking"] for r in reports) else 0
