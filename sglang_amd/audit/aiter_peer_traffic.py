"""aiter's Triton kernels under the traffic counter: peers beside SGLang's in `audit --traffic`.

Where it sits: `sglang-amd audit --traffic --aiter-src DIR` (or
$SGLANG_AMD_AITER_SRC with --peers) asks `lookup_for(root)(case, arch)` here for
each case of `audit/traffic_cases.py`; `audit/traffic_audit.py` counts what it
returns the way it counts ours (same counter, same scaled-down shape, same
per-row shapes, batch, context and tokens). aiter is read from a checkout at
run time through `audit/aiter_peer_launches.py` (`aiter_sees`: its modules for
that target, stand-ins only for what needs ROCm), and which aiter launcher
stands beside which op is that module's knowledge (`PEER_WHAT`). aiter's
kernels assume HIP, so on NVIDIA targets the row says "AMD targets only".

What runs per op, each launch aiter's path makes per layer forward:

- decode, GQA/MHA: `paged_attention_decode` ([blocks, kv heads, 16, d] cache).
  Its V1/V2 choice depends on the real batch x query heads, so aiter's own
  dispatch is asked on the real shape (zero-stride tensors; the version it
  picks is recorded, not run) and the version it chose runs on the scaled one
  (V2: partition kernel + reduce).
- decode, MLA: the Triton `mla_decode_fwd` (bf16-layout latent cache, 64 rows
  a page) + its reduce; its segment count comes from CUs x 4 / programs, so
  with batch 1 of B it sees CUs / B (the real batch's segments).
- extend: `extend_attention_fwd` on the new tokens (no prefix), page size 1.
- DSA indexer: `fp8_mqa_logits` on fp8 keys with a float32 scale a row (its
  input format, so its ideal is the fp8 one: 128 + 4 bytes a position, ours
  reads bf16 keys); on gfx942 it recasts Q and K to e4m3fnuz itself (torch ops,
  counted as launches).
- MoE bf16: the sentinel fill of the sorted ids (a torch fill, as vLLM-style
  callers do), `moe_align_block_size_triton` (4 Triton stages + 2 torch zeroings),
  `fused_moe_silu` (gate-up with SiLU-and-mul fused), `fused_moe` (down, router
  weight applied), then the top-k sum (a torch sum: aiter's Triton MoE leaves it
  to the caller).
- MoE A4W4: the same align, `dynamic_mxfp4_quant` of x, `fused_moe_mxfp4_silu`,
  `dynamic_mxfp4_quant` of its output, `fused_moe_mxfp4` (down), the torch sum.
- MoE MXFP4 weight-only: aiter's Triton `routing` (top-k and sort from the
  router logits), `moe_gemm_a16w4` gate-up (gathered; gpt-oss: its SwiGLU
  fused), SiLU-and-mul for the others, `moe_gemm_a16w4` down (scattered, gammas)
  and its `reduce_grouped` combine. The SiLU-and-mul is aiter's Triton
  `fused_silu_mul`, whose wrapper refuses CPU tensors (`assert x.is_cuda`):
  `traffic.one_launch` counts it as one kernel reading its input and writing
  its output once (the one step not interpreted; said in the row's note).

Tiles are float16 where aiter takes them (the interpreter's bf16 `tl.dot` is
wrong in value, not in bytes; see `sglang_peer_traffic.F16`); the MXFP4 paths'
activations stay bf16 as their launchers require. Where Triton 3.8's
interpreter cannot run an aiter kernel, the row carries the reason (kernel,
source line, cause) instead of a number. Never imports sglang.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from sglang_amd.audit import aiter_peer_launches as apl
from sglang_amd.audit import traffic_cases as tc
from sglang_amd.audit import traffic_ideal
from sglang_amd.audit.traffic import one_launch
from sglang_amd.audit.traffic_audit import PeerLookup
from sglang_amd.target_info import Target

__all__ = ["AMD_ONLY", "OWNER", "lookup_for", "peer_for"]

OWNER = "aiter"
AMD_ONLY = "aiter: AMD targets only (its Triton kernels assume HIP)"
F16 = torch.float16
BF16 = torch.bfloat16
PeerBuild = Callable[[Target], tc.Prepared]

# Our ops with no aiter Triton launcher beside them (said in the row).
NO_PEER = {
    "attention.sparse": "no aiter Triton launcher SGLang's DSA backend calls for sparse MLA decode",
    "attention.topk": "no aiter Triton top-k over indexer scores paired",
    "quant.mxfp4_linear w4a16": "no aiter Triton MXFP4 dense GEMM paired",
    "quant.mxfp4_linear a4w4": "no aiter Triton MXFP4 dense GEMM paired",
}
# Modules beyond aiter_peer_launches' launchers that the traffic flows call.
_ALIGN = "aiter.ops.triton.moe.moe_align_block_size"
_SILU_MOE = "aiter.ops.triton.moe.moe_op_silu_fused"
_SILU_MXFP4 = "aiter.ops.triton.moe.moe_op_mxfp4_silu_fused"
_QUANT = "aiter.ops.triton.quant.quant"


_randn = functools.partial(tc.randn, dtype=F16)


def _module(name: str) -> types.ModuleType:
    """An aiter module for the target now loaded (inside `aiter_sees`)."""
    return importlib.import_module(name)


# ---- attention -------------------------------------------------------------


def _paged_decode(model: tuple, batch: int, ctx: int) -> PeerBuild:
    _, hq, hkv, d, _ = model
    group = hq // hkv
    blocks = -(-ctx // apl._PA_BLOCK)

    def build(target: Target) -> tc.Prepared:
        pa = apl._mod("pa")
        ones = torch.tensor([1.0])
        chosen: dict[str, Any] = {}

        def record(version: str) -> Callable[..., None]:
            def call(*args: Any) -> None:
                chosen.update(version=version, args=args)

            return call

        # aiter's own V1/V2 rule on the real batch and heads (nothing allocated).
        def real(*shape: int) -> torch.Tensor:
            return torch.empty(1, dtype=F16).expand(*shape)

        with (
            mock.patch.object(pa, "paged_attn_decode_v1", record("v1")),
            mock.patch.object(pa, "paged_attn_decode_v2", record("v2")),
        ):
            pa.paged_attention_decode(
                real(batch, hq, d), real(batch, hq, d), real(blocks, hkv, apl._PA_BLOCK, d),
                real(blocks, hkv, apl._PA_BLOCK, d), torch.full((batch,), ctx, dtype=torch.int32),
                torch.zeros(batch, blocks, dtype=torch.int32), 0.1, ctx, apl._tl().float16,
                k_scale=ones, v_scale=ones,
            )  # fmt: skip
        version = chosen["version"]
        launcher = getattr(pa, f"paged_attn_decode_{version}")
        q = _randn(1, group, d)
        k = _randn(blocks, 1, apl._PA_BLOCK, d)
        v = _randn(blocks, 1, apl._PA_BLOCK, d)
        out = torch.empty(1, group, d, dtype=F16)
        table = torch.arange(blocks, dtype=torch.int32).view(1, blocks)
        lens = torch.full((1,), ctx, dtype=torch.int32)
        # The chosen call's own arguments, tensors swapped for the scaled ones and
        # one KV head (arguments 0-5 and 8 of paged_attn_decode_v1/_v2).
        args = list(chosen["args"])
        args[0:6] = [out, q, k, v, table, lens]
        args[8] = 1

        def run() -> object:
            launcher(*args)
            return out

        # K and V pages: [blocks, 1, 16, d] rows of d, the ideal of ctx rows each.
        ideal = traffic_ideal.attention(q, k.view(-1, 1, d), v.view(-1, 1, d), [ctx], d)
        prepared = tc.Prepared(run, {"q": q, "k": k, "v": v, "out": out}, ideal)
        parts = f", {args[-1]} partitions" if version == "v2" else ""
        prepared.note = f"{version.upper()} for batch {batch} x {hq} heads{parts}"
        return prepared

    return build


def _mla_decode(model: tuple, batch: int, ctx: int, arch: str) -> PeerBuild:
    _, hq, _, dqk, dv = model
    blocks = -(-ctx // apl._MLA_BLOCK)

    def build(target: Target) -> tc.Prepared:
        mla = apl._mod("mla")
        q = _randn(1, hq, dqk)
        kv = _randn(blocks, apl._MLA_BLOCK, 1, dqk)
        out = torch.empty(1, hq, dv, dtype=F16)
        table = torch.arange(blocks, dtype=torch.int32).view(1, blocks)
        # Segments = CUs x 4 / programs: batch 1 of `batch` sees its share of CUs.
        cus = apl._CUS[arch] // batch
        cu_q = torch.arange(2, dtype=torch.int32)
        lens = torch.full((1,), ctx, dtype=torch.int32)

        def run() -> object:
            with mock.patch.object(mla, "get_num_sms", lambda: cus):
                mla.mla_decode_fwd(
                    q, kv, out, cu_q, lens, ctx, table, 0.1, dv, dqk - dv, True, None, None
                )
            return out

        flat = kv.view(-1, 1, dqk)
        ideal = traffic_ideal.attention(q, flat, flat[..., :dv], [ctx], dv)
        prepared = tc.Prepared(run, {"q": q, "kv": kv, "out": out}, ideal)
        prepared.note = f"segments for {cus} CUs a request"
        return prepared

    return build


def _extend(model: tuple, tokens: int) -> PeerBuild:
    def build(target: Target) -> tc.Prepared:
        ext = apl._mod("extend")
        q, k, v, out, named, ideal = tc.extend_inputs(model, tokens, F16)
        qo = torch.tensor([0, tokens], dtype=torch.int32)
        no_prefix = torch.zeros(2, dtype=torch.int32)
        no_slots = torch.zeros(0, dtype=torch.int32)

        def run() -> object:
            # The pool (k, v here) is never read: no prefix.
            ext.extend_attention_fwd(
                q, k, v, out, k, v, qo, no_prefix, no_slots, None, True, None, tokens, 0.1
            )
            return out

        return tc.Prepared(run, named, ideal)

    return build


def _indexer(context: int) -> PeerBuild:
    _, heads, dim = tc.INDEXER

    def build(target: Target) -> tc.Prepared:
        logits = apl._mod("logits")
        fp8 = torch.float8_e4m3fn  # as SGLang hands them; aiter recasts on gfx942
        q = _randn(1, heads, dim).to(fp8)
        k = _randn(context, dim).to(fp8)
        k_scale = torch.ones(context)
        w = _randn(1, heads, dtype=torch.float32)
        starts = torch.zeros(1, dtype=torch.int32)
        ends = torch.full((1,), context, dtype=torch.int32)

        def run() -> object:
            return logits.fp8_mqa_logits(q, k, k_scale, w, starts, ends, clean_logits=False)

        ideal = traffic_ideal.indexer(q, w, dim * k.element_size() + 4, context)
        named = {"q": q, "weights": w, "index_k": k, "index_k_scale": k_scale}
        prepared = tc.Prepared(run, named, ideal)
        prepared.note = "fp8 keys + fp32 scale (ideal in that format)"
        return prepared

    return build


# ---- MoE -------------------------------------------------------------------


def _aligned(tokens: int, topk: int, experts: int, block_m: int) -> tuple[torch.Tensor, ...]:
    """moe_align_block_size's outputs at the size vLLM-style callers allocate."""
    sorted_ids, expert_ids, post = apl._sorted(tokens, topk, experts, block_m)
    return sorted_ids, expert_ids.fill_(-1), post


def _align(ids: torch.Tensor, experts: int, block_m: int, bufs: tuple[torch.Tensor, ...]) -> None:
    """The caller's sentinel fill (padding slots point past the tokens), then
    aiter's Triton align."""
    sorted_ids, expert_ids, post = bufs
    sorted_ids.fill_(ids.numel())
    _module(_ALIGN).moe_align_block_size_triton(ids, experts, block_m, sorted_ids, expert_ids, post)


def _moe_gemms(spec: tuple, tokens: int, kind: str) -> PeerBuild:
    """bf16 (`fused_moe_silu` + `fused_moe`) and A4W4 (`fused_moe_mxfp4_silu` +
    `fused_moe_mxfp4`), on aiter's align; the top-k sum in torch."""
    model, experts, topk, _, _, (run_e, run_h, run_i) = spec
    run_t = max(1, tokens * run_e // experts)

    def build(target: Target) -> tc.Prepared:
        tl = apl._tl()
        a4w4 = kind == "a4w4"
        # The config aiter picks for the real token count.
        config = apl._mod("moe_config").get_optimal_moe_config(BF16, use_mxfp4=a4w4, M=tokens)
        block_m = config["BLOCK_SIZE_M"]
        weights, ids = tc._routing(run_t, run_e, topk)
        bufs = _aligned(run_t, topk, run_e, block_m)
        dtype = BF16 if a4w4 else F16
        x = _randn(run_t, run_h, dtype=dtype)
        if a4w4:
            tensors = tc.mxfp4_experts(run_e, run_h, run_i)
        else:
            tensors = {"w13": _randn(run_e, 2 * run_i, run_h) * 0.1,
                       "w2": _randn(run_e, run_h, run_i) * 0.1}  # fmt: skip
        # The SiLU-fused launchers write [tokens x top-k, I] (2-D strides).
        act = torch.empty(run_t * topk, run_i, dtype=dtype)
        down = torch.empty(run_t, topk, run_h, dtype=dtype)

        def run() -> object:
            _align(ids, run_e, block_m, bufs)
            w13, w2 = tensors["w13"], tensors["w2"]
            if a4w4:
                quant = _module(_QUANT).dynamic_mxfp4_quant
                gemm = apl._mod("mxfp4").fused_moe_mxfp4
                xq, xs = quant(x)
                one, ones = torch.ones(1), torch.ones(run_e)
                _module(_SILU_MXFP4).fused_moe_mxfp4_silu(
                    xq, w13, act, one, ones, xs, tensors["w13_scale"], weights, ids, *bufs, False, topk,
                    False, False, config, tl.bfloat16,
                )  # fmt: skip
                aq, as_ = quant(act)
                gemm(aq, w2, down, one, ones, as_, tensors["w2_scale"], weights, ids, *bufs, True, 1,
                     False, False, config, tl.bfloat16)  # fmt: skip
            else:
                _module(_SILU_MOE).fused_moe_silu(
                    x, w13, act, None, None, None, weights, ids, *bufs, False, topk,
                    tl.float16, False, False, False, None, config,
                )  # fmt: skip
                apl._mod("moe").fused_moe(
                    act, w2, down, None, None, None, weights, ids, *bufs,
                    True, 1, tl.float16, False, False, False, None, config,
                )  # fmt: skip
            return down.sum(1)

        prepared = tc.Prepared.moe(run, x, tensors, ids)
        prepared.note = f"BLOCK_M {block_m}"
        return prepared

    return build


def _moe_a16w4(spec: tuple, tokens: int) -> PeerBuild:
    """`routing` + `moe_gemm_a16w4` gate-up and down (+ its reduce_grouped)."""
    model, experts, topk, _, _, (run_e, run_h, run_i) = spec
    run_t = max(1, tokens * run_e // experts)
    gpt_oss = model.startswith("gpt-oss")

    def build(target: Target) -> tc.Prepared:
        # The router's scores our cases' `_routing` takes its top-k of.
        g = torch.Generator().manual_seed(run_t * 1000 + run_e)
        scores = torch.rand(run_t, run_e, generator=g)
        ids = scores.topk(topk, dim=-1).indices.to(torch.int32)
        logits = scores.to(BF16)
        x = _randn(run_t, run_h, dtype=BF16)
        tensors = tc.mxfp4_experts(run_e, run_h, run_i)
        w13, s13, w2, s2 = tensors.values()
        gemm = apl._mod("a16w4").moe_gemm_a16w4
        alpha, limit = apl._SWIGLU

        def run() -> object:
            rdata, gather, scatter = apl._mod("routing").routing(logits, topk)
            # Column-major along K, as downcast_to_mxfp leaves them.
            y = gemm(x, w13.transpose(1, 2), None, s13.transpose(1, 2), routing_data=rdata,
                     gather_indx=gather, apply_swiglu=gpt_oss, alpha=alpha, limit=limit,
                     backend="triton")  # fmt: skip
            if not gpt_oss:
                act = torch.empty(y.shape[0], run_i, dtype=BF16)
                with one_launch("fused_silu_mul (aiter Triton; CUDA-only wrapper)", [y], [act]):
                    act.copy_(torch.nn.functional.silu(y[:, :run_i]) * y[:, run_i:])
                y = act
            return gemm(y, w2.transpose(1, 2), None, s2.transpose(1, 2), routing_data=rdata,
                        scatter_indx=scatter, gammas=rdata.gate_scal, backend="triton")  # fmt: skip

        prepared = tc.Prepared.moe(run, x, tensors, ids)
        prepared.note = (
            "SwiGLU fused" if gpt_oss else "fused_silu_mul counted as 1 launch (not interpreted)"
        )
        return prepared

    return build


# ---- the lookup ------------------------------------------------------------


def peer_for(case: tc.TrafficCase, arch: str) -> tuple[str, PeerBuild | None]:
    """(what aiter's peer is, its build) for one of our cases; build None where
    aiter has no Triton launcher for the op or the target is NVIDIA's."""
    if arch not in apl.TARGETS:
        return AMD_ONLY, None
    if case.op in NO_PEER or case.op.startswith("ep_permute"):
        return NO_PEER.get(case.op, "no aiter Triton peer for EP permutes"), None
    if case.op == "attention.decode":
        model = next(m for m in tc.DECODE if m[0] == case.model)
        batch, ctx = (int(s.split()[-1]) for s in case.size.split(", "))
        if model[2] == 1 and model[4] < model[3]:  # MLA: K and V head sizes differ
            return "aiter mla_decode_fwd (Triton)", _mla_decode(model, batch, ctx, arch)
        return "aiter paged_attention_decode", _paged_decode(model, batch, ctx)
    if case.op == "attention.extend":
        model = next(m for m in tc.EXTEND if m[0] == case.model)
        return "aiter extend_attention_fwd", _extend(model, tc.EXTEND_TOKENS)
    if case.op == "attention.indexer":
        context = int(case.size.split(", ")[1].split()[0])
        return "aiter fp8_mqa_logits", _indexer(context)
    if case.op.startswith("moe.fused"):
        spec = next(m for m in tc.MOE if m[0] == case.model)
        tokens = int(case.size.split()[0])
        kind = case.op.split()[-1]
        if kind == "mxfp4":
            return "aiter routing + moe_gemm_a16w4", _moe_a16w4(spec, tokens)
        what = "aiter fused_moe_mxfp4(_silu)" if kind == "a4w4" else "aiter fused_moe(_silu)"
        return what, _moe_gemms(spec, tokens, kind)
    return f"no aiter Triton peer for {case.op}", None


def _aiter_frame(exc: BaseException, root: Path) -> str:
    """Where in aiter's source an error was raised (the innermost aiter frame of
    the exception and its causes): `file:line `code`` in function."""
    where = ""
    seen: BaseException | None = exc
    while seen is not None:
        for frame in traceback.extract_tb(seen.__traceback__):
            if frame.filename.startswith(str(root)):
                rel = Path(frame.filename).relative_to(root)
                where = f"{frame.name} ({rel}:{frame.lineno} `{(frame.line or '').strip()}`)"
        seen = seen.__cause__
    return where


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


@contextlib.contextmanager
def peer_context(root: Path, arch: str) -> Iterator[None]:
    """aiter's modules as loaded for `arch` (the driver reports it while they import
    and run), quiet; an interpreter failure turns into its reason."""
    from triton.runtime.errors import InterpreterError

    from sglang_amd.audit.compile_for_target import reporting

    with reporting(arch), apl.aiter_sees(root, arch), apl._quiet():
        try:
            yield
        except InterpreterError as exc:
            cause = _root_cause(exc)
            raise RuntimeError(
                f"Triton 3.8's interpreter cannot run aiter's {_aiter_frame(exc, root)}: "
                f"{type(cause).__name__}: {cause}"
            ) from exc


def lookup_for(src: str | Path) -> PeerLookup:
    """`traffic_audit.PeerLookup` over a checkout (checked here: a bad path raises
    `aiter_peer_launches.AiterSourceError`, naming the flag)."""
    root = apl.aiter_root(src)

    def lookup(case: tc.TrafficCase, arch: str) -> tuple[str, PeerBuild | None, Any]:
        what, build = peer_for(case, arch)
        context = peer_context(root, arch) if build else contextlib.nullcontext()
        return what, build, context

    return lookup
