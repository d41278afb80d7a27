"""aiter's Triton kernels as peers in `sglang-amd audit` (audit/aiter_peer_launches.py).

Without aiter (CI): the loader's contract on a tiny fake checkout made here (a
real @triton.jit kernel behind an `aiter.ops.triton` launcher that reads
`arch_info` and `aiter.dtypes` as aiter's do): it loads with our stand-ins,
compiles for gfx942 through the audit's machinery, and leaves `sys.modules` as
it was; a wrong `--aiter-src` is refused naming the flag. With
SGLANG_AMD_AITER_SRC set to a ROCm/aiter checkout: the real peer audit, aiter
rows for each op on gfx942 and gfx950, paired with ours. Compile audits run in
their own process without TRITON_INTERPRET (they need real JIT kernels)."""

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
