"""SGLang 0.5.23's own kernels under the traffic counter: the traffic audit's peers.

Where it sits: `sglang-amd audit --traffic --peers` asks `peer_for(case)` here for
each case of `audit/traffic_cases.py`; `audit/traffic_audit.py` counts what it
returns the way it counts ours (same counter, same scaled-down shape, same
ideal) inside `sglang_sees(arch)`, so SGLang decides its launches as on that GPU
(`audit/sglang_peer_launches.py` holds those patches and the backend rules the
compile audit already mirrors).

What runs, per op, as SGLang's triton attention backend and fused-MoE runner
would on the GPU (a CUDA-graph serve, SGLang's defaults):

- decode: `decode_attention_fwd` (grouped stage 1 + stage 2; lean decode on HIP
  where `lean_capture_policy` bakes it, its programs run last-first:
  `traffic.programs_in_reverse`). The splits per request are what the
  backend computes for the *real* batch, heads and context with its own
  `get_num_kv_splits_triton` kernel (run here, uncounted: once per forward, not
  per layer); the buffers are sized by its `max_kv_splits`.
- extend: `extend_attention_fwd` on the new tokens (no prefix).
- sparse (DSA): `triton_sparse_mla_decode_splitk`, SGLang's Triton sparse MLA
  decode (bf16: it refuses float16). Triton 3.8's interpreter cannot run its
  kernels (an InterpreterError, said in the row).
- MoE: `_fused_moe_kernel_sequence`'s launches: align, the gate-up
  `invoke_fused_moe_kernel`, SiLU-and-mul, the down `invoke_fused_moe_kernel`
  (router weight applied), then the top-k sum. The two GEMMs and the Triton sum
  run for real with the config `try_get_optimal_moe_config` picks for the real
  shape. Align, SiLU-and-mul and the non-Triton sums are sgl_kernel (CUDA/HIP)
  or torch.compile ops this CPU cannot run: `traffic.one_launch` counts each as
  the one kernel it is (two for sgl_kernel's align above 64 experts or 1,024
  slots, as `moe_align_kernel.cu` splits it) reading its inputs and writing its
  outputs once. MXFP4 weight-only stands beside SGLang's int4 w4a16 GPTQ/AWQ
  path (group 32); A4W4 and the dense MXFP4 linear have no SGLang Triton peer.

Imports sglang (hence the name); only `cli.py` imports this module.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import torch
import triton.language as tl
from sglang.kernels.ops.attention import decode_attention as _da
from sglang.kernels.ops.attention import extend_attention as _ea
from sglang.kernels.ops.attention import metadata as _meta
from sglang.kernels.ops.attention.dsa import triton_sparse_mla as _tsm
from sglang.kernels.ops.attention.dsa import triton_sparse_mla_decode as _tsmd
from sglang.kernels.ops.moe import fused_moe_triton_kernels as _fk

from sglang_amd.audit import traffic_cases as tc
from sglang_amd.audit import traffic_ideal
from sglang_amd.audit.sglang_peer_launches import (
    _DEVICE,
    _EXPERTS,
    _W4A16_GROUP,
    SHARED_MEMORY,
    backend_max_kv_splits,
    moe_configs,
    moe_quant,
    sglang_sees,
)
from sglang_amd.audit.traffic import interpreted_kernels, one_launch, programs_in_reverse
from sglang_amd.bench.sglang_peers import sglang_extend
from sglang_amd.target_info import Target

__all__ = ["NO_PEER", "PeerBuild", "lookup", "peer_context", "peer_for"]

# The peers' tiles are float16: the same bytes as the bfloat16 ours run, and
# Triton 3.8's interpreter computes bf16 `tl.dot` wrongly (see triton_utils.mma,
# which our kernels use and SGLang's do not), so the outputs can be checked.
F16 = torch.float16
PeerBuild = Callable[[Target], tc.Prepared]

# Our ops with no SGLang Triton kernel to stand beside (said in the table).
NO_PEER = {
    "attention.indexer": "SGLang's indexer scores with DeepGEMM (CUDA) or aiter (ROCm) fp8 kernels, not Triton",
    "moe.fused a4w4": "SGLang has no MXFP4-activation fused MoE Triton kernel",
    "quant.mxfp4_linear w4a16": "SGLang has no MXFP4 dense Triton GEMM",
    "quant.mxfp4_linear a4w4": "SGLang has no MXFP4 dense Triton GEMM",
}
# sgl_kernel's align: one kernel in its small-batch mode, else align + count-and-sort.
_ALIGN_SMALL_SLOTS, _ALIGN_SMALL_EXPERTS = 1024, 64
# CUDA's Triton align for tiny batches (moe_align_block_size.py: SMALL_NUMEL_LIMIT).
_CUDA_SMALL_NUMEL = 64
# fused_moe.py `_use_moe_sum_reduce_torch_compile`: torch.compile'd sum up to 32 tokens.
_TORCH_COMPILE_SUM_TOKENS = 32


_randn = functools.partial(tc.randn, dtype=F16)


def backend_splits(arch: str, batch: int, hq: int, hkv: int, ctx: int, mla: bool) -> int:
    """The splits SGLang's triton backend gives each of `batch` requests of `ctx`
    tokens (`TritonAttnBackend.get_num_kv_splits`, its own kernel, interpreted)."""
    max_splits = backend_max_kv_splits(arch, mla, ctx)
    out = torch.empty(batch, dtype=torch.int32)
    _meta.get_num_kv_splits_triton[(1,)](
        out,
        torch.full((batch,), ctx, dtype=torch.int32),
        batch,
        1,
        hq,
        hkv,
        max_splits,
        _DEVICE[arch]["cores"],
        MAX_NUM_SEQ=max(256, 1 << (batch - 1).bit_length()),
    )
    return int(out[0])


def _decode(model: tuple, batch: int, ctx: int, arch: str) -> PeerBuild:
    _, hq, hkv, dqk, dv = model
    mla = hkv == 1 and dv < dqk
    group = hq // hkv

    def build(target: Target) -> tc.Prepared:
        max_splits = backend_max_kv_splits(arch, mla, ctx)
        splits = backend_splits(arch, batch, hq, hkv, ctx, mla)
        lean = arch.startswith("gfx") and _da.lean_capture_policy(hq, group, batch, mla)
        q = _randn(1, group, dqk)
        k = _randn(ctx, 1, dqk)
        v = k[..., :dv] if mla else _randn(ctx, 1, dv)
        out = torch.empty(1, group, dv, dtype=F16)
        indptr = torch.tensor([0, ctx], dtype=torch.int32)
        indices = torch.arange(ctx, dtype=torch.int32)
        logits = torch.empty(1, group, max_splits, dv)
        lse = torch.empty(1, group, max_splits)
        # The backend's metadata (splits, the uneven flag): built once per forward.
        per_request = torch.full((1,), splits, dtype=torch.int32)
        uneven = torch.zeros(1, dtype=torch.int32)
        programs, _, _ = _da._lean_decode_launch_params(1, group)
        lean_bufs = dict(
            lean_Mp=torch.empty(programs, _da._LEAN_BLOCK_M),
            lean_Lp=torch.empty(programs, _da._LEAN_BLOCK_M),
            lean_Op=torch.empty(programs, _da._LEAN_BLOCK_M, dv),
            lean_locks=torch.zeros(programs, dtype=torch.int32),
        )

        def run() -> object:
            order = programs_in_reverse() if lean else contextlib.nullcontext()
            with order:
                _decode_call()
            return out

        def _decode_call() -> None:
            _da.decode_attention_fwd(
                q,
                k,
                v,
                out,
                indptr,
                indices,
                logits,
                lse,
                per_request,
                max_splits,
                0.1,
                1.0,
                1.0,
                has_mla=mla,
                page_size=1,
                enable_lean=lean,
                uneven_batch=uneven,
                **lean_bufs,
            )

        named = {"q": q, "kv" if mla else "k": k, "out": out}
        if not mla:
            named["v"] = v
        prepared = tc.Prepared(run, named, traffic_ideal.attention(q, k, v, [ctx], dv))
        # Lean's persistent grid shares out the work it is given: here one request's.
        how = "lean over 1 request, " if lean else ""
        prepared.note = f"{how}{splits} splits of {max_splits}"
        return prepared

    return build


def _sparse(model: tuple, rows: int, arch: str) -> PeerBuild:
    """SGLang's Triton sparse MLA decode (`triton_sparse_mla_decode_splitk`, its DSA
    backend's bf16 path; its split partials are bf16): indices are pool rows."""
    _, hq, _, dqk, dv = model

    def build(target: Target) -> tc.Prepared:
        g = torch.Generator().manual_seed(rows)
        # bf16: its launcher refuses float16 (the interpreter's bf16 dot values are
        # wrong, its bytes are not; this peer's output is not checked).
        q = _randn(1, hq, dqk, dtype=torch.bfloat16)
        kv = _randn(tc.SPARSE_CONTEXT, 1, dqk, dtype=torch.bfloat16)
        chosen = torch.randperm(tc.SPARSE_CONTEXT, generator=g)[: tc.SPARSE_TOPK]
        indices = chosen.int().view(1, 1, -1)
        cores, lds = _DEVICE[arch]["cores"], SHARED_MEMORY[arch]
        block_k = _tsm._block_k_for_shared_memory(dqk, kv.element_size(), lds)
        # The launcher sizes its split count for the real batch: `rows` query tokens.
        per_row_cores = max(1, cores // rows)
        patches = (
            mock.patch.object(_tsmd, "_cu_count", lambda device=None: per_row_cores),
            mock.patch.object(_tsmd, "_sparse_mla_block_k", lambda kv: block_k),
        )
        result: dict[str, torch.Tensor] = {}

        def run() -> object:
            with patches[0], patches[1]:
                # A backend-owned workspace, as SGLang's DSA backend passes (the
                # default one is keyed by the CUDA stream).
                result["out"] = _tsmd.triton_sparse_mla_decode_splitk(
                    q[..., :dv], q[..., dv:], kv, indices, 0.1, d_v=dv, workspace=[]
                )
            return result["out"][0]

        ideal = traffic_ideal.attention(q, kv, kv[..., :dv], [tc.SPARSE_TOPK], dv)
        prepared = tc.Prepared(run, {"q": q, "kv": kv, "topk": indices}, ideal)
        prepared.note = f"BLOCK_K {block_k}, CUs {per_row_cores} per row"
        return prepared

    return build


def _extend(model: tuple, tokens: int) -> PeerBuild:
    def build(target: Target) -> tc.Prepared:
        q, k, v, out, named, ideal = tc.extend_inputs(model, tokens, F16)
        no_prefix = torch.zeros(2, dtype=torch.int32)
        no_slots = torch.zeros(0, dtype=torch.int32)
        qo_indptr = torch.tensor([0, tokens], dtype=torch.int32)

        def run() -> object:
            # The pool (k, v) is never read: no prefix.
            sglang_extend(q, k, v, out, k, v, qo_indptr, no_prefix, no_slots, [tokens], 0.1)
            return out

        return tc.Prepared(run, named, ideal)

    return build


def _align(ids: torch.Tensor, experts: int, block_m: int) -> tuple[torch.Tensor, ...]:
    """SGLang's `moe_align_block_size` layout: slots grouped by expert (E+1 buckets,
    the last for -1), each group padded to `block_m` with the sentinel numel."""
    flat = ids.flatten().long()
    numel = flat.numel()
    rows, blocks = [], []
    for e in range(experts):
        slots = torch.nonzero(flat == e).flatten()
        if slots.numel() == 0:
            continue
        pad = -slots.numel() % block_m
        rows.append(torch.cat([slots, torch.full((pad,), numel, dtype=torch.long)]))
        blocks += [e] * ((slots.numel() + pad) // block_m)
    sorted_ids = torch.cat(rows).to(torch.int32)
    return (
        sorted_ids,
        torch.tensor(blocks, dtype=torch.int32),
        torch.tensor([sorted_ids.numel()], dtype=torch.int32),
    )


def _align_launches(arch: str, slots: int, experts: int) -> int:
    buckets = experts + 1
    if not arch.startswith("gfx") and slots <= _CUDA_SMALL_NUMEL and buckets > 64:
        return 1  # moe_align_small_numel (Triton, one program)
    small = slots < _ALIGN_SMALL_SLOTS and buckets <= _ALIGN_SMALL_EXPERTS
    return 1 if small else 2


def _sum_is_triton(arch: str, tokens: int) -> bool:
    """`moe_combine_topk`: HIP sums with Triton above 32 tokens (torch.compile below);
    CUDA with Triton up to 32 tokens where PDL exists (sm_90+), sgl_kernel above."""
    small = tokens <= _TORCH_COMPILE_SUM_TOKENS
    return (not small) if arch.startswith("gfx") else small


def _moe(spec: tuple, tokens: int, w4a16: bool, arch: str) -> PeerBuild:
    model, experts, topk, hidden, inter, (run_e, run_h, run_i) = spec
    run_t = max(1, tokens * run_e // experts)

    def build(target: Target) -> tc.Prepared:
        config, down = moe_configs(model, hidden, inter, topk, tokens, w4a16)
        x = _randn(run_t, run_h)
        weights, ids = tc._routing(run_t, run_e, topk)
        sorted_ids, expert_ids, post = _align(ids, run_e, config["BLOCK_SIZE_M"])
        if w4a16:
            u8 = torch.uint8
            g = torch.Generator().manual_seed(7)
            tensors = {
                "w13": torch.randint(0, 256, (run_e, 2 * run_i, run_h // 2), generator=g, dtype=u8),
                "w13_scale": _randn(run_e, 2 * run_i, run_h // _W4A16_GROUP) * 0.01,
                "w2": torch.randint(0, 256, (run_e, run_h, run_i // 2), generator=g, dtype=u8),
                "w2_scale": _randn(run_e, run_h, run_i // _W4A16_GROUP) * 0.01,
            }
            s1, s2 = tensors["w13_scale"], tensors["w2_scale"]
        else:
            tensors = {
                "w13": _randn(run_e, 2 * run_i, run_h) * 0.1,
                "w2": _randn(run_e, run_h, run_i) * 0.1,
            }
            s1 = s2 = None
        quant = moe_quant(w4a16, tl.float16)
        n = run_t * topk
        cache1 = torch.empty(n, 2 * run_i, dtype=F16)
        cache2 = torch.empty(n, run_i, dtype=F16)
        cache3 = torch.empty(run_t, topk, run_h, dtype=F16)
        out = torch.empty(run_t, run_h, dtype=F16)
        aligned = (sorted_ids, expert_ids, post)
        align_launches = _align_launches(arch, tokens * topk, _EXPERTS[model])

        def run() -> object:
            for i in range(align_launches):
                reads = [ids] if i == 0 else [ids, expert_ids]
                with one_launch("moe_align_block_size (sgl_kernel)", reads, aligned):
                    pass
            _fk.invoke_fused_moe_kernel(
                x, tensors["w13"], None, cache1, None, s1, None, weights, ids,
                *aligned, False, topk, config, **quant,
            )  # fmt: skip
            with one_launch("silu_and_mul (sgl_kernel)", [cache1], [cache2]):
                cache2.copy_(torch.nn.functional.silu(cache1[:, :run_i]) * cache1[:, run_i:])
            _fk.invoke_fused_moe_kernel(
                cache2, tensors["w2"], None, cache3, None, s2, None, weights, ids,
                *aligned, True, 1, down, router_topk=topk, **quant,
            )  # fmt: skip
            if _sum_is_triton(arch, tokens):
                _fk.moe_sum_reduce_triton(cache3, out, 1.0)
            else:
                kind = "torch.compile" if arch.startswith("gfx") else "sgl_kernel"
                with one_launch(f"moe_sum_reduce ({kind})", [cache3], [out]):
                    out.copy_(cache3.float().sum(1))
            return out

        prepared = tc.Prepared.moe(run, x, tensors, ids)
        bm, dbm = config["BLOCK_SIZE_M"], down["BLOCK_SIZE_M"]
        prepared.note = f"BLOCK_M {bm}/{dbm}, align {align_launches} launch(es)"
        return prepared

    return build


def peer_for(case: tc.TrafficCase, arch: str) -> tuple[str, PeerBuild | None]:
    """(what the peer is, its build) for one of our cases on `arch`; build None
    when SGLang has no kernel for the op (the text says why)."""
    if case.op in NO_PEER:
        return NO_PEER[case.op], None
    if case.op == "attention.decode":
        model = next(m for m in tc.DECODE if m[0] == case.model)
        batch, ctx = (int(s.split()[-1]) for s in case.size.split(", "))
        return "SGLang decode_attention_fwd", _decode(model, batch, ctx, arch)
    if case.op == "attention.sparse":
        model = next(m for m in tc.SPARSE if m[0] == case.model)
        rows = int(case.size.split()[0])
        return "SGLang triton_sparse_mla_decode", _sparse(model, rows, arch)
    if case.op == "attention.extend":
        model = next(m for m in tc.EXTEND if m[0] == case.model)
        return "SGLang extend_attention_fwd", _extend(model, tc.EXTEND_TOKENS)
    if case.op.startswith("moe.fused"):
        spec = next(m for m in tc.MOE if m[0] == case.model)
        tokens = int(case.size.split()[0])
        w4a16 = case.op.endswith("mxfp4")
        what = "SGLang fused_moe int4 w4a16 (group 32)" if w4a16 else "SGLang fused_moe bf16"
        return what, _moe(spec, tokens, w4a16, arch)
    return f"no SGLang peer for {case.op}", None


def lookup(case: tc.TrafficCase, arch: str) -> tuple[str, PeerBuild | None, Any]:
    """`traffic_audit.PeerLookup`: the peer of `case` on `arch` and the context its
    launchers run in."""
    what, build = peer_for(case, arch)
    return what, build, peer_context(arch)


@contextlib.contextmanager
def peer_context(arch: str) -> Iterator[None]:
    """SGLang's launchers deciding as on `arch` (see `sglang_peer_launches`), less
    programmatic dependent launch: it overlaps launches and moves no byte, and the
    interpreter cannot run its `gdc_wait`. Its kernels interpreted whatever the
    environment was when sglang imported them (`traffic.interpreted_kernels`)."""
    with (
        sglang_sees(arch),
        mock.patch.object(_fk, "is_arch_support_pdl", lambda: False),
        interpreted_kernels(_da, _ea, _meta, _fk, _tsm, _tsmd),
    ):
        yield
