"""Benchmark output: a text table, a JSON record and a PNG bar chart.

For every case: each implementation's time, achieved rate, the fraction of the
device ceiling, and the ratio of ours to the best peer measured in the same run
(> 1 means ours is faster).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Row:
    case: str
    impl: str
    seconds: float | None
    rate: float | None  # bytes/s (decode, moe) or FLOP/s (extend)
    note: str = ""


def _unit(case: str) -> tuple[str, float, str]:
    """(unit, divisor, ceiling key): memory-bound cases in GB/s, the rest in TFLOP/s."""
    if case.startswith(("decode", "moe")):
        return "GB/s", 1e9, "copy_bytes_per_s"
    return "TFLOP/s", 1e12, "bf16_flop_per_s"


def _ours(rows: list[Row]) -> Row | None:
    return next((r for r in rows if r.impl.startswith("amd") and r.seconds), None)


def table(result: dict, header: str) -> str:
    ceilings = result["ceilings"]
    lines = [
        header,
        f"measured copy bandwidth {ceilings['copy_bytes_per_s'] / 1e9:.0f} GB/s, "
        f"bf16 matmul peak {ceilings['bf16_flop_per_s'] / 1e12:.1f} TFLOP/s",
        f"{'case':<34} {'impl':<20} {'time us':>10} {'rate':>14} {'of peak':>8} {'ours/best':>10}  note",
    ]
    by_case: dict[str, list[Row]] = {}
    for r in result["rows"]:
        by_case.setdefault(r.case, []).append(r)
    for case, rows in by_case.items():
        unit, scale, ceiling = _unit(case)
        ours = _ours(rows)
        peers = [r for r in rows if r is not ours and r.seconds]
        best = min(peers, key=lambda r: r.seconds) if peers else None
        for r in rows:
            if r.seconds is None:
                lines.append(
                    f"{case:<34} {r.impl:<20} {'-':>10} {'-':>14} {'-':>8} {'':>10}  {r.note}"
                )
                continue
            frac = r.rate / ceilings[ceiling]
            ratio = f"{best.seconds / r.seconds:.2f}x" if r is ours and best else ""
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
                "rows": [asdict(r) for r in result["rows"]],
            },
            indent=2,
        )
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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
    fig.tight_layout()
    png_path = out_dir / f"{name}.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
