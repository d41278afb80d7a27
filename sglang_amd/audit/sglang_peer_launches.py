"""SGLang 0.5.23's own Triton kernels over our model matrix: the audit's peers.

Where it sits: `sglang-amd audit --peers` runs these cases inside
`compile_for_target.compiling_for(arch)` and `sglang_sees(arch)` (below), beside
`audit.launches`; each case carries the same (model, op, size) label as ours so
`audit.peer_compare` can pair the rows. Each calls SGLang's real launcher
(`decode_attention_fwd`, `extend_attention_fwd`, `triton_sparse_mla_decode_splitk`,
`invoke_fused_moe_kernel` with
the config `try_get_optimal_moe_config` picks) on small CPU tensors whose
per-row shapes are the model's, with the arguments SGLang's Triton attention
backend / fused-MoE runner would pass (mirrored here, see each helper).

SGLang decides launch parameters from module globals computed at import
(`_is_hip = is_hip()`, ...) and from device queries. On this CPU machine they
all say "no GPU", so `sglang_sees(arch)` patches each one, for the duration of
one target, to what it reads on that GPU. Every patch is listed in `_patches()`
with why, the device answers in `_DEVICE`. The serve this stands for: SGLang's
defaults (page size 1, CUDA graphs on, so HIP decode takes lean attention where
`lean_capture_policy` says; SGLANG_MLA_DECODE_TUNE off), each decode case's
context as `--context-length` (it sizes MLA's max_kv_splits), the tuned MoE
config file for (E, N, device) where SGLang ships one, else its default.
aiter's Triton kernels are peers too, from a checkout given at run time
(`audit.aiter_peer_launches`, `--aiter-src`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import types
from collections.abc import Iterator
from unittest import mock

import torch
import triton.language as tl
from sglang.kernels.ops.attention import decode_attention as _da
from sglang.kernels.ops.attention import extend_attention as _ea
from sglang.kernels.ops.attention.dsa import triton_sparse_mla as _tsm
from sglang.kernels.ops.attention.dsa import triton_sparse_mla_decode as _tsmd
from sglang.kernels.ops.moe import fused_moe_triton_kernels as _fk
from sglang.srt.layers.moe.moe_runner.triton_utils import fused_moe_triton_config as _fc

from sglang_amd.audit.compile_audit import Source
from sglang_amd.audit.launches import (
    BF16,
    MOE,
    MOE_TOKENS,
    SPARSE_TOPK,
    Case,
    attention_cases,
    sparse_cases,
)
from sglang_amd.bench.sglang_peers import sglang_extend, triton_backend_max_kv_splits
from sglang_amd.target_info import SHARED_MEMORY_BYTES

# What each GPU answers to SGLang's device queries: CUs/SMs, torch's device name
# (the key of SGLang's tuned fused-MoE config files), CUDA capability.
_DEVICE: dict[str, dict] = {
    "gfx942": {"cores": 304, "name": "AMD Instinct MI300X", "capability": None},
    "gfx950": {"cores": 256, "name": "AMD Instinct MI355X", "capability": None},
    "sm_90": {"cores": 132, "name": "NVIDIA H100 80GB HBM3", "capability": (9, 0)},
    "sm_100": {"cores": 148, "name": "NVIDIA B200", "capability": (10, 0)},
}

# LDS / shared memory per workgroup / block (what SGLang's sparse MLA asks the
# driver for to size its K tile): CDNA3 64 KB, CDNA4 160 KB, Hopper/Blackwell 227 KB.
SHARED_MEMORY = SHARED_MEMORY_BYTES

# Global experts per model: SGLang's MoE config files are keyed by E and the
# per-rank intermediate N (the launch itself does not grow with E).
_EXPERTS = {"Qwen3-235B-A22B": 128, "DeepSeek-V3": 256, "gpt-oss-120b": 128}
# GPTQ/AWQ group size for SGLang's int4 w4a16 MoE: 32, the MXFP4 block ours reads.
_W4A16_GROUP = 32


def _patches(arch: str) -> list[tuple[types.ModuleType, str, object, str]]:
    """(module, global, value for `arch`, why) for every import-time decision."""
    amd = arch.startswith("gfx")
    dev = _DEVICE[arch]
    exec_cfg = types.SimpleNamespace(
        deterministic=types.SimpleNamespace(enable_deterministic_inference=False)
    )
    return [
        (_da, "_is_hip", amd, "HIP: stage-1 BLOCK_N 8/16, 1 warp, waves_per_eu, lean path"),
        (_da, "_is_gfx1250", False, "no audited target is gfx1250"),
        (_da, "_NUM_CU", dev["cores"], "lean decode's persistent grid = CU count"),
        (_da, "is_gfx95_supported", lambda: arch == "gfx950", "MLA tune gate (env-off)"),
        (_ea, "_is_hip", amd, "HIP: 64x64 tiles, waves_per_eu=1, STORE_TRANSPOSE"),
        (_ea, "_is_cuda", not amd, "CUDA: tiles chosen by capability"),
        (_ea, "CUDA_CAPABILITY", dev["capability"], "set at import only when CUDA"),
        (_ea, "_is_gfx95", arch == "gfx950", "gfx950: 128x64 tiles on 8 warps (d <= 256)"),
        (_ea, "_is_gfx1250", False, "no audited target is gfx1250"),
        (_fk, "_is_hip", amd, "fused MoE kernel's HIP branches"),
        (_fk, "_is_cuda", not amd, "swap_ab and quant helpers (fp8 only)"),
        (_fk, "is_arch_support_pdl", lambda: not amd, "sm_90+: USE_GDC / launch_pdl"),
        (_fc, "_is_hip", amd, "default-config num_stages (fp8 only)"),
        (_fc, "get_device_name", lambda device_id=0: dev["name"], "tuned config file key"),
        (_fc, "get_exec", lambda: exec_cfg, "no server published its config here"),
    ]


def backend_max_kv_splits(arch: str, mla: bool, context_len: int) -> int:
    """The triton attention backend's max_kv_splits on `arch`'s GPU."""
    cores = _DEVICE[arch]["cores"]
    amd = arch.startswith("gfx")
    return triton_backend_max_kv_splits(amd, cores, mla, context_len, arch == "gfx942")


@contextlib.contextmanager
def sglang_sees(arch: str) -> Iterator[None]:
    """Inside: SGLang's launchers decide as they would on `arch`'s GPU."""
    with contextlib.ExitStack() as stack:
        for module, name, value, _why in _patches(arch):
            stack.enter_context(mock.patch.object(module, name, value, create=True))
        # Cached per (E, N, dtype), not per device: clear so each target reads its own file.
        _fc.get_moe_configs.cache_clear()
        stack.callback(_fc.get_moe_configs.cache_clear)
        # No tuned file for most of the matrix: SGLang warns per shape; the default is the finding.
        log = logging.getLogger(_fc.__name__)
        stack.callback(log.setLevel, log.level)
        log.setLevel(logging.ERROR)
        yield


def notes() -> list[str]:
    """Rows for the audit's output about SGLang's peers (aiter's are
    `aiter_peer_launches.notes()`: from a checkout, not from SGLang)."""
    return [f"sglang peers: {op}: {what}" for op, what in PEER_WHAT.items()]


def _decode(arch: str, hq: int, hkv: int, dqk: int, dv: int, batch: int, ctx: int) -> None:
    mla = dqk != dv
    splits = backend_max_kv_splits(arch, mla, ctx)
    q = torch.empty(batch, hq, dqk, dtype=BF16)
    k = torch.empty(64, hkv, dqk, dtype=BF16)
    v = k[..., :dv] if mla else torch.empty(64, hkv, dv, dtype=BF16)
    o = torch.empty(batch, hq, dv, dtype=BF16)
    indptr = torch.arange(batch + 1, dtype=torch.int32)
    # Zero strides stand in for the (batch, heads, splits, dv) fp32 buffer: a 0 and
    # the real strides take the same Triton specialization (divisible by 16).
    logits = torch.empty(1, 1, 1, dv).expand(batch, hq, splits, dv)
    lse = torch.empty(1, 1, 1).expand(batch, hq, splits)
    # Lean decode (HIP only): the backend decides at CUDA-graph capture (the default
    # serve) with `lean_capture_policy` on (heads, group, batch, mla).
    lean = arch.startswith("gfx") and _da.lean_capture_policy(hq, hq // hkv, batch, mla)
    programs, _, _ = _da._lean_decode_launch_params(hkv, hq // hkv)
    _da.decode_attention_fwd(
        q,
        k,
        v,
        o,
        indptr,
        torch.zeros(batch, dtype=torch.int32),
        logits,
        lse,
        torch.full((batch,), splits, dtype=torch.int32),
        splits,
        0.1,
        1.0,
        1.0,
        has_mla=mla,
        use_pdl=not arch.startswith("gfx"),
        page_size=1,
        enable_lean=lean,
        lean_Mp=torch.empty(programs, _da._LEAN_BLOCK_M),
        lean_Lp=torch.empty(programs, _da._LEAN_BLOCK_M),
        lean_Op=torch.empty(programs, _da._LEAN_BLOCK_M, dv),
        lean_locks=torch.zeros(programs, dtype=torch.int32),
        uneven_batch=torch.zeros(1, dtype=torch.int32),
    )


def _sparse(arch: str, hq: int, hkv: int, dqk: int, dv: int, rows: int) -> None:
    """`triton_sparse_mla_decode_splitk` (SGLang's DSA backend, bf16 KV) for `rows`
    query tokens: its CU count and K tile as on `arch`, a backend-owned workspace."""
    # Real strides: this launcher passes them as constexprs (a 0 would be another
    # kernel). Never touched (compiled, not run), so the pages stay unallocated.
    q = torch.empty(rows, hq, dqk, dtype=BF16)
    kv = torch.empty(64, 1, dqk, dtype=BF16)
    indices = torch.empty(rows, 1, SPARSE_TOPK, dtype=torch.int32)
    block_k = _tsm._block_k_for_shared_memory(dqk, 2, SHARED_MEMORY[arch])
    with (
        mock.patch.object(_tsmd, "_cu_count", lambda device=None: _DEVICE[arch]["cores"]),
        mock.patch.object(_tsmd, "_sparse_mla_block_k", lambda kv: block_k),
    ):
        _tsmd.triton_sparse_mla_decode_splitk(
            q[..., :dv], q[..., dv:], kv, indices, 0.1, d_v=dv, workspace=[]
        )


def _extend(hq: int, hkv: int, dqk: int, dv: int, tokens: int) -> None:
    new = 64  # query rows handed in; max_len_extend (the grid) carries the size
    q = torch.empty(new, hq, dqk, dtype=BF16)
    k = torch.empty(new, hkv, dqk, dtype=BF16)
    v = torch.empty(new, hkv, dv, dtype=BF16)
    kbuf = torch.empty(64, hkv, dqk, dtype=BF16)
    vbuf = kbuf[..., :dv] if (hkv == 1 and dv < dqk) else torch.empty(64, hkv, dv, dtype=BF16)
    o = torch.empty(new, hq, dv, dtype=BF16)
    qo_indptr = torch.tensor([0, new], dtype=torch.int32)
    sglang_extend(
        q, k, v, o, kbuf, vbuf, qo_indptr, torch.tensor([0, 64], dtype=torch.int32),
        torch.zeros(64, dtype=torch.int32), [tokens], 0.1,
    )  # fmt: skip


def moe_configs(
    model: str, hidden: int, inter: int, topk: int, tokens: int, w4a16: bool
) -> tuple[dict, dict]:
    """The gate-up and down configs `try_get_optimal_moe_config` resolves for the real
    (E, N) and token count, as `_prepare_fused_moe_run` (the down one falls back to
    the gate-up one), without USE_TMA: TMA only where a tuned file asks for it and
    the device has it."""
    experts, pack = _EXPERTS[model], 2 if w4a16 else 1
    config, (down, _) = _fc.try_get_optimal_moe_config(
        (experts, 2 * inter, hidden // pack),
        (experts, hidden, inter // pack),
        topk,
        "int4_w4a16" if w4a16 else None,
        tokens,
        return_down_config=True,
    )
    config = {k: v for k, v in config.items() if k != "USE_TMA"}
    return config, {k: v for k, v in (down or config).items() if k != "USE_TMA"}


def moe_quant(w4a16: bool, compute_type: object) -> dict:
    """`invoke_fused_moe_kernel`'s quantization arguments: bf16/fp16 weights, or
    SGLang's int4 w4a16 (GPTQ/AWQ) with group-32 scales."""
    return dict(
        compute_type=compute_type,
        use_fp8_w8a8=False,
        use_int8_w8a8=False,
        use_int8_w8a16=False,
        use_int4_w4a16=w4a16,
        per_channel_quant=False,
        block_shape=[0, _W4A16_GROUP] if w4a16 else None,
    )


def _moe(model: str, hidden: int, inter: int, topk: int, tokens: int, w4a16: bool) -> None:
    """`fused_experts_impl`'s two `invoke_fused_moe_kernel` calls (gate-up, down)
    with the config `try_get_optimal_moe_config` resolves, as `_prepare_fused_moe_run`."""
    E, local = _EXPERTS[model], 2
    config, down = moe_configs(model, hidden, inter, topk, tokens, w4a16)
    bm = config["BLOCK_SIZE_M"]
    n = tokens * topk
    padded = n * bm if n < E + 1 else n + (E + 1) * (bm - 1)
    padded = (padded + 3) // 4 * 4
    sorted_ids = torch.empty(padded, dtype=torch.int32)
    expert_ids = torch.empty(-(-padded // bm), dtype=torch.int32)
    post = torch.empty(1, dtype=torch.int32)
    ids = torch.zeros(tokens, topk, dtype=torch.int32)
    w = torch.ones(tokens, topk)
    x = torch.empty(tokens, hidden, dtype=BF16)
    cache1 = torch.empty(n, 2 * inter, dtype=BF16)
    cache2 = torch.empty(n, inter, dtype=BF16)
    cache3 = torch.empty(tokens, topk, hidden, dtype=BF16)
    if w4a16:
        u8 = torch.uint8
        w1 = torch.empty(local, 2 * inter, hidden // 2, dtype=u8)
        w2 = torch.empty(local, hidden, inter // 2, dtype=u8)
        s1 = torch.empty(local, 2 * inter, hidden // _W4A16_GROUP, dtype=BF16)
        s2 = torch.empty(local, hidden, inter // _W4A16_GROUP, dtype=BF16)
    else:
        w1 = torch.empty(local, 2 * inter, hidden, dtype=BF16)
        w2 = torch.empty(local, hidden, inter, dtype=BF16)
        s1 = s2 = None
    quant = moe_quant(w4a16, tl.bfloat16)
    _fk.invoke_fused_moe_kernel(
        x,
        w1,
        None,
        cache1,
        None,
        s1,
        None,
        w,
        ids,
        sorted_ids,
        expert_ids,
        post,
        False,
        topk,
        config,
        **quant,
    )
    _fk.invoke_fused_moe_kernel(
        cache2,
        w2,
        None,
        cache3,
        None,
        s2,
        None,
        w,
        ids,
        sorted_ids,
        expert_ids,
        post,
        True,
        1,
        down,
        router_topk=topk,
        **quant,
    )


# The quick peer matrix (`make test`): one case per op, SGLang's GQA decode
# (grouped stage 1 + stage 2), MHA extend and the bf16 fused MoE kernel.
QUICK_PEERS = {
    ("Llama-3.1-8B", "attention.decode"),
    ("Llama-3.1-8B", "attention.extend"),
    ("DeepSeek-V3", "moe.fused bf16"),
}

# Our op each SGLang MoE path stands beside: its int4 GPTQ/AWQ w4a16 kernel is
# the nearest peer of our MXFP4 weight-only path (no MXFP4 fused_moe_kernel exists).
MOE_PEERS = (("bf16", False), ("mxfp4", True))
PEER_WHAT = {
    "moe.fused mxfp4": "SGLang int4 w4a16 (GPTQ/AWQ kernel, group 32)",
}


def peer_cases(arch: str, quick: bool = False) -> list[Case]:
    """SGLang's launches for `arch` over our matrix, labelled like ours."""
    out = attention_cases(quick, functools.partial(_decode, arch), _extend)
    out += sparse_cases(quick, functools.partial(_sparse, arch))
    for model, hidden, inter, topk, *_ in MOE:
        for ours, w4a16 in MOE_PEERS:
            for t in MOE_TOKENS[1:2] if quick else MOE_TOKENS:
                out.append(
                    Case(
                        model,
                        f"moe.fused {ours}",
                        f"{t} tokens",
                        lambda a=(model, hidden, inter, topk, t, w4a16): _moe(*a),
                    )
                )
    return [c for c in out if (c.model, c.op) in QUICK_PEERS] if quick else out


SOURCE = Source("sglang", peer_cases, lambda arch, target: sglang_sees(arch))
