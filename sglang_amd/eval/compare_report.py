"""The readable table of an `eval compare` result (the JSON holds everything else).

Where it sits: after `compare.run`, for the terminal and for `compare.md`.
Never imports sglang.
"""

from __future__ import annotations


def _head(ref: str, other: str) -> tuple[str, ...]:
    return ("group", "positions", "max |dlp|", "mean |dlp|", "mean KL", "top-1", "greedy same",
            f"{ref} pre/dec max", f"{other} pre/dec max")  # fmt: skip


def _row(group: str, g: dict) -> tuple[str, ...]:
    tf, a, b = g["teacher_forced"], g["prefill_vs_decode_a"], g["prefill_vs_decode_b"]
    same = f"{g['greedy_identical']}/{g['sequences']}"
    if g["greedy_near_tie"]:
        same += f" (+{g['greedy_near_tie']} tie)"
    return (group, str(tf["positions"]), f"{tf['max_abs_dlogprob']:.2e}", f"{tf['mean_abs_dlogprob']:.2e}",
            f"{tf['mean_kl']:.2e}", f"{tf['top1_agreement']:.4f}", same,
            f"{a['max_abs_dlogprob']:.2e}", f"{b['max_abs_dlogprob']:.2e}")  # fmt: skip


def _grid(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]


def table(result: dict) -> str:
    p = result["protocol"]
    lines = [
        f"eval compare: {p['model']}",
        f"prompts {p['prompts']['source']} ({p['prompts']['count']}), contexts {p['contexts'] or 'none'}, "
        f"{p['max_new_tokens']} greedy tokens, top-{p['top_k']}",
    ]
    for key, t in result["targets"].items():
        lines.append(f"  {key}: {t['config']}  [{t['seconds']} s]")
    for c in result["comparisons"]:
        lines += ["", f"{c['reference']} -> {c['other']} ({c['dtype']} thresholds)"]
        head = _head(c["reference"], c["other"])
        lines += _grid([head] + [_row(name, g) for name, g in c["groups"].items()])
        worst = sorted(c["rows"], key=lambda r: -r["teacher_forced"]["max_abs_dlogprob"])[:3]
        lines.append("worst prompts: " + "; ".join(
            f"{r['label']!r} {r['teacher_forced']['max_abs_dlogprob']:.2e}" for r in worst))  # fmt: skip
        if c["accept_length"]:
            lines.append(f"accept length {c['accept_length']:.2f}")
        lines.append("PASS" if c["passed"] else "FAIL")
        lines += [f"  - {f}" for f in c["failures"]]
    bis = result.get("bisect")
    if bis:
        lines += ["", "bisect"]
        if "error" in bis:
            lines.append(f"  {bis['error']}")
        else:
            lines += [f"  change {i + 1}: {c}" for i, c in enumerate(bis["changes"])]
            for s in bis["tried"]:
                why = s["error"] or ("; ".join(s["failures"][:2]) if s["failures"] else "")
                lines.append(
                    f"  A + {s['applied']}: {'pass' if s['passed'] else 'FAIL'} {why}".rstrip()
                )
            lines.append(f"  at fault: {bis['culprit']}")
            nar = bis.get("narrowed")
            if nar:
                lines.append(f"  narrowing {nar['family']}:")
                for s in nar["tried"]:
                    why = s["error"] or ("; ".join(s["failures"][:1]) if s["failures"] else "")
                    lines.append(
                        f"    {s['label']}: {'pass' if s['passed'] else 'FAIL'} {why}".rstrip()
                    )
                lines.append(f"  narrowed to: {nar['at_fault']}")
    return "\n".join(lines)
