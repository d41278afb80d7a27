"""aiter's Triton kernels (`aiter.ops.triton`) over our model matrix: peers beside SGLang's.

Where it sits: `sglang-amd audit --peers --aiter-src DIR` adds `source(DIR)` to
the sources `audit.compile_audit.run` walks; each case carries the same (model,
op, size) label as ours (the matrices of `audit.launches`) so
`audit.peer_compare` pairs the rows. Each case calls aiter's real launcher
(`paged_attention_decode`, the Triton `mla_decode_fwd`, `extend_attention_fwd`,
`fp8_mqa_logits`, `fused_moe`, `fused_moe_mxfp4`, `moe_gemm_a16w4`) on small
CPU tensors whose per-row shapes are the model's.

aiter is not pip-installed for this: it is read from a ROCm/aiter checkout at
run time (never copied here). Its package `__init__` loads HIP modules (it needs
ROCm), so `aiter_sees(root, arch)` puts minimal stand-ins in `sys.modules`
instead: the `aiter` package itself (its path only, `__init__` not run),
`aiter.dtypes` (torch dtypes; fp8 as aiter picks it per arch) and
`aiter.jit.utils.chip_info` (the arch and CU count `rocminfo` would report).
Every other module is aiter's own file. aiter decides launches from module
globals set at import (`arch_info.get_arch()`, configs per arch), so its modules
are imported once per target, while `compiling_for` reports that target, and
are swapped into `sys.modules` only for the duration of one case: nothing of
aiter (nor its `sys.meta_path` finder) is left in the process afterwards.
Never imports sglang.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from sglang_amd.audit.compile_audit import Source
from sglang_amd.audit.launches import (
    BF16,
    GPT_OSS_MOE,
    Case,
    attention_cases,
    indexer_fp8_cases,
    moe_cases,
)

ENV = "SGLANG_AMD_AITER_SRC"
FLAG = "--aiter-src"
_WHERE = f"{FLAG} (or ${ENV})"
# aiter's Triton kernels assume HIP (buffer ops, waves_per_eu, CDNA MFMA
# layouts, per-gfx config files): compiled for the AMD targets only.
TARGETS = ("gfx942", "gfx950")
# What `rocminfo` reports on each GPU: its CU count (MI300X, MI355X).
_CUS = {"gfx942": 304, "gfx950": 256}
# aiter.dtypes.fp8 per arch: gfx942's MFMA takes e4m3fnuz, gfx950's OCP e4m3fn.
_FP8 = {"gfx942": torch.float8_e4m3fnuz, "gfx950": torch.float8_e4m3fn}
# Page sizes of the caches each launcher is written for: vLLM-style paged decode
# (aiter's tests: 16 rows a block), the Triton MLA decode (64 rows, bf16).
_PA_BLOCK = 16
_MLA_BLOCK = 64
# gpt-oss's clamped SwiGLU (alpha, limit), which moe_gemm_a16w4 fuses.
_SWIGLU = (1.702, 7.0)
# The launcher modules each case needs, imported per target.
_LAUNCHERS = {
    "pa": "aiter.ops.triton.attention.pa_decode",
    "mla": "aiter.ops.triton.attention.mla",
    "extend": "aiter.ops.triton.attention.extend_attention",
    "logits": "aiter.ops.triton.attention.fp8_mqa_logits",
    "moe": "aiter.ops.triton.moe.moe_op",
    "moe_config": "aiter.ops.triton.utils.moe_config_utils",
    "mxfp4": "aiter.ops.triton.moe.moe_op_mxfp4",
    "a16w4": "aiter.ops.triton.moe.moe_op_gemm_a16w4",
    "routing": "aiter.ops.triton.moe.moe_routing.routing",
}


class AiterSourceError(ValueError):
    """The aiter source directory given is missing or is not a ROCm/aiter checkout."""


def aiter_root(src: str | os.PathLike[str]) -> Path:
    """The checkout holding `aiter/ops/triton`, or an error naming the flag."""
    root = Path(src).expanduser()
    if not root.is_dir():
        raise AiterSourceError(f"{_WHERE} {src}: no such directory (want a ROCm/aiter checkout)")
    if root.name == "aiter" and (root / "ops" / "triton").is_dir():
        root = root.parent  # the package directory itself was given
    if not (root / "aiter" / "ops" / "triton" / "__init__.py").is_file():
        raise AiterSourceError(
            f"{_WHERE} {src}: no aiter/ops/triton/__init__.py there (want a ROCm/aiter checkout)"
        )
    return root.resolve()


def _is_aiter(name: str) -> bool:
    return name == "aiter" or name.startswith("aiter.")


def _package(name: str, path: Path) -> types.ModuleType:
    """A package whose submodules load from `path`, its `__init__` not run."""
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    module.__file__ = None
    return module


def _stubs(root: Path, arch: str) -> dict[str, types.ModuleType]:
    """The stand-ins for what needs ROCm: the package, its dtypes, chip_info."""
    pkg = root / "aiter"
    aiter = _package("aiter", pkg)
    dtypes = types.ModuleType("aiter.dtypes")
    # The names aiter.ops.triton reads from aiter.dtypes (the real module builds
    # HIP enums at import); fp8 as its table picks per arch.
    dtypes.__dict__.update(
        fp8=_FP8[arch],
        fp4x2=getattr(torch, "float4_e2m1fn_x2", torch.uint8),
        fp8_e8m0=getattr(torch, "float8_e8m0fnu", torch.uint8),
        fp16=torch.float16,
        bf16=torch.bfloat16,
        fp32=torch.float32,
        i8=torch.int8,
        u8=torch.uint8,
        i32=torch.int32,
    )
    chip = types.ModuleType("aiter.jit.utils.chip_info")
    # What rocminfo would report (device_info.get_num_sms reads get_cu_num).
    chip.__dict__.update(
        get_gfx=lambda: arch, get_gfx_runtime=lambda: arch, get_cu_num=lambda: _CUS[arch]
    )
    utility = _package("aiter.utility", pkg / "utility")
    aiter.dtypes = utility.dtypes = dtypes
    return {
        "aiter": aiter,
        "aiter.dtypes": dtypes,
        "aiter.utility": utility,
        "aiter.utility.dtypes": dtypes,
        "aiter.jit": _package("aiter.jit", pkg / "jit"),
        "aiter.jit.utils": _package("aiter.jit.utils", pkg / "jit" / "utils"),
        "aiter.jit.utils.chip_info": chip,
    }


# (root, arch) -> aiter's modules as imported for that target (outside sys.modules).
_LOADED: dict[tuple[Path, str], dict[str, types.ModuleType]] = {}
# (root, arch) -> why a launcher module would not import there.
_IMPORT_ERRORS: dict[tuple[Path, str], dict[str, str]] = {}


def _import_launchers(root: Path, arch: str) -> None:
    """Import each launcher module for `arch` (the active driver reports it)."""
    errors = _IMPORT_ERRORS.setdefault((root, arch), {})
    for key, name in _LAUNCHERS.items():
        try:
            importlib.import_module(name)
        except Exception as exc:  # a launcher needing a GPU-only piece is a note
            errors[key] = f"{type(exc).__name__}: {exc}"[:200]


@contextlib.contextmanager
def aiter_sees(root: Path, arch: str) -> Iterator[dict[str, types.ModuleType]]:
    """Inside: `import aiter...` gives aiter's modules as loaded for `arch`; after,
    `sys.modules` and `sys.meta_path` are as they were (a real aiter put back)."""
    saved = {k: v for k, v in sys.modules.items() if _is_aiter(k)}
    meta_path = list(sys.meta_path)
    for name in saved:
        del sys.modules[name]
    key = (root, arch)
    try:
        if key not in _LOADED:
            sys.modules.update(_stubs(root, arch))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _import_launchers(root, arch)
        else:
            sys.modules.update(_LOADED[key])
        yield {k: v for k, v in sys.modules.items() if _is_aiter(k)}
    finally:
        # Keep what this target imported (lazy imports included) for its next case.
        _LOADED[key] = {k: v for k, v in sys.modules.items() if _is_aiter(k)}
        for name in _LOADED[key]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.meta_path[:] = meta_path


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """aiter warns per call where no tuned MoE config exists (the default is the
    finding) and where the gluon backend is absent (it falls back to Triton)."""
    log = logging.getLogger("AITER_TRITON")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _mod(key: str) -> types.ModuleType:
    """A launcher module of the target now loaded (inside `aiter_sees`)."""
    module = sys.modules.get(_LAUNCHERS[key])
    if module is None:
        why = next((e.get(key) for e in _IMPORT_ERRORS.values() if e.get(key)), "not loaded")
        raise RuntimeError(f"aiter's {_LAUNCHERS[key]} did not import: {why}")
    return module


# ---- attention -------------------------------------------------------------


def _paged_decode(hq: int, hkv: int, d: int, batch: int, ctx: int) -> None:
    """`paged_attention_decode` (vLLM-style paged decode, [blocks, kv heads, 16, d]
    caches): its V1 (one pass) or V2 (partitions + reduce) as it decides by ctx."""
    blocks = -(-ctx // _PA_BLOCK)
    cache = torch.empty(blocks, hkv, _PA_BLOCK, d, dtype=BF16)
    _mod("pa").paged_attention_decode(
        torch.empty(batch, hq, d, dtype=BF16),
        torch.empty(batch, hq, d, dtype=BF16),
        cache,
        cache,
        torch.full((batch,), ctx, dtype=torch.int32),
        torch.zeros(batch, blocks, dtype=torch.int32),
        0.1,
        ctx,
        _tl().bfloat16,
        k_scale=torch.tensor([1.0]),
        v_scale=torch.tensor([1.0]),
    )


def _mla_decode(hq: int, dqk: int, dv: int, batch: int, ctx: int) -> None:
    """The Triton `mla_decode_fwd` (bf16 latent cache [blocks, 64, 1, 576]): its
    segment count from the CU count, then its reduce kernel."""
    blocks = -(-ctx // _MLA_BLOCK)
    _mod("mla").mla_decode_fwd(
        torch.empty(batch, hq, dqk, dtype=BF16),
        torch.empty(blocks, _MLA_BLOCK, 1, dqk, dtype=BF16),
        torch.empty(batch, hq, dv, dtype=BF16),
        torch.arange(batch + 1, dtype=torch.int32),
        torch.full((batch,), ctx, dtype=torch.int32),
        ctx,
        torch.zeros(batch, blocks, dtype=torch.int32),
        0.1,
        dv,
        dqk - dv,
        True,
        None,
        None,
    )


def _decode(hq: int, hkv: int, dqk: int, dv: int, batch: int, ctx: int) -> None:
    if dqk != dv:  # MLA: the paged decode needs one head size for K and V
        _mla_decode(hq, dqk, dv, batch, ctx)
    else:
        _paged_decode(hq, hkv, dqk, batch, ctx)


def _extend(hq: int, hkv: int, dqk: int, dv: int, tokens: int) -> None:
    """`extend_attention_fwd` (page size 1, SGLang's layout) as SGLang's helper calls
    it: 64 query rows handed in, max_len_extend (the grid) from the matrix."""
    new = 64
    kbuf = torch.empty(64, hkv, dqk, dtype=BF16)
    vbuf = kbuf[..., :dv] if (hkv == 1 and dv < dqk) else torch.empty(64, hkv, dv, dtype=BF16)
    _mod("extend").extend_attention_fwd(
        torch.empty(new, hq, dqk, dtype=BF16),
        torch.empty(new, hkv, dqk, dtype=BF16),
        torch.empty(new, hkv, dv, dtype=BF16),
        torch.empty(new, hq, dv, dtype=BF16),
        kbuf,
        vbuf,
        torch.tensor([0, new], dtype=torch.int32),
        torch.tensor([0, 64], dtype=torch.int32),
        torch.zeros(64, dtype=torch.int32),
        None,
        True,
        None,
        tokens,
        0.1,
    )


def _indexer_fp8(heads: int, dim: int, rows: int, width: int) -> None:
    """`fp8_mqa_logits` (SGLang's ROCm DSA indexer): e4m3fn Q and gathered index
    keys, as SGLang hands them; on gfx942 aiter recasts them to fnuz itself."""
    fp8 = torch.float8_e4m3fn
    _mod("logits").fp8_mqa_logits(
        torch.zeros(rows, heads, dim, dtype=fp8),
        torch.zeros(width, dim, dtype=fp8),
        torch.ones(width),
        torch.empty(rows, heads),
        torch.zeros(rows, dtype=torch.int32),
        torch.full((rows,), width, dtype=torch.int32),
        clean_logits=False,
    )


# ---- MoE -------------------------------------------------------------------


def _tl() -> types.ModuleType:
    import triton.language as tl

    return tl


def _stack(experts: int, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    """One expert's weights standing for all (stride 0: nothing allocated); the
    kernels take the same specialization as for the real stack (0 divides by 16)."""
    return torch.empty(1, *shape, dtype=dtype).expand(experts, *shape)


def _sorted(tokens: int, topk: int, experts: int, block_m: int) -> tuple[torch.Tensor, ...]:
    """moe_align_block_size's outputs at the size it pads them to (vLLM's rule)."""
    padded = tokens * topk + experts * (block_m - 1)
    return (
        torch.empty(padded, dtype=torch.int32),
        torch.empty(-(-padded // block_m), dtype=torch.int32),
        torch.empty(1, dtype=torch.int32),
    )


def _moe_bf16(hidden: int, inter: int, topk: int, experts: int, tokens: int) -> None:
    """`fused_moe` (aiter's vLLM-derived kernel) for gate-up and down, with the
    config `get_optimal_moe_config` picks for bf16 at this token count."""
    config = _mod("moe_config").get_optimal_moe_config(BF16, M=tokens)
    ids = torch.zeros(tokens, topk, dtype=torch.int32)
    w = torch.ones(tokens, topk)
    sorted_ids, expert_ids, post = _sorted(tokens, topk, experts, config["BLOCK_SIZE_M"])
    fused_moe = _mod("moe").fused_moe
    for a, b, c, routed, k in (
        (torch.empty(tokens, hidden, dtype=BF16), _stack(experts, 2 * inter, hidden, dtype=BF16),
         torch.empty(tokens, topk, 2 * inter, dtype=BF16), False, topk),
        (torch.empty(tokens * topk, inter, dtype=BF16), _stack(experts, hidden, inter, dtype=BF16),
         torch.empty(tokens, topk, hidden, dtype=BF16), True, 1),
    ):  # fmt: skip
        fused_moe(a, b, c, None, None, None, w, ids, sorted_ids, expert_ids, post, routed, k,
                  _tl().bfloat16, False, False, False, None, config)  # fmt: skip


def _moe_a4w4(hidden: int, inter: int, topk: int, experts: int, tokens: int) -> None:
    """`fused_moe_mxfp4`: MXFP4 activations and weights (e2m1 x e2m1 scaled dot),
    gate-up and down, with the config `get_optimal_moe_config` picks for MX_FP4."""
    config = _mod("moe_config").get_optimal_moe_config(BF16, use_mxfp4=True, M=tokens)
    ids = torch.zeros(tokens, topk, dtype=torch.int32)
    w = torch.ones(tokens, topk)
    sorted_ids, expert_ids, post = _sorted(tokens, topk, experts, config["BLOCK_SIZE_M"])
    u8 = torch.uint8
    for rows, n, k, out, routed, top in (
        (tokens, 2 * inter, hidden, torch.empty(tokens, topk, 2 * inter, dtype=BF16), False, topk),
        (tokens * topk, hidden, inter, torch.empty(tokens, topk, hidden, dtype=BF16), True, 1),
    ):
        _mod("mxfp4").fused_moe_mxfp4(
            torch.empty(rows, k // 2, dtype=u8),
            _stack(experts, n, k // 2, dtype=u8),
            out,
            torch.ones(1),
            torch.ones(experts),
            torch.empty(rows, k // 32, dtype=u8),
            _stack(experts, n, k // 32, dtype=u8),
            w, ids, sorted_ids, expert_ids, post, routed, top, False, False, config,
            _tl().bfloat16,
        )  # fmt: skip


def _moe_a16w4(
    hidden: int, inter: int, topk: int, experts: int, tokens: int, gpt_oss: bool
) -> None:
    """`moe_gemm_a16w4` (bf16 activations, MXFP4 weights, the gpt-oss matmul_ogs
    flow): aiter's own `routing` for the block size and indices, then gate-up
    (gathered; gpt-oss: SwiGLU and bias fused) and down (scattered, gammas)."""
    routing = _mod("routing").routing
    rdata, gather, scatter = routing(torch.empty(tokens, experts, dtype=BF16), topk)
    gemm = _mod("a16w4").moe_gemm_a16w4
    u8 = torch.uint8

    def weights(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Column-major along K as downcast_to_mxfp leaves them; full size (virtual,
        # never touched): the launcher reads the extent for its index width.
        return (
            torch.empty(experts, n, k // 2, dtype=u8).transpose(1, 2),
            torch.empty(experts, n, k // 32, dtype=u8).transpose(1, 2),
        )

    w1, s1 = weights(2 * inter, hidden)
    bias1 = torch.empty(experts, 2 * inter) if gpt_oss else None
    alpha, limit = _SWIGLU
    gemm(torch.empty(tokens, hidden, dtype=BF16), w1, None, s1, bias=bias1, routing_data=rdata,
         gather_indx=gather, apply_swiglu=gpt_oss, alpha=alpha, limit=limit)  # fmt: skip
    w2, s2 = weights(hidden, inter)
    bias2 = torch.empty(experts, hidden) if gpt_oss else None
    gemm(torch.empty(tokens * topk, inter, dtype=BF16), w2, None, s2, bias=bias2,
         routing_data=rdata, scatter_indx=scatter, gammas=rdata.gate_scal)  # fmt: skip


# ---- the matrix ----------------------------------------------------------------

# Our MoE ops with an aiter launcher beside them (`_moe`).
MOE_WEIGHTS = ("bf16", "a4w4", "mxfp4")
PEER_WHAT = {
    "attention.decode": "paged_attention_decode (GQA/MHA), Triton mla_decode_fwd (MLA)",
    "attention.extend": "extend_attention_fwd",
    "attention.indexer": "fp8_mqa_logits (gathered keys, not the paged cache)",
    "moe.fused bf16": "fused_moe",
    "moe.fused a4w4": "fused_moe_mxfp4 (MXFP4 x MXFP4)",
    "moe.fused mxfp4": "moe_gemm_a16w4 (SwiGLU fused only for gpt-oss)",
}
# The quick peer matrix: one case per op, on models our quick matrix has.
QUICK_PEERS = {
    ("Llama-3.1-8B", "attention.decode"),
    ("DeepSeek-V3 MLA 16 heads (tp8)", "attention.decode"),
    ("Llama-3.1-8B", "attention.extend"),
    ("DeepSeek-V3.2 indexer FP8", "attention.indexer"),
    ("DeepSeek-V3", "moe.fused bf16"),
    ("DeepSeek-V3", "moe.fused a4w4"),
    ("DeepSeek-V3", "moe.fused mxfp4"),
    ("gpt-oss-120b swiglu+bias", "moe.fused mxfp4"),
}


def _moe(
    hidden: int, inter: int, topk: int, experts: int, tokens: int, weights: str,
    gpt_oss: bool = False,
) -> None:  # fmt: skip
    """aiter's launches beside our `moe.fused <weights>` (one of MOE_WEIGHTS;
    gpt-oss: its SwiGLU and bias fused into moe_gemm_a16w4)."""
    if weights == "mxfp4":
        _moe_a16w4(hidden, inter, topk, experts, tokens, gpt_oss)
    elif weights == "a4w4":
        _moe_a4w4(hidden, inter, topk, experts, tokens)
    else:
        _moe_bf16(hidden, inter, topk, experts, tokens)


def peer_cases(root: Path, arch: str, quick: bool = False) -> list[Case]:
    """aiter's launches for `arch` over our matrix, labelled like ours (none on
    NVIDIA targets: aiter's Triton kernels assume HIP)."""
    if arch not in TARGETS:
        return []
    out = attention_cases(quick, _decode, _extend) + indexer_fp8_cases(quick, _indexer_fp8)
    out += moe_cases(quick, _moe, MOE_WEIGHTS)
    out += moe_cases(quick, functools.partial(_moe, gpt_oss=True), ("mxfp4",), (GPT_OSS_MOE,))
    out = [c for c in out if (c.model, c.op) in QUICK_PEERS] if quick else out
    return [Case(c.model, c.op, c.size, functools.partial(_run, root, arch, c.run)) for c in out]


def _run(root: Path, arch: str, run: Callable[[], object]) -> None:
    """One case with aiter's modules for `arch` in place (they are imported on the
    first case, while `compiling_for(arch)` reports the target)."""
    with aiter_sees(root, arch), _quiet():
        run()


def source(src: str | os.PathLike[str]) -> Source:
    """aiter's Source for the audit, from a checkout (checked here)."""
    root = aiter_root(src)
    return Source(
        "aiter",
        lambda arch, quick: peer_cases(root, arch, quick),
        lambda arch, target: contextlib.nullcontext(),
    )


def import_errors() -> dict[str, dict[str, str]]:
    """Per target, the launcher modules that would not import, and why."""
    return {arch: dict(errs) for (_, arch), errs in _IMPORT_ERRORS.items() if errs}


def notes(src: str | os.PathLike[str] | None) -> list[str]:
    """Rows for the audit's output about aiter's peers."""
    if not src:
        return [
            "aiter: not installed here; pass --aiter-src DIR (a ROCm/aiter checkout) "
            "to compile its Triton kernels as peers"
        ]
    out = [
        f"aiter: Triton kernels from {src}, loaded without aiter's HIP modules "
        "(stand-ins for its package, aiter.dtypes and chip_info); "
        f"compiled for {', '.join(TARGETS)} only (its kernels assume HIP)",
        "aiter peers: " + "; ".join(f"{op}: {what}" for op, what in PEER_WHAT.items()),
        "aiter not compiled: sparse MLA decode (attention.sparse): no Triton launcher "
        "SGLang's DSA backend calls; EP permute, MXFP4 linear: no Triton peer paired",
    ]
    for arch, errs in import_errors().items():
        out += [f"aiter {arch}: {key} did not import: {why}" for key, why in errs.items()]
    return out
