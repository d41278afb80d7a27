"""`sglang-amd bench mtp`: decode tokens/s with and without MTP, and the accept length.

Where it sits: a user's figure for speculative decoding through our backends.
One SGLang Engine at a time in this process: the target alone, then the target
with `--speculative-algorithm` (NEXTN by default: the model's own MTP layer), each
at batch 1, 4 and 16 by default. Decode rate = the extra time of N new tokens
over 1 new token, per batch (prefill cancels out: the radix cache is off), after
a warm-up; greedy, `ignore_eos`, the bundled prompts (`eval/data`). The speculative run's accept
length is SGLang's own per-request figure summed (`mtp/acceptance.py`).
`--simulate-acc-len X` sets SGLang's `SGLANG_SIMULATE_ACC_LEN` for the
speculative engine: a fixed acceptance, for timing the draft/verify machinery
apart from the draft's quality (its output is then not the target's).
Output: a table, `mtp.json`, `mtp.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sglang_amd.mtp import acceptance
from sglang_amd.plotting import pyplot, save

SIMULATE_ENV = "SGLANG_SIMULATE_ACC_LEN"


@dataclass
class Row:
    batch: int
    base_tok_s: float
    mtp_tok_s: float
    accept_length: float
    accept_rate: float
    identical: int  # requests whose speculative output equals the target's (greedy)

    @property
    def speedup(self) -> float:
        return self.mtp_tok_s / self.base_tok_s if self.base_tok_s else 0.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sglang-amd bench mtp", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a checkpoint with MTP layers (or the target)")
    p.add_argument("--draft-model", help="--speculative-draft-model-path (EAGLE/EAGLE3/STANDALONE)")
    p.add_argument("--algorithm", default="NEXTN", help="--speculative-algorithm (default NEXTN)")
    p.add_argument("--steps", type=int, default=3, help="--speculative-num-steps")
    p.add_argument("--topk", type=int, default=1, help="--speculative-eagle-topk")
    p.add_argument("--draft-tokens", type=int, default=None,
                   help="--speculative-num-draft-tokens (default steps + 1)")  # fmt: skip
    p.add_argument("--batches", default="1,4,16", help="batch sizes, comma-separated")
    p.add_argument("--new-tokens", type=int, default=64, help="decode tokens per request")
    p.add_argument("--simulate-acc-len", type=float, default=None,
                   help=f"fixed acceptance for timing ({SIMULATE_ENV})")  # fmt: skip
    p.add_argument("--device", default=None, help="cuda, cpu (default: cuda when present)")
    p.add_argument("--dtype", default=None, help="--dtype (default: float32 on CPU, auto else)")
    p.add_argument("--page-size", type=int, default=None)
    p.add_argument("--chat", action="store_true",
                   help="send the prompts through the model's chat template (as chat requests)")  # fmt: skip
    p.add_argument("--out", default="bench-out")
    ns = p.parse_args(argv)
    try:
        ns.batches = [int(b) for b in ns.batches.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batches {ns.batches!r}: give batch sizes like 1,4,16")
    if not ns.batches or min(ns.batches) < 1 or ns.new_tokens < 2:
        p.error("--batches needs sizes >= 1 and --new-tokens at least 2")
    ns.draft_tokens = ns.draft_tokens or ns.steps + 1
    return ns


def _device(ns: argparse.Namespace) -> str:
    import torch

    return ns.device or ("cuda" if torch.cuda.is_available() else "cpu")


def engine_env(ns: argparse.Namespace, speculative: bool) -> dict[str, str]:
    """On the CPU platform both engines run our torch tier; the speculative one also
    needs Triton's interpreter for SGLang's speculative helper kernels (as
    `sglang-amd serve` arranges)."""
    env = {SIMULATE_ENV: str(ns.simulate_acc_len)} if speculative and ns.simulate_acc_len else {}
    if _device(ns) == "cpu":
        env["SGLANG_AMD_TIER"] = "torch"
        if speculative:
            env["TRITON_INTERPRET"] = "1"
    return env


def engine_kwargs(ns: argparse.Namespace, speculative: bool) -> dict:
    device = _device(ns)
    # no radix cache: the N-token request must prefill as the 1-token one did, or the
    # difference would credit decode with a prefill it never paid
    kw = dict(model_path=ns.model, device=device, attention_backend="amd", random_seed=0,
              log_level="error", disable_overlap_schedule=True, disable_radix_cache=True,
              dtype=ns.dtype or ("float32" if device == "cpu" else "auto"))  # fmt: skip
    if ns.page_size:
        kw["page_size"] = ns.page_size
    if speculative:
        kw.update(speculative_algorithm=ns.algorithm, speculative_num_steps=ns.steps,
                  speculative_eagle_topk=ns.topk, speculative_num_draft_tokens=ns.draft_tokens)  # fmt: skip
        if ns.draft_model:
            kw["speculative_draft_model_path"] = ns.draft_model
    return kw


def _prompts(model: str, n: int, chat: bool) -> list[list[int]]:
    """The bundled prompts (eval/data), cycled to `n`; raw text, or through the chat
    template (what a draft trained on chat answers, e.g. by `mtp train`, expects)."""
    from transformers import AutoTokenizer

    from sglang_amd.eval import prompts
    from sglang_amd.mtp.eagle3_train import prompt_ids

    tok = AutoTokenizer.from_pretrained(model)
    if chat:
        ids = [list(prompt_ids(tok, t, chat=True)) for t in prompts.bundled_texts()]
    else:
        ids = prompts.load(None, tok).ids
    return [ids[i % len(ids)] for i in range(n)]


def _timed(engine, ids: list[list[int]], new_tokens: int) -> tuple[float, list[dict]]:
    params = {"temperature": 0, "max_new_tokens": new_tokens, "ignore_eos": True}
    t0 = time.perf_counter()
    outs = engine.generate(input_ids=ids, sampling_params=params)
    return time.perf_counter() - t0, outs


def measure(kwargs: dict, batches: list[int], new_tokens: int, env: dict[str, str], chat: bool):
    """Per batch: (decode tokens/s, the full outputs) from one engine."""
    import sglang as sgl

    saved = {k: os.environ.get(k) for k in [*env, "TRITON_INTERPRET"]}
    os.environ.pop("TRITON_INTERPRET", None)  # only where `env` asks for it
    os.environ.update(env)
    try:
        engine = sgl.Engine(**kwargs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        ids_all = _prompts(kwargs["model_path"], max(batches), chat)
        _timed(engine, ids_all[:1], 4)  # warm-up: first-call allocations, graph capture
        results = {}
        for b in batches:
            ids = ids_all[:b]
            t1, _ = _timed(engine, ids, 1)
            tn, outs = _timed(engine, ids, new_tokens)
            results[b] = (b * (new_tokens - 1) / max(tn - t1, 1e-9), outs)
        return results
    finally:
        engine.shutdown()


def run(ns: argparse.Namespace) -> dict:
    if _device(ns) == "cpu":
        from sglang_amd.flags import CPU_PLATFORM

        os.environ.setdefault("SGLANG_PLATFORM", CPU_PLATFORM)  # before SGLang picks one
    base = measure(
        engine_kwargs(ns, False), ns.batches, ns.new_tokens, engine_env(ns, False), ns.chat
    )
    spec = measure(
        engine_kwargs(ns, True), ns.batches, ns.new_tokens, engine_env(ns, True), ns.chat
    )
    rows = []
    for b in ns.batches:
        (rate0, outs0), (rate1, outs1) = base[b], spec[b]
        acc = acceptance.from_meta(o["meta_info"] for o in outs1)
        same = sum(a["output_ids"] == s["output_ids"] for a, s in zip(outs0, outs1, strict=True))
        rows.append(Row(b, rate0, rate1, acc.accept_length, acc.accept_rate, same))
    return {"kwargs": engine_kwargs(ns, True), "new_tokens": ns.new_tokens, "chat": ns.chat,
            "simulate_acc_len": ns.simulate_acc_len, "rows": rows}  # fmt: skip


def table(result: dict, header: str) -> str:
    lines = [header, f"{'batch':>5} {'tok/s':>9} {'tok/s MTP':>10} {'speedup':>8} "
             f"{'accept len':>10} {'accept rate':>11} {'same output':>11}"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"{r.batch:>5} {r.base_tok_s:>9.1f} {r.mtp_tok_s:>10.1f} {r.speedup:>7.2f}x "
                     f"{r.accept_length:>10.2f} {r.accept_rate:>11.2f} {r.identical:>6}/{r.batch}")  # fmt: skip
    if result["simulate_acc_len"]:
        lines.append(f"{SIMULATE_ENV}={result['simulate_acc_len']}: acceptance simulated, "
                     "outputs are not the target's")  # fmt: skip
    return "\n".join(lines)


def write(result: dict, out: Path, header: str) -> tuple[Path, Path | None]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "mtp.json"
    rows = [asdict(r) | {"speedup": r.speedup} for r in result["rows"]]
    json_path.write_text(json.dumps({"header": header, **result, "rows": rows}, indent=2))
    plt = pyplot()
    if plt is None:
        return json_path, None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = range(len(result["rows"]))
    ax.bar([x - 0.2 for x in xs], [r.base_tok_s for r in result["rows"]], 0.4, label="target alone")
    ax.bar([x + 0.2 for x in xs], [r.mtp_tok_s for r in result["rows"]], 0.4, label="with MTP")
    for x, r in zip(xs, result["rows"], strict=True):
        ax.annotate(f"acc {r.accept_length:.2f}", (x + 0.2, r.mtp_tok_s), ha="center", fontsize=7)
    ax.set_xticks(list(xs), [f"batch {r.batch}" for r in result["rows"]])
    ax.set_ylabel("decode tokens/s")
    ax.set_title(header.replace(" | 20", "\n20"), fontsize=8)
    ax.legend(fontsize=8)
    png = save(fig, out / "mtp.png")
    return json_path, png


def main(argv: Sequence[str], commit: str) -> int:
    import datetime

    from sglang_amd.target_info import gpu_name

    ns = parse_args(argv)
    where = gpu_name() if _device(ns) != "cpu" else "CPU platform"
    header = (f"sglang-amd bench mtp | {where} | {Path(ns.model).name} | {ns.algorithm} "
              f"steps {ns.steps} top-k {ns.topk} draft {ns.draft_tokens} | "
              f"{datetime.date.today()} | commit {commit}")  # fmt: skip
    try:
        result = run(ns)
    except acceptance.NoSpeculationError as exc:
        print(f"sglang-amd bench mtp: {exc}", file=sys.stderr)
        return 1
    print(table(result, header))
    json_path, png = write(result, Path(ns.out), header)
    print(f"wrote {json_path}" + (f" and {png}" if png else " (no PNG: pip install matplotlib)"))
    return 0
