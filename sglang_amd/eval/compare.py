"""`sglang-amd eval compare`: two server configurations, token by token, and which flag is at fault.

Where it sits: the driver. Each configuration is a running server's URL or a
`sglang-amd serve` argument string that this module starts (one server at a
time, through `serving.server_process`) and stops. A, the reference, answers
first: its greedy continuation of every prompt (and of each long context),
then its own prefill of prompt + continuation. B then continues the same
prompts greedily and prefills both A's text (teacher forcing: the same tokens
under both) and its own (B's prefill against B's decode). `agreement.py` turns
that into figures and the verdict against the dtype's thresholds; with
`--speculative` B is run again with those flags added and compared with B;
with `--bisect` a failing pair is narrowed to the first of A-to-B's changes
(`configs.changes`, ours first) that makes it fail. Never imports sglang.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from sglang_amd.eval import agreement, logprobs, narrow
from sglang_amd.eval.agreement import Agreement, Thresholds
from sglang_amd.eval.configs import Change, Config, apply, changes
from sglang_amd.eval.prompts import PromptSet, long_context

CONTEXT_TAIL = 64  # prompt positions scored at the end of a long context
_PRECISION = ("float32", "float16", "bfloat16")  # best first


@dataclass
class Target:
    """A configuration to ask: a URL already serving, or serve arguments to start."""

    name: str
    config: Config | None = None
    url: str | None = None

    def describe(self) -> str:
        return self.url if self.url else self.config.text() or "(sglang-amd serve defaults)"


@dataclass
class Workload:
    prompts: PromptSet
    contexts: list[int]
    max_new_tokens: int = 32
    top_k: int = 20

    @functools.cached_property
    def sequences(self) -> tuple[list[str], list[list[int]], list[int]]:
        """Labels, token ids and the first scored position of every sequence sent
        (built once: every server and every comparison reads them)."""
        labels = list(self.prompts.labels)
        ids = [list(p) for p in self.prompts.ids]
        starts = [1] * len(ids)
        for n in self.contexts:
            labels.append(f"context {n}")
            ids.append(long_context(self.prompts, n))
            starts.append(max(1, n - CONTEXT_TAIL))
        return labels, ids, starts


@dataclass
class Collected:
    """What one configuration answered; `forced` scores the reference's continuations."""

    target: Target
    server: dict
    generated: list[logprobs.Generated]
    own: list[logprobs.Scored]
    forced: list[logprobs.Scored]
    seconds: float


@contextmanager
def serving(target: Target, model: str, log_dir: Path) -> Iterator[str]:
    """The target's base URL, a server started (and stopped after) if it has none."""
    if target.url:
        yield target.url.rstrip("/")
        return
    from sglang_amd.serving.server_process import ServerProcess

    env = {**os.environ, **target.config.env}
    slug = re.sub(r"[^A-Za-z0-9]+", "-", target.name).strip("-")
    server = ServerProcess(
        ["--model-path", model, *target.config.argv()], log_dir / f"server-{slug}.log", env
    )
    try:
        yield server.base
    finally:
        if server.terminate(timeout_s=60) is None:
            server.kill()
        server.wait_group_gone(timeout_s=60)


SERVER_FIELDS = ("version", "model_path", "dtype", "attention_backend", "moe_runner_backend",
                 "quantization", "moe_a2a_backend", "speculative_algorithm", "kv_cache_dtype",
                 "page_size", "tp_size", "ep_size", "random_seed", "context_length")  # fmt: skip


def server_info(base: str) -> dict:
    """The server's own account of its flags (SGLang's /get_server_info; {} elsewhere)."""
    try:
        info = requests.get(f"{base}/get_server_info", timeout=60).json()
    except (requests.RequestException, ValueError):
        return {}
    return {k: info.get(k) for k in SERVER_FIELDS if k in info}


def collect(
    target: Target, base: str, work: Workload, reference: list[logprobs.Generated] | None
) -> Collected:
    t0 = time.monotonic()
    labels, ids, starts = work.sequences
    info = server_info(base)
    limit = info.get("context_length")
    for label, seq in zip(labels, ids, strict=True):
        if limit and len(seq) + work.max_new_tokens > limit:
            raise ValueError(
                f"{label}: {len(seq)} prompt + {work.max_new_tokens} new tokens exceed {target.name}'s "
                f"context length {limit}; lower --contexts / --max-new-tokens or raise --context-length"
            )
    logprobs.flush_cache(base)
    gen = logprobs.generate(base, ids, work.max_new_tokens, work.top_k)
    own = logprobs.score(base, [g.prompt + g.output for g in gen], starts, work.top_k)
    if reference is None:
        forced = own
    else:
        texts = [r.prompt + r.output for r in reference]
        redo = [
            i for i, (g, r) in enumerate(zip(gen, reference, strict=True)) if g.output != r.output
        ]
        again = (
            logprobs.score(base, [texts[i] for i in redo], [starts[i] for i in redo], work.top_k)
            if redo
            else []
        )
        forced = list(own)
        for i, s in zip(redo, again, strict=True):
            forced[i] = s
    return Collected(target, info, gen, own, forced, time.monotonic() - t0)


def _continuation(s: logprobs.Scored, prompt_len: int) -> logprobs.Scored:
    n = len(s.ids) - prompt_len
    return logprobs.Scored(s.ids, prompt_len, s.positions[-n:])


def _dtype(info: dict) -> str | None:
    d = info.get("dtype")
    if d in (None, "auto"):
        path = Path(str(info.get("model_path") or "")) / "config.json"
        if path.is_file():
            cfg = json.loads(path.read_text())
            d = cfg.get("torch_dtype") or cfg.get("dtype")
    return {"bf16": "bfloat16", "half": "float16", "float": "float32"}.get(d, d)


def verdict_dtype(*infos: dict, given: str | None = None) -> str:
    """The least precise dtype of the servers compared (the thresholds that apply)."""
    if given:
        return given
    found = [d for d in (_dtype(i) for i in infos) if d in _PRECISION]
    if not found:
        raise ValueError("cannot tell the servers' dtype; pass --dtype float32|bfloat16|float16")
    return max(found, key=_PRECISION.index)


@dataclass
class Comparison:
    reference: str
    other: str
    dtype: str
    rows: list[dict] = field(default_factory=list)
    groups: dict[str, dict] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    accept_length: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def compare(ref: Collected, other: Collected, work: Workload, t: Thresholds) -> Comparison:
    """Every figure of `other` against `ref`, per sequence and per group (prompts, each context)."""
    labels, ids, _ = work.sequences
    out = Comparison(ref.target.name, other.target.name, t.dtype)
    groups: dict[str, dict[str, Agreement]] = {}
    divs: dict[str, list[agreement.Divergence]] = {}
    for i, label in enumerate(labels):
        group = label if label.startswith("context ") else "prompts"
        tf = agreement.teacher_forced(ref.own[i], other.forced[i], t.tie_margin)
        div = agreement.greedy(ref.generated[i], other.generated[i], t.tie_margin)
        pvd = {}
        for side, c in (("a", ref), ("b", other)):
            g = c.generated[i]
            pvd[side] = agreement.prefill_vs_decode(
                g, _continuation(c.own[i], len(g.prompt)), t.tie_margin
            )
        out.rows.append({"label": label, "prompt_tokens": len(ids[i]), "teacher_forced": tf.as_dict(),
                         "greedy_divergence": asdict(div), "prefill_vs_decode_a": pvd["a"].as_dict(),
                         "prefill_vs_decode_b": pvd["b"].as_dict()})  # fmt: skip
        acc = groups.setdefault(group, {"tf": Agreement(), "a": Agreement(), "b": Agreement()})
        acc["tf"], acc["a"], acc["b"] = (
            acc["tf"].merge(tf),
            acc["a"].merge(pvd["a"]),
            acc["b"].merge(pvd["b"]),
        )
        divs.setdefault(group, []).append(div)
    for group, acc in groups.items():
        d = divs[group]
        out.groups[group] = {
            "teacher_forced": acc["tf"].as_dict(),
            "prefill_vs_decode_a": acc["a"].as_dict(),
            "prefill_vs_decode_b": acc["b"].as_dict(),
            "greedy_identical": sum(x.index is None for x in d),
            "greedy_near_tie": sum(x.near_tie for x in d),
            "sequences": len(d),
        }
        out.failures += acc["tf"].failures(t, f"{group}: {ref.target.name} vs {other.target.name}")
        out.failures += agreement.greedy_failures(d, t, f"{group}: greedy")
        out.failures += acc["a"].failures(t, f"{group}: {ref.target.name} prefill vs decode")
        out.failures += acc["b"].failures(t, f"{group}: {other.target.name} prefill vs decode")
    passes = sum(g.verify_passes for g in other.generated)
    if passes:
        out.accept_length = sum(len(g.output) for g in other.generated) / passes
    return out


@dataclass
class Step:
    applied: int  # how many of the changes are applied to A (narrowing: all of them)
    config: str
    passed: bool
    failures: list[str]
    error: str = ""


def _trial(a: Collected, cfg: Config, label: str, applied: int, model: str, work: Workload,
           log_dir: Path, given_dtype: str | None) -> Step:  # fmt: skip
    """Serve `cfg`, compare it with A: one step of a bisection or a narrowing.
    A configuration that does not start or answer fails (its error is kept)."""
    target = Target(label, config=cfg)
    try:
        with serving(target, model, log_dir) as base:
            got = collect(target, base, work, a.generated)
        t = agreement.thresholds_for(verdict_dtype(a.server, got.server, given=given_dtype))
        cmp = compare(a, got, work, t)
        return Step(applied, cfg.text(), cmp.passed, cmp.failures)
    except Exception as exc:  # noqa: BLE001 - a step that cannot start or answer fails
        return Step(applied, cfg.text(), False, [], f"{type(exc).__name__}: {str(exc)[-500:]}")


def bisect(
    a: Collected,
    steps: list[Change],
    model: str,
    work: Workload,
    log_dir: Path,
    given_dtype: str | None,
) -> tuple[Change | None, list[Step]]:
    """The first change (A plus changes[:k] fails, plus changes[:k-1] passes), by binary search.

    Assumes that once a prefix fails, longer ones do too."""
    tried: list[Step] = []
    lo, hi = 0, len(steps)  # A + steps[:lo] passes (A itself); A + steps[:hi] fails (B)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cfg = apply(a.target.config, steps[:mid])
        label = f"A + {mid} change{'s' if mid > 1 else ''}"
        tried.append(_trial(a, cfg, label, mid, model, work, log_dir, given_dtype))
        if tried[-1].passed:
            lo = mid
        else:
            hi = mid
    return (steps[hi - 1] if steps else None), tried


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for dist in ("sglang", "sglang-amd", "torch", "triton", "transformers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _comparison_dict(c: Comparison) -> dict:
    return {**asdict(c), "passed": c.passed}


def run(
    model: str,
    a: Target,
    b: Target,
    work: Workload,
    out_dir: Path,
    speculative: Target | None = None,
    bisect_changes: bool = False,
    dtype: str | None = None,
) -> dict:
    """The whole evaluation as a JSON-ready dict: protocol, comparisons, bisection."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, ids, starts = work.sequences
    result: dict = {
        "protocol": {
            "model": model,
            "prompts": {
                "source": work.prompts.source,
                "sha256": work.prompts.sha256,
                "count": len(work.prompts.ids),
            },
            "contexts": work.contexts,
            "context_tail_scored": CONTEXT_TAIL,
            "max_new_tokens": work.max_new_tokens,
            "top_k": work.top_k,
            "sampling": "greedy (temperature 0), ignore_eos; no seed is drawn",
            "kl": "over the tokens both top-k lists hold plus one bucket for the rest (a lower bound)",
            "versions": _versions(),
        },  # fmt: skip
        "targets": {},
        "comparisons": [],
    }
    collected: dict[str, Collected] = {}
    plan = [("a", a, None), ("b", b, "a")] + (
        [("speculative", speculative, "b")] if speculative else []
    )
    for key, target, ref in plan:
        with serving(target, model, out_dir) as base:
            collected[key] = collect(target, base, work, collected[ref].generated if ref else None)
        result["targets"][key] = {"name": target.name, "config": target.describe(),
                                  "server": collected[key].server,
                                  "seconds": round(collected[key].seconds, 1)}  # fmt: skip
    result["sequences"] = [{"label": lab, "tokens": len(s), "first_scored": st}
                           for lab, s, st in zip(labels, ids, starts, strict=True)]  # fmt: skip
    main_dtype = verdict_dtype(collected["a"].server, collected["b"].server, given=dtype)
    t = agreement.thresholds_for(main_dtype)
    result["thresholds"] = asdict(t)
    main = compare(collected["a"], collected["b"], work, t)
    result["comparisons"].append(_comparison_dict(main))
    if speculative:
        ts = agreement.thresholds_for(
            verdict_dtype(collected["b"].server, collected["speculative"].server, given=dtype)
        )
        result["comparisons"].append(
            _comparison_dict(compare(collected["b"], collected["speculative"], work, ts))
        )
    result["passed"] = all(c["passed"] for c in result["comparisons"])
    if bisect_changes and not main.passed:
        if a.config is None or b.config is None:
            result["bisect"] = {
                "error": "--bisect starts servers: give --a and --b as serve arguments, not URLs"
            }
        else:
            steps = changes(a.config, b.config)
            culprit, tried = bisect(collected["a"], steps, model, work, out_dir, dtype)
            result["bisect"] = {
                "changes": [s.describe() for s in steps],
                "tried": [asdict(s) for s in tried],
                "culprit": culprit.describe() if culprit else None,
            }
            if culprit is not None:
                failing = apply(a.config, steps[: steps.index(culprit) + 1])

                def trial(cfg: Config, label: str) -> Step:
                    return _trial(
                        collected["a"], cfg, label, len(steps), model, work, out_dir, dtype
                    )

                narrowed = narrow.narrow(culprit, failing, trial)
                if narrowed is not None:
                    result["bisect"]["narrowed"] = narrowed
    (out_dir / "compare.json").write_text(json.dumps(result, indent=1))
    return result
