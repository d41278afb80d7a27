"""Read what a compiled kernel costs from its assembly: registers, spills, LDS,
occupancy, the matrix instructions it uses and the width of its global loads.

Where it sits: `audit/compile_for_target.py` compiles; this parses each
`Compiled` into a `KernelReport`. AMD: the `; NumVgprs:` ... comments of the
amdgcn text. NVIDIA: `cuobjdump -res-usage` of the cubin (Triton ships it) and
the PTX. Never imports sglang.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass

from sglang_amd.audit.compile_for_target import Compiled

# Registers per SIMD lane on CDNA3/CDNA4 (VGPRs + AGPRs share a 512-entry file)
# and the waves each SIMD can hold at most.
_AMD_MAX_WAVES = 8
# Hopper/Blackwell SM: 64K registers, 2048 threads, 227 KiB of shared memory.
_NV_REGS, _NV_THREADS, _NV_SMEM = 65536, 2048, 227 * 1024


@dataclass
class KernelReport:
    kernel: str
    arch: str
    config: str
    ok: bool
    error: str | None
    registers: int | None  # VGPRs (AMD, AGPRs separate) or registers per thread (NVIDIA)
    agprs: int | None
    sgprs: int | None
    spill_bytes: int | None  # AMD ScratchSize, NVIDIA local memory per thread
    shared_bytes: int
    occupancy: int | None  # AMD waves per SIMD; NVIDIA warps per SM (computed)
    mma: str  # the matrix instruction family
    load_bits: int | None  # the widest global load
    main_load: str  # the most frequent global load instruction

    def as_dict(self) -> dict:
        return asdict(self)


def _amd_field(text: str, name: str) -> int | None:
    m = re.search(rf"^\s*; {name}: (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def _amd_mma(text: str) -> str:
    if "v_mfma_scale" in text:
        return "scaled MFMA (f8f6f4)"
    m = re.search(r"\bv_mfma_\w+", text)
    return f"MFMA ({m.group(0)})" if m else "none (FMA)"


def _amd_loads(text: str) -> tuple[int | None, str]:
    loads = collections.Counter(re.findall(r"\b(?:global|buffer)_load_(\w+)", text))
    bits = {"dwordx4": 128, "dwordx3": 96, "dwordx2": 64, "dword": 32, "ushort": 16, "ubyte": 8}
    widths = [bits.get(k.split("_")[0], 0) for k in loads] or [None]
    main = loads.most_common(1)[0][0] if loads else "-"
    return (max(widths) if widths != [None] else None), main


def _nv_resources(cubin: bytes) -> dict[str, int]:
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
    line = next((ln for ln in out.splitlines() if "REG:" in ln), "")
    return {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", line)}


def _nv_mma(ptx: str) -> str:
    for pattern, name in (
        (r"tcgen05\.mma", "tcgen05"),
        (r"wgmma\.mma_async", "wgmma"),
        (r"mma\.sync", "mma.sync"),
    ):
        if re.search(pattern, ptx):
            detail = re.search(pattern + r"[\w.]*", ptx).group(0)
            return f"{name} ({detail})"
    return "none (FMA)"


def _nv_loads(ptx: str) -> tuple[int | None, str]:
    loads = collections.Counter(
        re.findall(r"\b(ld\.global[\w.]*|cp\.async\.\w+\.shared\.global)", ptx)
    )
    if "cp.async.bulk" in ptx:
        loads["cp.async.bulk (TMA)"] += 1
    widths = []
    for name in loads:
        if name.startswith("cp.async"):
            widths.append(128)
            continue
        vec = 4 if ".v4" in name else 2 if ".v2" in name else 1
        m = re.search(r"\.[bfsu](\d+)$", name)
        widths.append(vec * (int(m.group(1)) if m else 32))
    main = loads.most_common(1)[0][0] if loads else "-"
    return (max(widths) if widths else None), main


def report(c: Compiled, config: str) -> KernelReport:
    """What compiling `c` cost; `config` a short text of its constexprs and options."""
    base = dict(kernel=c.kernel, arch=c.arch, config=config, shared_bytes=c.shared)
    if c.error is not None:
        return KernelReport(
            **base,
            ok=False,
            error=c.error,
            registers=None,
            agprs=None,
            sgprs=None,
            spill_bytes=None,
            occupancy=None,
            mma="-",
            load_bits=None,
            main_load="-",
        )
    if "amdgcn" in c.asm:
        text = c.asm["amdgcn"]
        bits, main = _amd_loads(text)
        return KernelReport(
            **base,
            ok=True,
            error=None,
            registers=_amd_field(text, "NumVgprs"),
            agprs=_amd_field(text, "NumAgprs"),
            sgprs=_amd_field(text, "TotalNumSgprs"),
            spill_bytes=_amd_field(text, "ScratchSize"),
            occupancy=_amd_field(text, "Occupancy"),
            mma=_amd_mma(text),
            load_bits=bits,
            main_load=main,
        )
    res = _nv_resources(c.asm["cubin"])
    regs = res.get("REG")
    warps = int(c.options.get("num_warps", 4))
    threads = 32 * warps
    blocks = _NV_THREADS // threads
    if regs:
        per_block = -(-regs * threads // 256) * 256  # allocation granularity
        blocks = min(blocks, _NV_REGS // per_block)
    if c.shared:
        blocks = min(blocks, _NV_SMEM // c.shared)
    bits, main = _nv_loads(c.asm["ptx"])
    return KernelReport(
        **base,
        ok=True,
        error=None,
        registers=regs,
        agprs=None,
        sgprs=None,
        spill_bytes=res.get("LOCAL", 0) + res.get("STACK", 0),
        occupancy=blocks * warps,
        mma=_nv_mma(c.asm["ptx"]),
        load_bits=bits,
        main_load=main,
    )
