"""Benchmark output: a text table, a JSON record and a PNG bar chart.

For every case: each implementation's time, achieved rate, the fraction of the
device ceiling, and the ratio of ours to the best peer measured in the same run
(> 1 means ours is faster). Each row says its role: the one "ours" row of a case
is the implementation the ratio is for, "peer" rows are what it is compared
with, and "variant" rows (our other configurations, e.g. MXFP4 A4W4 beside the
W4A16 we ship) are shown but neither. When ours has no time the ratio column
says so; no other row stands in for it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from sglang_amd.plotting import pyplot, save

Role = Literal["ours", "variant", "peer"]


@dataclass
class Row:
    case: str
    impl: str
    seconds: float | None
    rate: float | None  # bytes/s (decode, moe) or FLOP/s (extend)
    note: str = ""
    role: Role = "peer"


def _unit(case: str) -> tuple[str, float, str]:
    """(unit, divisor, ceiling key): memory-bound cases in GB/s, the rest in TFLOP/s."""
    if case.startswith(("decode", "moe")):
        return "GB/s", 1e9, "copy_bytes_per_s"
    return "TFLOP/s", 1e12, "bf16_flop_per_s"


def compare(rows: list[Row]) -> tuple[Row | None, Row | None]:
    """(ours, fastest timed peer) among one case's rows; ours may lack a time."""
    ours = next((r for r in rows if r.role == "ours"), None)
    peers = [r for r in rows if r.role == "peer" and r.seconds]
    return ours, min(peers, key=lambda r: r.seconds) if peers else None


def ratio_text(ours: Row | None, best: Row | None) -> str:
    """The ours/best column of ours' row: best peer seconds / ours seconds."""
    if ours is None:
        return ""
    if not ours.seconds:
        return "no time"
    if best is None:
        return "no peer"
    return f"{best.seconds / ours.seconds:.2f}x"


def table(result: dict, header: str) -> str:
    ceilings = result["ceilings"]
    lines = [
        header,
        f"measured copy bandwidth {ceilings['copy_bytes_per_s'] / 1e9:.0f} GB/s, "
        f"bf16 matmul peak {ceilings['bf16_flop_per_s'] / 1e12:.1f} TFLOP/s",
        *([f"timing: {result['timing']}"] if result.get("timing") else []),
        f"{'case':<34} {'impl':<20} {'time us':>10} {'rate':>14} {'of peak':>8} {'ours/best':>10}  note",
    ]
    by_case: dict[str, list[Row]] = {}
    for r in result["rows"]:
        by_case.setdefault(r.case, []).append(r)
    for case, rows in by_case.items():
        unit, scale, ceiling = _unit(case)
        ours, best = compare(rows)
        for r in rows:
            ratio = ratio_text(ours, best) if r is ours else ""
            if r.seconds is None:
                lines.append(
                    f"{case:<34} {r.impl:<20} {'-':>10} {'-':>14} {'-':>8} {ratio:>10}  {r.note}"
                )
                continue
            frac = r.rate / ceilings[ceiling]
            lines.append(
                f"{case:<34} {r.impl:<20} {r.seconds * 1e6:>10.1f} "
                f"{r.rate / scale:>9.1f} {unit:<4} {frac:>8.0%} {ratio:>10}  {r.note}"
            )
    return "\n".join(lines)


def write(result: dict, out_dir: Path, name: str, header: str) -> tuple[Path, Path | None]:
    """JSON always; PNG when matplotlib is installed (else the path is None)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(
        json.dumps(
            {
                "header": header,
                "ceilings": result["ceilings"],
                "timing": result.get("timing", ""),
                "rows": [asdict(r) for r in result["rows"]],
            },
            indent=2,
        )
    )
    plt = pyplot()
    if plt is None:
        return json_path, None
    cases = list(dict.fromkeys(r.case for r in result["rows"]))
    impls = list(dict.fromkeys(r.impl for r in result["rows"]))
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(cases)), 5))
    width = 0.8 / max(len(impls), 1)
    ceilings = result["ceilings"]
    for i, impl in enumerate(impls):
        fracs = []
        for case in cases:
            r = next((x for x in result["rows"] if x.case == case and x.impl == impl), None)
            fracs.append(r.rate / ceilings[_unit(case)[2]] if r and r.rate else 0.0)
        ax.bar([c + i * width for c in range(len(cases))], fracs, width, label=impl)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cases))])
    ax.set_xticklabels(cases, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("fraction of measured ceiling")
    ax.set_title(header.replace(" | commit", "\ncommit").replace(" | 20", "\n20"), fontsize=9)
    ax.text(
        0.99,
        0.98,
        "decode: KV GB/s / copy BW\nextend: TFLOP/s / bf16 matmul\nmoe: weight GB/s / copy BW",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
    )
    ax.legend(fontsize=8)
    png_path = save(fig, out_dir / f"{name}.png")
    return json_path, png_path
