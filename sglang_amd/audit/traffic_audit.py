"""`sglang-amd audit --traffic`: bytes each op moves against its ideal, and its launches.

Where it sits: runs every case of `audit/traffic_cases.py` for each target
(gfx942, sm_90: our launch-flag heuristics answer as for that GPU) inside
`audit.traffic.counting()`, checks the gates the cases carry, and writes the
table, `traffic.json` and `traffic.png`. Needs TRITON_INTERPRET=1 set before any
kernel module is imported: `cli.py` runs it in a child process with it set. Never
imports sglang.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from sglang_amd.audit.traffic import Traffic, counting
from sglang_amd.audit.traffic_cases import Prepared, TrafficCase, cases
from sglang_amd.plotting import pyplot, save
from sglang_amd.target_info import Target, target_for_arch

TARGETS: tuple[str, ...] = ("gfx942", "sm_90")
# Entry modules whose imports bring in every module that asks for a target.
_ENTRY_MODULES = (
    "sglang_amd.attention.decode",
    "sglang_amd.attention.extend",
    "sglang_amd.ep.permute",
    "sglang_amd.moe.fused",
    "sglang_amd.quant.mxfp4_linear",
)


@dataclass
class Counted:
    """What the counter saw for one op's launches, against the op's ideal."""

    bytes: int = 0
    ideal: int = 0
    unique_bytes: int = 0
    weight_bytes: int = 0
    ideal_weights: int = 0
    launches: int = 0
    seconds: float = 0.0
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ratio(self) -> float:
        return self.bytes / self.ideal if self.ideal else 0.0

    @property
    def weights_ratio(self) -> float:
        return self.weight_bytes / self.ideal_weights if self.ideal_weights else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "weights_ratio": self.weights_ratio}


@dataclass
class PeerRow(Counted):
    """A peer's kernels (SGLang's, aiter's) on the same case; `owner` names whose,
    `what` names them, or says why there are none."""

    what: str = ""
    owner: str = ""


@dataclass
class TrafficRow(Counted):
    model: str = ""
    op: str = ""
    size: str = ""
    scaling: str = ""
    target: str = ""
    gates: list[dict[str, Any]] = field(default_factory=list)
    # Every peer beside this case, one per owner, in the order the lookups were given.
    peers: list[PeerRow] = field(default_factory=list)

    @property
    def peer(self) -> PeerRow | None:
        """The first peer (SGLang's where it runs): what `traffic.json`'s "peer" and
        "ours_over_peer" have always carried."""
        return self.peers[0] if self.peers else None

    def metric(self, name: str) -> float:
        return {"ratio": self.ratio, "weights_ratio": self.weights_ratio}.get(
            name, float(self.launches)
        )

    def over_peer(self, p: PeerRow | None = None) -> tuple[float, float] | None:
        """(our bytes / the peer's, our launches / the peer's), where both ran; the
        first peer unless `p` is given."""
        p = self.peer if p is None else p
        if self.error or p is None or p.error or not p.bytes:
            return None
        return self.bytes / p.bytes, self.launches / max(1, p.launches)

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out.pop("peers")

        def ours_over(p: PeerRow | None) -> dict[str, float] | None:
            ratios = self.over_peer(p) if p else None
            return (
                {"bytes": round(ratios[0], 3), "launches": round(ratios[1], 3)} if ratios else None
            )

        # "peer" / "ours_over_peer": the first peer, as before there were several.
        out["peer"] = self.peer.as_dict() if self.peer else None
        out["ours_over_peer"] = ours_over(self.peer)
        out["peers"] = [{**p.as_dict(), "ours_over": ours_over(p)} for p in self.peers]
        return out


@contextlib.contextmanager
def flags_for(target: Target) -> Iterator[None]:
    """Every loaded module of ours that asks `current_target` gets `target` (found by
    name, so a module added or rewritten later is covered without a list here)."""
    import importlib

    from sglang_amd import target_info

    for name in _ENTRY_MODULES:
        importlib.import_module(name)
    original = target_info.current_target
    with contextlib.ExitStack() as stack:
        for name, module in list(sys.modules.items()):
            if name.startswith("sglang_amd.") and module is not None:
                # target_info itself too: callers of `target_info.current_target(...)`.
                if getattr(module, "current_target", None) is original:
                    stack.enter_context(
                        mock.patch.object(module, "current_target", lambda d=None: target)
                    )
        yield


# For a case and a target: (what the peer is, its build or None, the context its
# launchers need). `cli.py` passes `sglang_peer_traffic`'s and
# `aiter_peer_traffic`'s, keyed by owner; this module never imports sglang.
PeerLookup = Callable[[TrafficCase, str], tuple[str, Any, Any]]
# One lookup (SGLang's, as before) or several keyed by owner ("sglang", "aiter").
Peers = PeerLookup | Mapping[str, PeerLookup]


def _by_owner(peer: Peers | None) -> dict[str, PeerLookup]:
    if peer is None:
        return {}
    return dict(peer) if isinstance(peer, Mapping) else {"sglang": peer}


def _count(build: Any, target: Target, unique: bool) -> tuple[Traffic, Prepared]:
    prepared = build(target)
    with counting(prepared.named, unique=unique) as traffic:
        prepared.run()
    return traffic, prepared


def measure(
    case: TrafficCase, arch: str, unique: bool = True, peer: Peers | None = None
) -> TrafficRow:
    """One case on one target: counted, compared with its ideal, gates checked;
    with `peer` (one lookup, or several by owner), each peer's kernels counted the
    same way beside it."""
    row = TrafficRow(
        model=case.model, op=case.op, size=case.size, scaling=case.scaling, target=arch
    )
    target = target_for_arch(arch)
    start = time.perf_counter()
    try:
        with flags_for(target):
            traffic, prepared = _count(case.build, target, unique)
    except Exception as exc:  # a kernel or wrapper refusing the shape is a finding too
        row.error = f"{type(exc).__name__}: {exc}"[:400]
        row.gates = [
            {"gate": g.name, "limit": g.limit, "value": None, "ok": False} for g in case.gates
        ]
        return row
    row.seconds = round(time.perf_counter() - start, 1)
    _fill(row, traffic, prepared)
    for gate in case.gates:
        value = row.metric(gate.metric)
        row.gates.append(
            {
                "gate": gate.name,
                "limit": gate.limit,
                "value": round(value, 3),
                "ok": value <= gate.limit,
            }
        )
    for owner, lookup in _by_owner(peer).items():
        row.peers.append(measure_peer(case, arch, lookup, unique, owner))
    return row


def measure_peer(
    case: TrafficCase, arch: str, peer: PeerLookup, unique: bool, owner: str = "sglang"
) -> PeerRow:
    """The peer's launches for `case` on `arch`, counted as ours are."""
    try:
        what, build, context = peer(case, arch)
    except Exception as exc:  # a peer that cannot even be set up is its row's finding
        return PeerRow(what=f"{owner}: lookup failed", owner=owner, error=f"{exc}"[:400])
    out = PeerRow(what=what, owner=owner)
    if build is None:
        return out
    start = time.perf_counter()
    try:
        with context:
            traffic, prepared = _count(build, target_for_arch(arch), unique)
    except Exception as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:400]
        return out
    out.seconds = round(time.perf_counter() - start, 1)
    _fill(out, traffic, prepared)
    return out


def _fill(row: TrafficRow | PeerRow, t: Traffic, prepared: Prepared) -> None:
    row.bytes = t.triton_bytes + t.torch_bytes
    row.ideal = prepared.ideal
    row.unique_bytes = t.unique_bytes
    row.weight_bytes = sum(t.by_tensor.get(n, 0) for n in prepared.weights)
    row.ideal_weights = prepared.ideal_weights
    row.launches = t.launches
    row.detail = t.as_dict()
    row.note = prepared.note


def run(
    targets: Sequence[str] = TARGETS,
    quick: bool = False,
    match: str | None = None,
    progress: bool = True,
    peer: Peers | None = None,
) -> list[TrafficRow]:
    """Every case (or `quick`'s, or those whose model/op/size contains `match`) on
    every target; with `peer` (one lookup or several by owner), each beside the
    peers' kernels."""
    matrix = [c for c in cases(quick) if not match or match in f"{c.model} {c.op} {c.size}"]
    rows = []
    for arch in targets:
        for case in matrix:
            row = measure(case, arch, peer=peer)
            rows.append(row)
            if progress:
                print(_line(row), flush=True)
    return rows


def gate_failures(rows: Sequence[TrafficRow]) -> list[str]:
    """One line per failed gate; empty when every gate holds."""
    bad = []
    for r in rows:
        for g in r.gates:
            if not g["ok"]:
                why = r.error or f"{g['value']} > {g['limit']}"
                bad.append(f"{g['gate']}: {r.model} {r.op}, {r.size} on {r.target}: {why}")
    return bad


HEAD = (
    f"{'op':<26} {'model':<31} {'size':<22} {'target':<7} {'bytes':>11} {'ideal':>11} "
    f"{'ratio':>6} {'unique':>6} {'w ratio':>7} {'launch':>6}  gate"
)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _line(r: TrafficRow) -> str:
    if r.error:
        return f"{r.op:<26} {r.model:<31} {r.size:<22} {r.target:<7} ERROR {r.error}"
    gate = (
        "; ".join(f"{'ok' if g['ok'] else 'FAIL'} {g['value']}<={g['limit']}" for g in r.gates)
        or "-"
    )
    unique = r.unique_bytes / r.ideal if r.ideal else 0.0
    wr = f"{r.weights_ratio:.2f}" if r.ideal_weights else "-"
    return (
        f"{r.op:<26} {r.model[:31]:<31} {r.size:<22} {r.target:<7} {_mb(r.bytes):>11} "
        f"{_mb(r.ideal):>11} {r.ratio:>6.2f} {unique:>6.2f} {wr:>7} {r.launches:>6}  {gate}"
        + "".join(f"  | {_peer_text(r, p)}" for p in r.peers)
    )


def _peer_text(r: TrafficRow, p: PeerRow | None = None) -> str:
    """A peer beside a row (the first unless `p`): its owner, bytes, ratio to its
    ideal, launches, ours / peer."""
    p = r.peer if p is None else p
    if p is None:
        return "-"
    who = f"{p.owner}: " if p.owner and not p.what.startswith(p.owner) else ""
    if p.error:
        return f"{who}{p.what}: error {p.error}"
    if not p.bytes:
        return f"{who}none ({p.what})"
    ours = r.over_peer(p)
    unique = p.unique_bytes / p.ideal if p.ideal else 0.0
    wr = f", weights {p.weights_ratio:.2f}x" if p.ideal_weights else ""
    vs = f"; ours/peer bytes {ours[0]:.2f}, launches {r.launches}/{p.launches}" if ours else ""
    note = f" [{p.note}]" if p.note else ""
    return (
        f"{who}{p.what}{note}: {_mb(p.bytes)}, {p.ratio:.2f}x ideal (unique {unique:.2f}x){wr}, "
        f"{p.launches} launches{vs}"
    )


def table(rows: Sequence[TrafficRow]) -> str:
    return "\n".join([HEAD, "-" * len(HEAD), *(_line(r) for r in rows)])


def markdown(rows: Sequence[TrafficRow]) -> str:
    """BENCHMARKS.md's table: one line per case and target."""
    lines = [
        "| op | model | size | target | run as | bytes | ideal | ratio | unique/ideal "
        "| weights ratio | launches (triton + torch) | gate | peer |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r.error:
            lines.append(
                f"| {r.op} | {r.model} | {r.size} | {r.target} | {r.scaling} "
                f"| error: {r.error} | | | | | | | |"
            )
            continue
        gate = (
            "; ".join(
                f"{'ok' if g['ok'] else '**FAIL**'} {g['value']} <= {g['limit']}" for g in r.gates
            )
            or "-"
        )
        d = r.detail
        lines.append(
            f"| {r.op} | {r.model} | {r.size} | {r.target} | {r.scaling} | {_mb(r.bytes)} "
            f"| {_mb(r.ideal)} | {r.ratio:.2f} | {r.unique_bytes / r.ideal:.2f} "
            f"| {f'{r.weights_ratio:.2f}' if r.ideal_weights else '-'} "
            f"| {r.launches} ({d['triton_launches']} + {d['torch_launches']}) | {gate} "
            f"| {'<br>'.join(_peer_text(r, p) for p in r.peers) or '-'} |"
        )
    return "\n".join(lines)


def write(rows: Sequence[TrafficRow], out: Path, header: str) -> tuple[Path, Path | None]:
    """traffic.json (every row, its per-kernel bytes and torch ops, the gates),
    traffic.md and, with matplotlib, traffic.png (ratio per case and target)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "traffic.json"
    json_path.write_text(
        json.dumps(
            {"header": header, "gates": gate_failures(rows), "rows": [r.as_dict() for r in rows]},
            indent=1,
        )
    )
    (out / "traffic.md").write_text(f"{header}\n\n{markdown(rows)}\n")
    plt = pyplot()
    if plt is None:
        return json_path, None
    ok = [r for r in rows if not r.error]
    fig, axes = plt.subplots(1, 2, figsize=(15, max(4, 0.28 * len(ok))), sharey=True)
    y = list(range(len(ok)))
    # One bar per owner that ran anywhere (ours first), side by side within a case.
    owners = [o for o in dict.fromkeys(p.owner for r in ok for p in r.peers)
              if any(r.over_peer(p) for r in ok for p in r.peers if p.owner == o)]  # fmt: skip
    h = 0.8 / (1 + len(owners))
    offset = [(i - len(owners) / 2) * h for i in range(1 + len(owners))]
    ours_y = [v + offset[0] for v in y]
    axes[0].barh(ours_y, [r.ratio for r in ok], height=h, color="tab:blue", label="ours")
    axes[1].barh(ours_y, [r.launches for r in ok], height=h, color="tab:orange", label="ours")
    colors = {"sglang": "tab:gray", "aiter": "tab:red"}
    for i, owner in enumerate(owners, 1):
        got = [(v, p) for v, r in zip(y, ok, strict=True) for p in r.peers
               if p.owner == owner and r.over_peer(p)]  # fmt: skip
        py = [v + offset[i] for v, _ in got]
        label = {"sglang": "SGLang"}.get(owner, owner)
        color = colors.get(owner, "tab:green")
        axes[0].barh(py, [p.ratio for _, p in got], height=h, color=color, label=label)
        axes[1].barh(py, [p.launches for _, p in got], height=h, color=color, label=label)
    if owners:
        axes[0].legend(fontsize=7)
    axes[0].axvline(1.0, color="k", lw=0.8)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("bytes moved / ideal (log)")
    axes[1].set_xlabel("launches per forward (Triton + torch)")
    axes[0].set_yticks(y, [f"{r.op} {r.model[:24]} {r.size} {r.target}" for r in ok], fontsize=6)
    axes[0].invert_yaxis()
    fig.suptitle(header, fontsize=9)
    png_path = save(fig, out / "traffic.png")
    return json_path, png_path
