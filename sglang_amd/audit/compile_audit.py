"""`sglang-amd audit`: every Triton kernel of ours, compiled for MI300X, MI355X, H100
and B200 in every launch configuration our heuristics pick over the model matrix.

Where it sits: walks `audit.launches.cases()` inside `compiling_for(arch)` for
each target, dedupes the compiled launches (kernel, constexprs, options), reads
each with `audit.isa.report`, and checks the gates: every launch compiles, none
spills, AMD split-KV decode keeps >= 2 waves per SIMD. Table on stdout, JSON
and a PNG. Must run without TRITON_INTERPRET (its own process). Never imports sglang.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sglang_amd.audit import peer_compare
from sglang_amd.audit.compile_for_target import TRITON_TARGETS, Compiled, compiling_for
from sglang_amd.audit.isa import KernelReport, report
from sglang_amd.audit.launches import Case, cases, flags_for
from sglang_amd.plotting import pyplot, save
from sglang_amd.target_info import SHARED_MEMORY_BYTES, Target

TARGETS: tuple[str, ...] = tuple(TRITON_TARGETS)
# Constexprs that say nothing about the launch's cost; left out of the config text.
_QUIET = {"PRECISION", "UPCAST"}
MIN_AMD_DECODE_OCCUPANCY = 2


@dataclass
class AuditRow:
    report: KernelReport
    used_by: list[str] = field(default_factory=list)
    owner: str = "ours"  # "ours" is gated; a peer ("sglang") is only reported


@dataclass(frozen=True)
class Source:
    """Whose kernels: the matrix of launches for one arch, and what must be patched
    while they compile so the launcher decides as on that arch's GPU."""

    owner: str
    cases: Callable[[str, bool], Sequence[Case]]
    context: Callable[[str, Target], contextlib.AbstractContextManager[Any]]


OURS = Source("ours", lambda arch, quick: cases(quick), lambda arch, target: flags_for(target))


def _config(c: Compiled) -> str:
    # A jit function passed as a constexpr (the grouped GEMM's GLU) by its name.
    parts = [
        f"{k}={getattr(v, '__name__', v) if callable(v) else v}"
        for k, v in c.constexprs.items()
        if k not in _QUIET
    ]
    parts += [f"{k}={v}" for k, v in c.options.items()]
    return " ".join(parts)


def run(
    targets: Sequence[str] = TARGETS, quick: bool = False, sources: Sequence[Source] = (OURS,)
) -> list[AuditRow]:
    """Compile each source's matrix for `targets`; one row per distinct compiled launch."""
    rows: dict[tuple, AuditRow] = {}
    for source in sources:
        for arch in targets:
            for case in source.cases(arch, quick):
                sink: list[Compiled] = []
                with compiling_for(arch, sink) as target, source.context(arch, target):
                    try:
                        case.run()
                    except Exception as exc:  # a wrapper refusing the shape is a finding too
                        sink.append(
                            Compiled(case.op, arch, {}, {}, error=f"{type(exc).__name__}: {exc}")
                        )
                for c in sink:
                    key = (source.owner, c.kernel, arch, _config(c))
                    if key not in rows:
                        rows[key] = AuditRow(report(c, _config(c)), owner=source.owner)
                    label = f"{case.model}: {case.op}, {case.size}"
                    # Enough for every (model, op, size) of one kernel: the peer pairing reads them.
                    if len(rows[key].used_by) < 256 and label not in rows[key].used_by:
                        rows[key].used_by.append(label)
    return list(rows.values())


def gate_failures(rows: Sequence[AuditRow]) -> list[str]:
    """What breaks the audit's gates; empty when every gate holds."""
    bad = []
    for row in rows:
        if row.owner != "ours":
            continue
        r = row.report
        where = f"{r.kernel} on {r.arch} [{r.config}] (e.g. {row.used_by[0]})"
        if not r.ok:
            bad.append(f"does not compile: {where}: {r.error}")
            continue
        if r.spill_bytes:
            bad.append(f"spills {r.spill_bytes} bytes: {where}")
        limit = SHARED_MEMORY_BYTES.get(r.arch)
        if limit and r.shared_bytes > limit:
            bad.append(f"shared memory {r.shared_bytes} > {limit} bytes (fails to load): {where}")
        amd = r.arch.startswith("gfx")
        if amd and r.kernel == "_decode_split_kernel":
            if (r.occupancy or 0) < MIN_AMD_DECODE_OCCUPANCY:
                bad.append(f"decode occupancy {r.occupancy} < {MIN_AMD_DECODE_OCCUPANCY}: {where}")
    return bad


def table(rows: Sequence[AuditRow]) -> str:
    head = (
        f"{'kernel':<36} {'arch':<7} {'ok':<3} {'regs':>5} {'agpr':>5} {'spill':>6} "
        f"{'smem':>7} {'occ':>4} {'load':>5}  {'mma':<44} config"
    )
    lines = [head, "-" * len(head)]
    for row in sorted(
        rows, key=lambda r: (r.owner != "ours", r.report.kernel, r.report.config, r.report.arch)
    ):
        r = row.report

        def n(v: int | None) -> str:
            return "-" if v is None else str(v)

        lines.append(
            f"{_name(row):<36} {r.arch:<7} {'yes' if r.ok else 'NO':<3} {n(r.registers):>5} "
            f"{n(r.agprs):>5} {n(r.spill_bytes):>6} {r.shared_bytes:>7} {n(r.occupancy):>4} "
            f"{n(r.load_bits):>5}  {r.mma[:44]:<44} {r.config}"
            + (f"\n    error: {r.error}" if r.error else "")
        )
    return "\n".join(lines)


def _name(row: AuditRow) -> str:
    return row.report.kernel if row.owner == "ours" else f"{row.owner}:{row.report.kernel}"


def write(
    rows: Sequence[AuditRow], out: Path, header: str, notes: Sequence[str] = ()
) -> tuple[Path, Path | None]:
    """JSON (every row, its users, the gates, the peer pairs), the markdown summary
    (audit.md) and, with matplotlib, a PNG of registers and occupancy per kernel and target."""
    out.mkdir(parents=True, exist_ok=True)
    pairs = peer_compare.pairs(rows)
    data = {
        "header": header,
        "gates": gate_failures(rows),
        "notes": list(notes),
        "rows": [{**r.report.as_dict(), "owner": r.owner, "used_by": r.used_by} for r in rows],
        "peer_pairs": [p.as_dict() for p in pairs],
    }
    json_path = out / "audit.json"
    json_path.write_text(json.dumps(data, indent=1))
    md = f"{header}\n\n{markdown(rows)}\n"
    if pairs or notes:
        md += f"\n{peer_compare.markdown(pairs, notes)}\n"
    (out / "audit.md").write_text(md)
    plt = pyplot()
    if plt is None:
        return json_path, None
    ok = [r.report for r in rows if r.report.ok and r.owner == "ours"]
    labels = [f"{r.kernel.strip('_')} {r.arch}\n{r.config[:48]}" for r in ok]
    fig, axes = plt.subplots(1, 2, figsize=(16, max(4, 0.32 * len(ok))), sharey=True)
    y = range(len(ok))
    axes[0].barh(y, [r.registers or 0 for r in ok], color="tab:blue")
    axes[0].set_xlabel("registers (AMD VGPRs / NVIDIA regs per thread)")
    axes[1].barh(y, [r.occupancy or 0 for r in ok], color="tab:green")
    axes[1].set_xlabel("occupancy (AMD waves/SIMD, NVIDIA warps/SM)")
    axes[0].set_yticks(list(y), labels, fontsize=6)
    axes[0].invert_yaxis()
    fig.suptitle(header, fontsize=9)
    png_path = save(fig, out / "audit.png")
    return json_path, png_path


def markdown(rows: Sequence[AuditRow]) -> str:
    """One line per kernel and target (BENCHMARKS.md's static section): how many
    distinct launches, whether all compile, the worst registers / spills / LDS,
    the lowest occupancy, the matrix instructions and the widest global load."""
    groups: dict[tuple[str, str], list[KernelReport]] = {}
    for row in rows:
        groups.setdefault((_name(row), row.report.arch), []).append(row.report)
    lines = [
        "| kernel | target | launches | compile | max regs | max spill B | max LDS/smem B "
        "| min occupancy | matrix instructions | widest load (bits) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {arch: i for i, arch in enumerate(TARGETS)}
    for (kernel, arch), reps in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 9))
    ):
        ok = [r for r in reps if r.ok]

        def worst(values: list[int | None], pick=max) -> str:
            values = [v for v in values if v is not None]
            return str(pick(values)) if values else "-"

        mma = sorted({r.mma.split(" (")[0] for r in ok})
        lines.append(
            f"| `{kernel}` | {arch} | {len(reps)} | {len(ok)}/{len(reps)} "
            f"| {worst([r.registers for r in ok])} | {worst([r.spill_bytes for r in ok])} "
            f"| {worst([r.shared_bytes for r in ok])} | {worst([r.occupancy for r in ok], min)} "
            f"| {', '.join(mma) or '-'} | {worst([r.load_bits for r in ok])} |"
        )
    return "\n".join(lines)
