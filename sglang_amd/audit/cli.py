"""`sglang-amd audit`: the command line of the compile and traffic audits.

Where it sits: `sglang_amd/cli.py` hands `audit ...` here. The compile audit
(`audit/compile_audit.py`, with SGLang's and, from a checkout, aiter's kernels
as peers) runs in this process; `--traffic` (`audit/traffic_audit.py`) needs
interpreted kernels, so it runs again in a child with TRITON_INTERPRET=1.
Never imports sglang itself (its peer modules do, where importable).
"""

from __future__ import annotations

import argparse
import os
import sys

AITER_ENV = "SGLANG_AMD_AITER_SRC"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`sglang-amd audit` and its options."""
    audit = sub.add_parser(
        "audit", help="compile every kernel for gfx942/gfx950/sm_90/sm_100 and check the gates"
    )
    audit.add_argument(
        "--targets",
        default=None,
        help="default gfx942,gfx950,sm_90,sm_100 (--traffic: gfx942,sm_90)",
    )
    audit.add_argument("--quick", action="store_true", help="a few shapes (what make test runs)")
    audit.add_argument("--out", default="bench-out", help="folder for audit.json and audit.png")
    audit.add_argument(
        "--traffic",
        action="store_true",
        help="bytes moved against each op's ideal and launches per forward (traffic.json/png)",
    )
    audit.add_argument("--match", default=None, help="--traffic: only cases whose text has this")
    audit.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also compile (with --traffic: count) SGLang's Triton kernels over the matrix, "
        "reported beside ours (default: on for the full audit, off with --quick)",
    )
    audit.add_argument(
        "--aiter-src",
        default=None,
        metavar="DIR",
        help="a ROCm/aiter checkout: compile aiter's Triton kernels (aiter.ops.triton) as "
        "peers too, for gfx942/gfx950, without building its HIP modules; implies --peers "
        "(default: $SGLANG_AMD_AITER_SRC, which follows --peers)",
    )


def main(ns: argparse.Namespace, argv: list[str], commit: str) -> int:
    """Run the audit `ns` asks for; `argv` re-runs it in a child (--traffic)."""
    ns.argv = argv
    ns.targets_given = ns.targets is not None
    # Peers: on for the full audit, off with --quick, unless --peers says; an
    # explicit --aiter-src asks for them, the variable alone follows that rule.
    default_peers = not ns.quick or ns.aiter_src is not None
    ns.want_peers = default_peers if ns.peers is None else ns.peers
    if ns.aiter_src is None:
        ns.aiter_src = os.environ.get(AITER_ENV) or None
    if ns.targets is None:
        ns.targets = "gfx942,gfx950,sm_90,sm_100"
    return _traffic_audit(ns, commit) if ns.traffic else _compile_audit(ns, commit)


def _compile_audit(ns: argparse.Namespace, commit: str) -> int:
    """Exit 0 when every gate holds, 1 when one fails (each printed), 2 when the
    audit cannot run here."""
    import datetime
    from pathlib import Path

    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print(
            "sglang-amd audit: unset TRITON_INTERPRET (it compiles real kernels)", file=sys.stderr
        )
        return 2
    from sglang_amd.audit import compile_audit

    targets = [t.strip() for t in ns.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(compile_audit.TARGETS))
    if unknown:
        print(
            f"sglang-amd audit: unknown --targets {unknown}; use {compile_audit.TARGETS}",
            file=sys.stderr,
        )
        return 2
    sources, notes = [compile_audit.OURS], []
    want_peers = ns.want_peers
    aiter_src = ns.aiter_src if want_peers else None
    if want_peers:
        # Needs neither sglang nor an installed aiter: the checkout is read at run time
        # (checked first: a wrong path fails before anything compiles).
        from sglang_amd.audit import aiter_peer_launches

        try:
            aiter = aiter_peer_launches.source(aiter_src) if aiter_src else None
        except aiter_peer_launches.AiterSourceError as exc:
            print(f"sglang-amd audit: {exc}", file=sys.stderr)
            return 2
        try:
            from sglang_amd.audit import sglang_peer_launches
        except ImportError as exc:  # the bare GPU image has no sglang: ours still run
            notes.append(f"sglang peers: not importable here ({exc})")
        else:
            sources.append(sglang_peer_launches.SOURCE)
            notes += sglang_peer_launches.notes()
        sources += [aiter] if aiter else []
    rows = compile_audit.run(targets, quick=ns.quick, sources=sources)
    if want_peers:  # after the run: it names the launchers that would not import
        notes += aiter_peer_launches.notes(aiter_src)
    peers = [s.owner for s in sources[1:]]
    header = (
        f"sglang-amd audit | compiled for {', '.join(targets)} on a CPU machine | "
        f"{datetime.date.today()} | commit {commit}"
        + (" | QUICK" if ns.quick else "")
        + (f" | peers: {', '.join(peers)}" if peers else "")
    )
    print(header)
    print(compile_audit.table(rows))
    if len(sources) > 1 or notes:
        from sglang_amd.audit import peer_compare

        print(peer_compare.table(peer_compare.pairs(rows), notes))
    failures = compile_audit.gate_failures(rows)
    json_path, png_path = compile_audit.write(rows, Path(ns.out), header, notes)
    print(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))
    print(f"gates: {len(rows)} compiled launches, {len(failures)} failing")
    for failure in failures:
        print(f"  GATE: {failure}")
    return 1 if failures else 0


_TRAFFIC_CHILD = "SGLANG_AMD_TRAFFIC_CHILD"


def _traffic_audit(ns: argparse.Namespace, commit: str) -> int:
    """`audit --traffic`: the kernels must be interpreted, and Triton picks the
    interpreter when a kernel is decorated, so unless this process already has
    TRITON_INTERPRET=1 set and no kernel imported, it runs again in a child that has
    (the compile audit, in this process, must not see the variable)."""
    import datetime
    import subprocess
    from pathlib import Path

    if os.environ.get(_TRAFFIC_CHILD) != "1":
        argv = [sys.executable, "-m", "sglang_amd.cli", *ns.argv]
        env = {**os.environ, "TRITON_INTERPRET": "1", _TRAFFIC_CHILD: "1"}
        return subprocess.run(argv, env=env).returncode
    from sglang_amd.audit import traffic_audit

    default = ",".join(traffic_audit.TARGETS)
    targets = [t.strip() for t in (ns.targets if ns.targets_given else default).split(",")]
    unknown = sorted(t for t in targets if t not in ("gfx942", "gfx950", "sm_90", "sm_100"))
    if unknown:
        print(f"sglang-amd audit --traffic: unknown --targets {unknown}", file=sys.stderr)
        return 2
    header = (
        f"sglang-amd audit --traffic | {', '.join(targets)} flags, CPU interpreter | "
        f"{datetime.date.today()} | commit {commit}" + (" | QUICK" if ns.quick else "")
    )
    try:
        peer, note = _traffic_peer(ns.want_peers, ns.aiter_src if ns.want_peers else None)
    except ValueError as exc:  # aiter_peer_launches.AiterSourceError: names the flag
        print(f"sglang-amd audit --traffic: {exc}", file=sys.stderr)
        return 2
    header += f" | peers: {note}" if note else ""
    print(header)
    print(traffic_audit.HEAD, flush=True)
    rows = traffic_audit.run(targets, quick=ns.quick, match=ns.match, peer=peer)
    failures = traffic_audit.gate_failures(rows)
    json_path, png_path = traffic_audit.write(rows, Path(ns.out), header)
    print(
        f"wrote {json_path}"
        + (f" and {png_path}" if png_path else " (no PNG: pip install matplotlib)")
    )
    gates = sum(len(r.gates) for r in rows)
    print(f"gates: {len(rows)} cases, {gates} gates, {len(failures)} failing")
    for failure in failures:
        print(f"  GATE: {failure}")
    return 1 if failures else 0


def _traffic_peer(want: bool, aiter_src: str | None):  # noqa: ANN202
    """The peers beside ours in `audit --traffic`, by owner (a dict of
    `traffic_audit.PeerLookup`, or None), and a note for the header: SGLang's
    kernels where sglang imports, aiter's from a checkout where one is given (a bad
    path raises `AiterSourceError`, a ValueError naming --aiter-src)."""
    if not want:
        return None, ""
    lookups, notes = {}, []
    if aiter_src:  # checked first: a wrong path fails before anything runs
        from sglang_amd.audit import aiter_peer_traffic

        aiter = aiter_peer_traffic.lookup_for(aiter_src)
    try:
        from sglang_amd.audit import sglang_peer_traffic as peers
    except ImportError as exc:  # the bare GPU image has no sglang: ours still run
        notes.append(f"sglang not importable here ({exc})")
    else:
        lookups["sglang"] = peers.lookup
        notes.append("sglang (same counter, same shapes)")
    if aiter_src:
        lookups["aiter"] = aiter
        notes.append(f"aiter from {aiter_src} (same counter, same shapes; AMD targets only)")
    else:
        notes.append("aiter: not given (--aiter-src DIR or $SGLANG_AMD_AITER_SRC)")
    return lookups or None, "; ".join(notes)
