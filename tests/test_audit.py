"""`sglang-amd audit`: our kernels compiled for MI300X, MI355X, H100 and B200 on this
CPU machine, and the gates it checks (every launch compiles, none spills, AMD
split-KV decode keeps >= 2 waves per SIMD). The quick matrix runs here in its own
process (the compile audit needs real JIT kernels, not the interpreter), with
SGLang's kernels as peers where sglang is installed (reported, never gated)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sglang_amd.audit.compile_for_target import Compiled
from sglang_amd.audit.isa import report

KERNELS = {
    "_decode_split_kernel",
    "_decode_reduce_kernel",
    "_extend_kernel",
    "_grouped_gemm_kernel",
    "_grouped_gemm_a4w4_kernel",
    "_quantize_kernel",
    "_align_kernel",
    "_combine_kernel",
    "_indexer_logits_kernel",
    "_topk_kernel",
    "_ep_plan_kernel",
    "_ep_pack_kernel",
    "_ep_combine_kernel",
}


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_amd.cli", "audit", "--quick", "--peers", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    return proc, json.loads((out / "audit.json").read_text())


def test_quick_audit_meets_every_gate(audit):
    proc, data = audit
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert data["gates"] == []
    rows = [r for r in data["rows"] if r["owner"] == "ours"]
    assert {r["arch"] for r in rows} == {"gfx942", "gfx950", "sm_90", "sm_100"}
    for arch in ("gfx942", "gfx950", "sm_90", "sm_100"):
        assert {r["kernel"] for r in rows if r["arch"] == arch} == KERNELS, arch
    assert all(r["ok"] and r["spill_bytes"] == 0 for r in rows)


def test_native_matrix_instructions_per_target(audit):
    """A4W4 takes scaled MFMA on gfx950 and tcgen05 on sm_100; bf16 tiles of 64 rows
    take MFMA on CDNA and wgmma on sm_90."""
    rows = [r for r in audit[1]["rows"] if r["owner"] == "ours"]

    def mma(kernel, arch, **config):
        return {
            r["mma"].split(" ")[0]
            for r in rows
            if r["kernel"] == kernel
            and r["arch"] == arch
            and all(f"{k}={v}" in r["config"] for k, v in config.items())
        }

    assert mma("_grouped_gemm_a4w4_kernel", "gfx950") == {"scaled"}
    assert mma("_grouped_gemm_a4w4_kernel", "sm_100") == {"tcgen05"}
    assert mma("_grouped_gemm_kernel", "sm_90", BLOCK_M=64) == {"wgmma"}
    assert mma("_grouped_gemm_kernel", "gfx942") == {"MFMA"}
    assert mma("_decode_split_kernel", "gfx950") == {"MFMA"}
    # DSA's FP8 indexer: fp8 operands on every target's matrix cores; gfx942 reads
    # the e4m3fn cache as e4m3fnuz, the only fp8 its MFMA takes (f16 MFMA before).
    fp8 = {
        arch: {r["mma"] for r in rows
               if r["kernel"] == "_indexer_logits_kernel" and r["arch"] == arch
               and "FP8_PAGE=64" in r["config"]}
        for arch in ("gfx942", "gfx950", "sm_90", "sm_100")
    }  # fmt: skip
    assert all(m and all("fp8_fp8" in x for x in m) for m in [fp8["gfx942"]]), fp8
    assert all("f8f6f4" in x for x in fp8["gfx950"]) and fp8["gfx950"], fp8
    assert {x.split(" ")[0] for x in fp8["sm_90"]} == {"wgmma"}, fp8
    assert {x.split(" ")[0] for x in fp8["sm_100"]} == {"tcgen05"}, fp8


@pytest.mark.sglang
def test_sglang_peers_compile_beside_ours(audit):
    """SGLang's grouped decode stage 1 compiles for every target and reports its
    registers; each op has a peer row paired with ours; peers never fail a gate."""
    data = audit[1]
    peers = [r for r in data["rows"] if r["owner"] == "sglang"]
    stage1 = [r for r in peers if r["kernel"] == "_fwd_grouped_kernel_stage1"]
    assert {r["arch"] for r in stage1} == {"gfx942", "gfx950", "sm_90", "sm_100"}
    assert all(r["ok"] and r["registers"] for r in stage1)
    assert any("aiter" in n for n in data["notes"])
    for arch in ("gfx942", "gfx950", "sm_90", "sm_100"):
        ops = {p["op"] for p in data["peer_pairs"] if p["arch"] == arch and p["peer"] == "sglang"}
        assert ops == {"attention.decode", "attention.extend", "moe.fused bf16"}, arch
    pair = next(
        p
        for p in data["peer_pairs"]
        if p["role"] == "split" and p["arch"] == "gfx942" and p["peer"] == "sglang"
    )
    assert pair["ratios_ours_over_peer"]["registers"] > 0
    assert "_fwd_grouped_kernel_stage1" in pair["theirs"]["kernels"]
    assert not any("sglang" in g for g in data["gates"])


def test_refuses_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sglang_amd.cli", "audit", "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2 and "unset TRITON_INTERPRET" in proc.stderr


AMDGCN = """
; TotalNumSgprs: 91
; NumVgprs: 125
; NumAgprs: 4
; ScratchSize: 16
; Occupancy: 3
  buffer_load_dwordx4 v[0:3], v4, s[0:3], 0 offen
  buffer_load_dword v5, v6, s[0:3], 0 offen
  buffer_load_dword v7, v6, s[0:3], 0 offen
  v_mfma_f32_16x16x16_bf16 a[0:3], v[0:1], v[2:3], a[0:3]
"""


def test_amd_report_reads_the_assembly():
    r = report(
        Compiled("_k", "gfx942", {}, {"num_warps": 4}, asm={"amdgcn": AMDGCN}, shared=64), ""
    )
    assert (r.registers, r.agprs, r.sgprs, r.spill_bytes, r.occupancy) == (125, 4, 91, 16, 3)
    assert r.mma.startswith("MFMA") and r.load_bits == 128 and r.main_load == "dword"
    scaled = AMDGCN + "  v_mfma_scale_f32_16x16x128_f8f6f4 a[0:3], v[0:7], v[8:15], a[0:3]\n"
    assert report(Compiled("_k", "gfx950", {}, {}, asm={"amdgcn": scaled}), "").mma.startswith(
        "scaled"
    )


def test_a_compile_error_is_a_row_not_a_crash():
    r = report(Compiled("_k", "gfx950", {}, {}, error="CompilationError: tf32"), "")
    assert not r.ok and r.error and r.registers is None
