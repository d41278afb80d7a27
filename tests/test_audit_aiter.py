"""aiter's Triton kernels as peers in `sglang-amd audit` (audit/aiter_peer_launches.py).

Without aiter (CI): the loader's contract on a tiny fake checkout made here (a
real @triton.jit kernel behind an `aiter.ops.triton` launcher that reads
`arch_info` and `aiter.dtypes` as aiter's do): it loads with our stand-ins,
compiles for gfx942 through the audit's machinery, and leaves `sys.modules` as
it was; a wrong `--aiter-src` is refused naming the flag. With
SGLANG_AMD_AITER_SRC set to a ROCm/aiter checkout: the real peer audit, aiter
rows for each op on gfx942 and gfx950, paired with ours. Compile audits run in
their own process without TRITON_INTERPRET (they need real JIT kernels).

The traffic audit (audit/aiter_peer_traffic.py): rows carrying several peers
(SGLang's and aiter's) in JSON, table and markdown, from fake lookups; the aiter
lookup's answers on a fake checkout; with the variable set, `audit --traffic`
counts aiter's launches beside ours (or says why the interpreter cannot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ENV = "SGLANG_AMD_AITER_SRC"

# A fake checkout: the package's __init__ fails as the real one does without
# ROCm; its launcher reads what aiter's read (arch at import, dtypes, CU count).
_FILES = {
    "aiter/__init__.py": "raise ImportError('needs ROCm: the stand-in must be used')\n",
    "aiter/ops/__init__.py": "",
    "aiter/ops/triton/__init__.py": "import sys, types\n"
    "sys.meta_path.insert(0, types.SimpleNamespace(find_spec=lambda *a, **k: None))\n",
    "aiter/ops/triton/utils/__init__.py": "",
    "aiter/ops/triton/utils/arch_info.py": """
        import triton
        _ARCH = triton.runtime.driver.active.get_current_target().arch
        def get_arch():
            return _ARCH
    """,
    "aiter/ops/triton/utils/device_info.py": """
        def get_num_sms():
            from aiter.jit.utils.chip_info import get_cu_num
            return get_cu_num()
    """,
    "aiter/ops/triton/fake_scale.py": """
        import torch
        import triton
        import triton.language as tl
        from aiter import dtypes
        from aiter.ops.triton.utils import arch_info
        from aiter.ops.triton.utils.device_info import get_num_sms

        ARCH = arch_info.get_arch()

        @triton.jit
        def _fake_scale_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n) * 2, mask=offs < n)

        def fake_scale(x):
            assert dtypes.fp8 == (torch.float8_e4m3fnuz if ARCH == "gfx942" else torch.float8_e4m3fn)
            y = torch.empty_like(x)
            block = 256 if get_num_sms() == 304 else 128
            _fake_scale_kernel[(triton.cdiv(x.numel(), block),)](x, y, x.numel(), BLOCK=block)
            return ARCH
    """,
}


@pytest.fixture
def fake_aiter(tmp_path):
    for rel, text in _FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


_CHILD = """
import json
import sys
import torch
from sglang_amd.audit import aiter_peer_launches as apl
from sglang_amd.audit.compile_for_target import compiling_for
from sglang_amd.audit.isa import report

before = set(sys.modules)
meta_path = list(sys.meta_path)
root = apl.aiter_root(sys.argv[1])
sink = []
with compiling_for("gfx942", sink):
    with apl.aiter_sees(root, "gfx942"):
        from aiter.ops.triton.fake_scale import fake_scale
        arch = fake_scale(torch.empty(1000))
    with apl.aiter_sees(root, "gfx942"):  # the second case reuses the first's modules
        import aiter.ops.triton.fake_scale as again
        assert again.fake_scale is fake_scale
leaked = sorted(k for k in set(sys.modules) - before if k == "aiter" or k.startswith("aiter."))
r = report(sink[0], "")
print(json.dumps(dict(arch=arch, kernel=sink[0].kernel, block=sink[0].constexprs["BLOCK"],
                      ok=r.ok, registers=r.registers, leaked=leaked,
                      meta_path=sys.meta_path == meta_path, aiter="aiter" in sys.modules)))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", ENV)}


def test_fake_checkout_loads_compiles_for_gfx942_and_leaves_nothing(fake_aiter):
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(fake_aiter)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (got["arch"], got["kernel"], got["ok"]) == ("gfx942", "_fake_scale_kernel", True)
    assert got["block"] == 256  # 304 CUs: what the chip_info stand-in answers for gfx942
    assert got["registers"] > 0
    # Nothing of aiter left behind, its meta_path finder removed.
    assert (got["leaked"], got["meta_path"], got["aiter"]) == ([], True, False)


def test_aiter_root_accepts_checkout_or_package_and_names_the_flag(fake_aiter, tmp_path_factory):
    from sglang_amd.audit.aiter_peer_launches import AiterSourceError, aiter_root

    assert aiter_root(fake_aiter) == fake_aiter.resolve()
    assert aiter_root(fake_aiter / "aiter") == fake_aiter.resolve()
    for bad in (fake_aiter / "missing", tmp_path_factory.mktemp("empty")):
        with pytest.raises(AiterSourceError, match="--aiter-src"):
            aiter_root(bad)


def test_audit_refuses_a_bad_aiter_src(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_amd.cli", "audit", "--quick", "--targets", "gfx942",
         "--aiter-src", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--aiter-src" in proc.stderr and "nowhere" in proc.stderr


def test_no_aiter_source_is_a_note_and_no_nvidia_cases(fake_aiter):
    from sglang_amd.audit import aiter_peer_launches as apl

    assert apl.notes(None) == [
        "aiter: not installed here; pass --aiter-src DIR (a ROCm/aiter checkout) "
        "to compile its Triton kernels as peers"
    ]
    source = apl.source(fake_aiter)
    assert source.owner == "aiter"
    assert source.cases("sm_90", True) == [] and source.cases("sm_100", False) == []
    quick = {(c.model, c.op) for c in source.cases("gfx942", True)}
    assert quick == apl.QUICK_PEERS


def test_aiter_kernels_pair_by_role():
    from sglang_amd.audit.peer_compare import ROLE

    assert ROLE["_paged_attn_decode_v2_w_dot_kernel"] == ROLE["_decode_split_kernel"]
    assert ROLE["_mla_decode_fwd_reduce_kernel"] == ROLE["_decode_reduce_kernel"]
    assert ROLE["_fwd_kernel"] == ROLE["_extend_kernel"]
    assert ROLE["_fp8_mqa_logits_kernel"] == ROLE["_indexer_logits_kernel"]
    for gemm in ("_fused_moe_kernel", "_fused_moe_kernel_mxfp4", "_moe_gemm_a16w4"):
        assert ROLE[gemm] == ROLE["_grouped_gemm_kernel"]


# Our op -> aiter's launch of it (audit/aiter_peer_launches.py), in the quick matrix.
_AITER_OPS = {
    "attention.decode",
    "attention.extend",
    "attention.indexer",
    "moe.fused bf16",
    "moe.fused a4w4",
    "moe.fused mxfp4",
}


@pytest.mark.skipif(not os.environ.get(ENV), reason=f"{ENV} not set (a ROCm/aiter checkout)")
def test_real_aiter_peers_compile_and_pair(tmp_path):
    env = {**_env(), ENV: os.environ[ENV]}
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_amd.cli", "audit", "--quick", "--peers",
         "--targets", "gfx942,gfx950", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=1800, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "audit.json").read_text())
    assert data["gates"] == []  # peers are reported, never gated
    rows = [r for r in data["rows"] if r["owner"] == "aiter"]
    for arch in ("gfx942", "gfx950"):
        mine = [r for r in rows if r["arch"] == arch]
        ops = {u.split(": ", 1)[1].split(", ")[0] for r in mine for u in r["used_by"]}
        assert ops == _AITER_OPS, arch
        assert all(r["ok"] and r["registers"] for r in mine), arch
        paired = {p["op"] for p in data["peer_pairs"] if p["arch"] == arch and p["peer"] == "aiter"}
        assert paired == _AITER_OPS, arch
    assert not any(r["arch"].startswith("sm_") for r in rows)
    assert "aiter" in data["header"]


def test_imports_without_sglang_or_aiter():
    """The bare GPU image: neither sglang nor aiter importable; the aiter peer
    module and the peer pairing still import, and the note says how to add aiter."""
    code = (
        "import sys; sys.modules['sglang'] = sys.modules['aiter'] = None\n"
        "from sglang_amd.audit import aiter_peer_launches, peer_compare\n"
        "print(aiter_peer_launches.notes(None)[0])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pass --aiter-src DIR" in proc.stdout


# ---- the traffic audit (audit/aiter_peer_traffic.py, traffic_audit's peers) ----------


def _fake_peer(owner: str, adds: int, fail: bool = False):
    """A PeerLookup whose build runs `adds` torch adds on a named tensor (counted as
    launches and bytes by the same counter), or fails in its run."""
    import contextlib

    import torch

    from sglang_amd.audit.traffic_cases import Prepared

    def build(target):
        x = torch.zeros(1024)

        def run():
            if fail:
                raise RuntimeError(f"{owner}'s kernel refused")
            for _ in range(adds):
                x.add_(1)
            return x

        return Prepared(run, {"x": x}, ideal=2 * x.numel() * 4, note=f"{owner} note")

    def lookup(case, arch):
        return f"{owner} kernels", build, contextlib.nullcontext()

    return lookup


@pytest.mark.cpu_interpreter
def test_traffic_row_carries_every_peer_in_json_table_and_markdown(tmp_path):
    from sglang_amd.audit import traffic_audit
    from sglang_amd.audit.traffic_cases import cases

    case = next(
        c for c in cases()
        if (c.model, c.op, c.size) == ("Llama-3.1-70B tp8", "attention.decode", "batch 1, context 1024")
    )  # fmt: skip
    peers = {"sglang": _fake_peer("sglang", 1), "aiter": _fake_peer("aiter", 3)}
    row = traffic_audit.measure(case, "gfx942", peer=peers)
    assert row.error is None, row.error
    assert [p.owner for p in row.peers] == ["sglang", "aiter"]
    sglang, aiter = row.peers
    assert row.peer is sglang  # the first peer: what "peer" has always been
    # An in-place add on 1024 floats: the counter's torch rule counts its 4 KiB
    # output once (the written argument is not read again); three adds, three times.
    assert (sglang.launches, sglang.bytes) == (1, 4096)
    assert (aiter.launches, aiter.bytes) == (3, 3 * 4096)
    assert aiter.ratio == 1.5 and aiter.note == "aiter note"
    assert row.over_peer(aiter) == (row.bytes / aiter.bytes, row.launches / 3)

    data = row.as_dict()
    assert data["peer"]["owner"] == "sglang" and data["peer"]["bytes"] == 4096
    assert data["ours_over_peer"]["launches"] == round(row.launches / 1, 3)
    assert [p["owner"] for p in data["peers"]] == ["sglang", "aiter"]
    assert data["peers"][1]["ours_over"] == {
        "bytes": round(row.bytes / aiter.bytes, 3),
        "launches": round(row.launches / 3, 3),
    }

    json_path, _ = traffic_audit.write([row], tmp_path, "header")
    (written,) = json.loads(json_path.read_text())["rows"]
    assert [p["launches"] for p in written["peers"]] == [1, 3]
    (line,) = [ln for ln in (tmp_path / "traffic.md").read_text().splitlines() if "Llama" in ln]
    assert "sglang kernels [sglang note]" in line and "aiter kernels [aiter note]" in line
    assert "<br>" in line and f"launches {row.launches}/3" in line
    table = traffic_audit.table([row])
    assert table.count(" | ") >= 2 and "aiter kernels" in table and "sglang kernels" in table


@pytest.mark.cpu_interpreter
def test_a_peer_that_fails_is_its_rows_reason_not_the_cases():
    from sglang_amd.audit import traffic_audit
    from sglang_amd.audit.traffic_cases import cases

    case = next(c for c in cases(quick=True) if c.op == "ep_permute.combine")
    peers = {"sglang": _fake_peer("sglang", 1), "aiter": _fake_peer("aiter", 1, fail=True)}
    row = traffic_audit.measure(case, "gfx942", peer=peers)
    assert row.error is None and row.peers[0].bytes > 0
    assert row.peers[1].bytes == 0 and "aiter's kernel refused" in row.peers[1].error
    assert row.over_peer(row.peers[1]) is None
    assert row.as_dict()["peers"][1]["ours_over"] is None
    assert "aiter kernels: error RuntimeError: aiter's kernel refused" in traffic_audit.markdown(
        [row]
    )


def test_aiter_traffic_lookup_on_a_fake_checkout(fake_aiter):
    """Which of our ops have an aiter launcher beside them, and NVIDIA targets say
    why there is none; nothing of aiter is imported to answer."""
    from sglang_amd.audit import aiter_peer_traffic as apt
    from sglang_amd.audit.traffic_cases import cases

    lookup = apt.lookup_for(fake_aiter)
    launchers = {}
    for case in cases():
        what, build, _ = lookup(case, "sm_90")
        assert (what, build) == (apt.AMD_ONLY, None)
        what, build, _ = lookup(case, "gfx942")
        launchers.setdefault(case.op, set()).add(what if build else None)
    assert launchers["attention.decode"] == {
        "aiter paged_attention_decode",
        "aiter mla_decode_fwd (Triton)",
    }
    for op in _AITER_OPS:
        assert None not in launchers[op], op
    for op in ("attention.sparse", "attention.topk", "ep_permute.combine"):
        assert launchers[op] == {None}, op
    assert "aiter" not in sys.modules


def test_traffic_audit_refuses_a_bad_aiter_src(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_amd.cli", "audit", "--traffic", "--quick",
         "--targets", "gfx942", "--aiter-src", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--aiter-src" in proc.stderr and "nowhere" in proc.stderr


def _traffic(tmp_path, *args: str) -> dict:
    env = {**_env(), ENV: os.environ[ENV]}
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_amd.cli", "audit", "--traffic", "--targets", "gfx942",
         "--aiter-src", os.environ[ENV], "--out", str(tmp_path), *args],
        capture_output=True, text=True, timeout=1800, env=env,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads((tmp_path / "traffic.json").read_text())


@pytest.mark.skipif(not os.environ.get(ENV), reason=f"{ENV} not set (a ROCm/aiter checkout)")
def test_real_aiter_traffic_peers(tmp_path):
    """`audit --traffic --quick --aiter-src` (the flag implies peers), plus one extend
    and one indexer case (not in the quick matrix): an aiter row beside each case
    whose op has a launcher, counted (bytes, launches) or carrying the
    interpreter's reason."""
    rows = _traffic(tmp_path / "quick", "--quick")["rows"]
    rows += _traffic(tmp_path / "extend", "--match", "Llama-3.1-8B attention.extend")["rows"]
    rows += _traffic(
        tmp_path / "indexer", "--match", "indexer attention.indexer 1 query token, 8192"
    )["rows"]
    seen = set()
    for row in rows:
        (aiter,) = [p for p in row["peers"] if p["owner"] == "aiter"]
        if row["op"] not in _AITER_OPS:
            assert aiter["bytes"] == 0 and aiter["error"] is None, row["op"]
            continue
        seen.add(row["op"])
        assert aiter["what"].startswith("aiter "), aiter
        if aiter["error"]:
            assert "interpreter cannot run aiter's" in aiter["error"], aiter["error"]
        else:
            assert aiter["bytes"] > 0 and aiter["launches"] >= 1 and aiter["ideal"] > 0, aiter
    assert seen == _AITER_OPS
