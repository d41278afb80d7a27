"""The traffic audit's matrix: each op of each model at a few sizes, scaled down in proportion.

Where it sits: `audit/traffic_audit.py` builds each `TrafficCase` for a target
(gfx942, sm_90), runs it inside `audit.traffic.counting()` with our launch-flag
heuristics answering for that target, and divides by the ideal from
`audit/traffic_ideal.py`. The calls are our public entry points (`paged_decode`,
`paged_extend`, `sparse_attention`, `indexer_logits`, `topk_positions`, `fused_moe`,
`mxfp4_linear`).

The interpreter runs every program in numpy, so shapes are scaled down, but only
along axes whose programs are independent copies of each other, and the launch
flags are those the heuristics pick for the real shape. Hence every ratio
(bytes moved / ideal) is the real shape's, not the small one's:

- decode: the KV heads of a GQA/MHA model run as 1 KV head with its real group of
  query heads, and batch 8 as batch 1, with the flags (splits, tiles) chosen for
  the real batch and KV heads. Context and head dims are real. MLA keeps all its
  query heads (their head blocks each read the latent: that is measured).
- sparse (DSA): one query token of a batch's rows (each is independent), its
  top-k of a longer context; the ideal reads those k latent rows once.
- extend: one KV head and its query group; DeepSeek's prefill, one head.
- MoE: experts and tokens divided by the same factor (slots per expert, hence
  blocks per expert, kept), top-k real; hidden and intermediate sizes cut to a
  few of the real tiles (kept non-multiples of the A4W4 K tile where the model's
  are). Weight traffic per expert is independent of those sizes; activation
  traffic is not (it grows relative to weights), so the MoE gate is on weights.
- the dense MXFP4 linear: N and K cut, rows real.
- expert parallelism's local permutes (`ep_permute.pack` / `.combine`, and the
  torch chain they replace beside them): hidden, top-k, experts and ranks real;
  a high-throughput batch runs `EP_RUN_TOKENS` of its tokens (each token is its
  own programs, and the plan kernel's walk costs the same per token), low-latency
  batches run real (their fixed buffer is what the ratio is about).
Never imports sglang.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from sglang_amd.audit import traffic_ideal
from sglang_amd.audit.launches import DECODE_ATTENTION
from sglang_amd.target_info import Target

BF16 = torch.bfloat16


@dataclass(frozen=True)
class Gate:
    """`metric` of a row must stay <= `limit`."""

    name: str
    metric: str  # "ratio", "weights_ratio" or "launches"
    limit: float


@dataclass
class Prepared:
    """A case ready to count: the call, the tensors to attribute bytes to, ideals."""

    run: Callable[[], object]
    named: dict[str, torch.Tensor]
    ideal: int
    weights: tuple[str, ...] = ()
    ideal_weights: int = 0
    note: str = ""  # what the launch decided (splits, tiles), for the table

    @classmethod
    def moe(
        cls, run: Callable[[], object], x: torch.Tensor, tensors: dict[str, torch.Tensor],
        ids: torch.Tensor, note: str = "",
    ) -> Prepared:  # fmt: skip
        """A fused-MoE launch sequence: activations x, the expert `tensors` (weights
        and scales, the weight bytes), ids [tokens, top-k] the experts each token picked."""
        listed = list(tensors.values())
        return cls(run, {"x": x, **tensors}, traffic_ideal.moe(x, listed, ids), tuple(tensors),
                   traffic_ideal.expert_bytes(listed, ids), note)  # fmt: skip


def mxfp4_experts(experts: int, hidden: int, inter: int) -> dict[str, torch.Tensor]:
    """Random MXFP4 expert weights in our layout: e2m1 codes [E, N, K/2] and E8M0
    scales [E, N, K/32] (2^-7 .. 2^0) of the gate-up (N 2I, K H) and down (N H,
    K I) GEMMs, as w13, w13_scale, w2, w2_scale."""
    g = torch.Generator().manual_seed(7)
    u8 = torch.uint8

    def codes(*shape: int) -> torch.Tensor:
        return torch.randint(0, 256, shape, generator=g, dtype=u8)

    def scales(*shape: int) -> torch.Tensor:
        return torch.randint(120, 128, shape, generator=g, dtype=u8)

    return {
        "w13": codes(experts, 2 * inter, hidden // 2),
        "w13_scale": scales(experts, 2 * inter, hidden // 32),
        "w2": codes(experts, hidden, inter // 2),
        "w2_scale": scales(experts, hidden, inter // 32),
    }


def extend_inputs(
    model: tuple, tokens: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict, int]:
    """An extend of `tokens` new tokens with no prefix, one KV head's worth of
    `model` (name, hq, hkv, dqk, dv): q, k, v (MLA: v aliases k's latent), out, the
    tensors to attribute bytes to, and its ideal bytes."""
    _, hq, hkv, dqk, dv = model
    mla = hkv == 1 and dv < dqk
    run_hq = hq // hkv if hkv > 1 else hq
    q = randn(tokens, run_hq, dqk, dtype=dtype)
    k = randn(tokens, 1, dqk, dtype=dtype)
    v = k[..., :dv] if mla else randn(tokens, 1, dv, dtype=dtype)
    out = torch.empty(tokens, run_hq, dv, dtype=dtype)
    named = {"q": q, "kv" if mla else "k": k, "out": out}
    if not mla:
        named["v"] = v
    return q, k, v, out, named, traffic_ideal.attention(q, k, v, [tokens], dv)


@dataclass(frozen=True)
class TrafficCase:
    model: str
    op: str
    size: str  # the real size
    scaling: str  # what runs instead
    build: Callable[[Target], Prepared]
    gates: tuple[Gate, ...] = field(default=())


DECODE_GATE = Gate("decode <= 1.10x ideal (MHA/GQA, context >= 8K)", "ratio", 1.10)
MLA_GATE = Gate("MLA decode <= 2x ideal (128 heads, context >= 8K)", "ratio", 2.0)
TOPK_GATE = Gate("DSA top-k <= 2.2x reading its scores once", "ratio", 2.2)
SPARSE_GATE = Gate("DSA sparse decode <= 1.2x reading its top-k rows (16 heads)", "ratio", 1.2)
MOE_WEIGHT_GATE = Gate("MXFP4 MoE weight bytes <= 1.2x ideal (<= 64 tokens)", "weights_ratio", 1.2)
MOE_LAUNCH_GATE = Gate("MoE forward <= 4 launches", "launches", 4)

# (model, q heads, kv heads, qk dim, v dim) per TP rank: the compile audit's models.
DECODE = DECODE_ATTENTION
DECODE_SIZES = ((1, 1024), (1, 8192), (8, 1024), (8, 8192))
# DeepSeek-V3.2 (DSA): each query token reads the index_topk latent rows its
# indexer chose out of a longer context; (model, q heads, kv heads, qk dim, v dim).
SPARSE = (
    ("DeepSeek-V3.2 MLA 128 heads", 128, 1, 576, 512),
    ("DeepSeek-V3.2 MLA 16 heads (tp8)", 16, 1, 576, 512),
)
SPARSE_TOPK, SPARSE_CONTEXT, SPARSE_ROWS = 2048, 8192, (1, 64)
# Its indexer: (model, heads, head dim), scoring every visible position of a context.
INDEXER = ("DeepSeek-V3.2 indexer", 64, 128)
INDEXER_CONTEXTS = (8192, 65536)
# Its top-k (`topk_positions`): index_topk positions of one query token's scores.
TOPK = "DeepSeek-V3.2 indexer top-k"
EXTEND = (
    ("Llama-3.1-8B", 32, 8, 128, 128),
    ("DeepSeek-V3 prefill 128 heads", 128, 128, 192, 128),
    ("DeepSeek-V3 MLA extend 16 heads", 16, 1, 576, 512),
)
EXTEND_TOKENS = 512
# (model, experts, top-k, hidden, intermediate) real, then (experts, hidden,
# intermediate) run. gpt-oss's 2880 is 45 tiles of 64 and 22.5 of A4W4's 128: 320 too.
MOE = (
    ("DeepSeek-V3", 256, 8, 7168, 2048, (32, 256, 128)),
    ("Qwen3-235B-A22B", 128, 8, 4096, 1536, (16, 256, 128)),
    ("gpt-oss-120b", 128, 4, 2880, 2880, (16, 320, 320)),
)
MOE_TOKENS = (1, 8, 64)
MOE_WEIGHTS = ("bf16", "mxfp4", "a4w4")
LINEAR = ("DeepSeek-V3 o_proj", 7168, 16384, (512, 1024))
LINEAR_ROWS = (1, 64)
# One EP rank of DeepSeek-V3 over 8 ranks: (model, hidden, top-k, experts, ranks,
# low-latency capacity), its tokens per rank and mode, and each wire's pack.
EP = ("DeepSeek-V3 EP8", 7168, 8, 256, 8, 64)
EP_SIZES = ((1, "low_latency"), (64, "low_latency"), (4096, "high_throughput"))
EP_RUN_TOKENS = 64
EP_WIRES = ("none", "fp8", "mxfp4")
EP_GATE = Gate("EP pack / combine <= 1.05x ideal", "ratio", 1.05)
EP_PACK_LAUNCH_GATE = Gate("EP pack <= 2 launches (plan, pack)", "launches", 2)
EP_COMBINE_LAUNCH_GATE = Gate("EP combine: 1 launch", "launches", 1)


def randn(*shape: int, dtype: torch.dtype = BF16) -> torch.Tensor:
    """Random values of the cases' (and their peers') tensors, half a standard normal."""
    return (torch.randn(*shape) * 0.5).to(dtype)


def _decode(model: tuple, batch: int, ctx: int) -> Callable[[Target], Prepared]:
    _, hq, hkv, dqk, dv = model
    mla = hkv == 1 and dv < dqk
    group = hq // hkv
    run_b = 1

    def build(target: Target) -> Prepared:
        from sglang_amd.attention.decode import paged_decode
        from sglang_amd.attention.opt_flags import decode_flags

        flags = decode_flags(target, batch, hkv, group, ctx, dqk, dv)  # the real shape's
        q = randn(run_b, group, dqk)
        k = randn(run_b * ctx, 1, dqk)
        v = k[..., :dv] if mla else randn(run_b * ctx, 1, dv)
        r2t = torch.arange(run_b * ctx, dtype=torch.int32).view(run_b, ctx)
        lens = torch.full((run_b,), ctx, dtype=torch.int32)
        rows = torch.arange(run_b)
        out = torch.empty(run_b, group, dv, dtype=BF16)

        def run() -> object:
            return paged_decode(
                q, k, v, r2t, rows, lens, scale=0.1, max_kv_len=ctx, out=out, flags=flags
            )

        named = {"q": q, "kv" if mla else "k": k, "out": out}
        if not mla:
            named["v"] = v
        return Prepared(run, named, traffic_ideal.attention(q, k, v, [ctx] * run_b, dv))

    return build


def _sparse(model: tuple, rows: int) -> Callable[[Target], Prepared]:
    _, hq, hkv, dqk, dv = model

    def build(target: Target) -> Prepared:
        from sglang_amd.attention.opt_flags import sparse_flags
        from sglang_amd.attention.sparse import sparse_attention

        flags = sparse_flags(target, rows, hkv, hq // hkv, SPARSE_TOPK, dqk, dv)
        g = torch.Generator().manual_seed(rows)
        q = randn(1, hq, dqk)
        kv = randn(SPARSE_CONTEXT, 1, dqk)
        r2t = torch.arange(SPARSE_CONTEXT, dtype=torch.int32).view(1, SPARSE_CONTEXT)
        topk = torch.randperm(SPARSE_CONTEXT, generator=g)[:SPARSE_TOPK].int().view(1, -1)
        out = torch.empty(1, hq, dv, dtype=BF16)
        rows_of = torch.zeros(1, dtype=torch.long)

        def run() -> object:
            return sparse_attention(
                q, kv, kv[..., :dv], r2t, rows_of, topk,
                scale=0.1, out=out, flags=flags,
            )  # fmt: skip

        ideal = traffic_ideal.attention(q, kv, kv[..., :dv], [SPARSE_TOPK], dv)
        return Prepared(run, {"q": q, "kv": kv, "out": out, "topk": topk}, ideal)

    return build


def _indexer(context: int) -> Callable[[Target], Prepared]:
    _, heads, dim = INDEXER

    def build(target: Target) -> Prepared:
        from sglang_amd.attention.indexer import indexer_logits

        q = randn(1, heads, dim)
        w = randn(1, heads)
        k = randn(context, dim)
        r2t = torch.arange(context, dtype=torch.int32).view(1, context)
        rows = torch.zeros(1, dtype=torch.long)
        visible = torch.tensor([context], dtype=torch.int32)
        out = torch.empty(1, context)

        def run() -> object:
            return indexer_logits(q, w, k, r2t, rows, visible, scale=dim**-0.5, width=context,
                                  out=out)  # fmt: skip

        ideal = traffic_ideal.indexer(q, w, dim * k.element_size(), context)
        return Prepared(run, {"q": q, "weights": w, "index_k": k, "out": out}, ideal)

    return build


def _topk(context: int) -> Callable[[Target], Prepared]:
    def build(target: Target) -> Prepared:
        from sglang_amd.attention.topk import topk_positions

        # An indexer's scores: sums of ReLUs, so many exact zeros among positive values.
        scores = torch.randn(1, context, generator=torch.Generator().manual_seed(context)).relu_()
        out = torch.empty(1, SPARSE_TOPK, dtype=torch.int32)

        def run() -> object:
            return topk_positions(scores, SPARSE_TOPK, out=out)

        ideal = traffic_ideal.topk(scores, SPARSE_TOPK)
        return Prepared(run, {"scores": scores, "out": out}, ideal)

    return build


def _extend(model: tuple, tokens: int) -> Callable[[Target], Prepared]:
    def build(target: Target) -> Prepared:
        from sglang_amd.attention.extend import paged_extend

        q, k, v, out, named, ideal = extend_inputs(model, tokens, BF16)
        r2t = torch.arange(tokens, dtype=torch.int32).view(1, tokens)
        lens = torch.tensor([tokens], dtype=torch.int32)

        def run() -> object:
            return paged_extend(q, k, v, r2t, torch.arange(1), lens, lens, scale=0.1,
                                kv_lens_cpu=[tokens], qo_lens_cpu=[tokens], out=out)  # fmt: skip

        return Prepared(run, named, ideal)

    return build


def _routing(tokens: int, experts: int, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform random routing (a balanced router's), the same on every run."""
    g = torch.Generator().manual_seed(tokens * 1000 + experts)
    scores = torch.rand(tokens, experts, generator=g)
    weights, ids = scores.topk(topk, dim=-1)
    return (weights / weights.sum(-1, keepdim=True)).float(), ids.to(torch.int32)


def _moe(spec: tuple, tokens: int, kind: str) -> Callable[[Target], Prepared]:
    _, experts, topk, _, _, (run_e, hidden, inter) = spec
    run_t = max(1, tokens * run_e // experts)

    def build(target: Target) -> Prepared:
        from sglang_amd.moe.fused import fused_moe
        from sglang_amd.moe.weights import Mxfp4Experts

        x = randn(run_t, hidden)
        weights, ids = _routing(run_t, run_e, topk)
        if kind == "bf16":
            tensors = {
                "w13": randn(run_e, 2 * inter, hidden, dtype=BF16) * 0.1,
                "w2": randn(run_e, hidden, inter, dtype=BF16) * 0.1,
            }
            w13, w2 = tensors["w13"], tensors["w2"]
        else:
            tensors = mxfp4_experts(run_e, hidden, inter)
            w13, w2 = Mxfp4Experts(**tensors), None

        def run() -> object:
            return fused_moe(x, w13, w2, weights, ids, act_mxfp4=kind == "a4w4")

        return Prepared.moe(run, x, tensors, ids)

    return build


def _linear(rows: int, a4w4: bool) -> Callable[[Target], Prepared]:
    n, k = LINEAR[3]

    def build(target: Target) -> Prepared:
        from sglang_amd.quant.mxfp4_linear import mxfp4_linear

        g = torch.Generator().manual_seed(3)
        x = randn(rows, k)
        w = torch.randint(0, 256, (n, k // 2), generator=g, dtype=torch.uint8)
        s = torch.randint(120, 128, (n, k // 32), generator=g, dtype=torch.uint8)

        def run() -> object:
            return mxfp4_linear(x, w, s, act_mxfp4=a4w4)

        return Prepared(
            run,
            {"x": x, "w": w, "w_scale": s},
            traffic_ideal.linear(x, [w, s], n),
            ("w", "w_scale"),
            traffic_ideal.linear(x[:0], [w, s], n),
        )

    return build


def _ep_batch(tokens: int, mode: str, tier: str):
    """(run tokens, x, routing weights, ids, capacity or None, per-rank plan) of one
    EP rank's batch; the plan as the tier's pack makes it."""
    from sglang_amd.ep.opt_flags import permute_flags
    from sglang_amd.ep.permute import plan_triton
    from sglang_amd.ep.plan import plan_sends
    from sglang_amd.target_info import INTERPRETER

    _, hidden, topk, experts, world, cap = EP
    run_t = tokens if mode == "low_latency" else min(tokens, EP_RUN_TOKENS)
    x = randn(run_t, hidden)
    weights, ids = _routing(run_t, experts, topk)
    if tier == "triton":
        plan = plan_triton(ids, experts // world, world, permute_flags(INTERPRETER))
    else:
        plan = plan_sends(ids, experts // world, world)
    return run_t, x, weights, ids, (cap if mode == "low_latency" else None), plan


def _ep_pack(tokens: int, mode: str, wire_fmt: str, tier: str) -> Callable[[Target], Prepared]:
    def build(target: Target) -> Prepared:
        from sglang_amd.ep import wire
        from sglang_amd.ep.permute import pack_triton
        from sglang_amd.ep.permute_reference import pack_torch

        _, hidden, topk, experts, world, _ = EP
        _, x, weights, ids, cap, plan = _ep_batch(tokens, mode, tier)
        layout = wire.RowLayout(hidden, topk, wire_fmt, BF16)
        pack = pack_triton if tier == "triton" else pack_torch

        def run() -> object:
            return pack(x, weights, ids, layout, experts // world, world, cap)

        rows = world * cap if cap else int(plan.counts.sum())
        ideal = traffic_ideal.ep_pack(x, weights, ids, rows, layout.row_bytes)
        note = f"{int(plan.counts.sum())} rows sent of {rows}, {layout.row_bytes} B a row"
        return Prepared(run, {"x": x, "weights": weights, "ids": ids}, ideal, note=note)

    return build


def _ep_combine(tokens: int, mode: str, tier: str) -> Callable[[Target], Prepared]:
    def build(target: Target) -> Prepared:
        from sglang_amd.ep.permute import combine_triton
        from sglang_amd.ep.permute_reference import combine_torch

        _, hidden, _, _, world, _ = EP
        _, x, _, _, cap, plan = _ep_batch(tokens, mode, tier)
        sent = int(plan.counts.sum())
        back = randn(world * cap if cap else sent, hidden)
        combine = combine_triton if tier == "triton" else combine_torch

        def run() -> object:
            return combine(back, plan, BF16, cap)

        out = torch.empty_like(x)
        ideal = traffic_ideal.ep_combine(sent * hidden * back.element_size(), out)
        return Prepared(run, {"back": back}, ideal, note=f"{sent} rows returned")

    return build


# What `make test` (tests/test_traffic_audit.py) runs: one case per gate.
QUICK = {
    ("Llama-3.1-8B", "attention.decode", "batch 1, context 8192"),
    ("Llama-3.1-70B tp8", "attention.decode", "batch 8, context 8192"),
    ("Qwen3-235B-A22B tp4", "attention.decode", "batch 1, context 8192"),
    ("DeepSeek-V3 MLA 128 heads", "attention.decode", "batch 1, context 8192"),
    ("DeepSeek-V3.2 MLA 16 heads (tp8)", "attention.sparse", "1 query token, top-2048 of 8192"),
    ("DeepSeek-V3.2 indexer top-k", "attention.topk", "top-2048 of 65536 positions"),
    ("DeepSeek-V3", "moe.fused mxfp4", "64 tokens"),
    ("gpt-oss-120b", "moe.fused a4w4", "8 tokens"),
    ("Qwen3-235B-A22B", "moe.fused bf16", "8 tokens"),
    ("DeepSeek-V3 EP8", "ep_permute.pack mxfp4", "4096 tokens, high throughput"),
    ("DeepSeek-V3 EP8", "ep_permute.combine", "1 token, low latency"),
}


def cases(quick: bool = False) -> list[TrafficCase]:
    """The matrix; `quick` keeps `QUICK` (one case per gate)."""
    out = _all_cases()
    return [c for c in out if (c.model, c.op, c.size) in QUICK] if quick else out


def _all_cases() -> list[TrafficCase]:
    out: list[TrafficCase] = []
    for model in DECODE:
        name, hq, hkv, dqk, dv = model
        mla = dv < dqk
        for batch, ctx in DECODE_SIZES:
            scaled = [f"1 of {hkv} KV heads"] if hkv > 1 else []
            scaled += [f"batch 1 of {batch}"] if batch > 1 else []
            gates: tuple[Gate, ...] = ()
            if ctx >= 8192:
                gates = (MLA_GATE,) if mla and hq >= 128 else (() if mla else (DECODE_GATE,))
            out.append(
                TrafficCase(
                    name,
                    "attention.decode",
                    f"batch {batch}, context {ctx}",
                    (", ".join(scaled) + ", flags of the real shape") if scaled else "real",
                    _decode(model, batch, ctx),
                    gates,
                )
            )
    for context in INDEXER_CONTEXTS:
        out.append(
            TrafficCase(
                INDEXER[0],
                "attention.indexer",
                f"1 query token, {context} positions",
                "real",
                _indexer(context),
            )
        )
        out.append(
            TrafficCase(
                TOPK,
                "attention.topk",
                f"top-{SPARSE_TOPK} of {context} positions",
                "real",
                _topk(context),
                (TOPK_GATE,),
            )
        )
    for model in SPARSE:
        for rows in SPARSE_ROWS:
            out.append(
                TrafficCase(
                    model[0],
                    "attention.sparse",
                    f"{rows} query token{'s' if rows > 1 else ''}, top-{SPARSE_TOPK} "
                    f"of {SPARSE_CONTEXT}",
                    f"1 of {rows} rows, flags of the real shape" if rows > 1 else "real",
                    _sparse(model, rows),
                    (SPARSE_GATE,) if model[1] <= 16 else (),
                )
            )
    for model in EXTEND:
        name, hq, hkv = model[:3]
        scaling = f"1 of {hkv} KV heads" if hkv > 1 else "real"
        out.append(
            TrafficCase(
                name,
                "attention.extend",
                f"{EXTEND_TOKENS} new tokens",
                scaling,
                _extend(model, EXTEND_TOKENS),
            )
        )
    for spec in MOE:
        name, experts, topk, hidden, inter, (run_e, run_h, run_i) = spec
        for kind in MOE_WEIGHTS:
            for tokens in MOE_TOKENS:
                run_t = max(1, tokens * run_e // experts)
                gates = (MOE_LAUNCH_GATE,)
                if kind != "bf16" and tokens <= 64:
                    gates = (MOE_WEIGHT_GATE, MOE_LAUNCH_GATE)
                out.append(
                    TrafficCase(
                        name,
                        f"moe.fused {kind}",
                        f"{tokens} token{'s' if tokens > 1 else ''}",
                        f"{run_e} of {experts} experts, {run_t} token{'s' if run_t > 1 else ''}, "
                        f"H {run_h} of {hidden}, I {run_i} of {inter}",
                        _moe(spec, tokens, kind),
                        gates,
                    )
                )
    name, n, k, (run_n, run_k) = LINEAR
    for rows in LINEAR_ROWS:
        for a4w4 in (False, True):
            out.append(
                TrafficCase(
                    name,
                    f"quant.mxfp4_linear {'a4w4' if a4w4 else 'w4a16'}",
                    f"{rows} row{'s' if rows > 1 else ''}",
                    f"N {run_n} of {n}, K {run_k} of {k}",
                    _linear(rows, a4w4),
                )
            )
    out += _ep_cases()
    return out


def _ep_cases() -> list[TrafficCase]:
    """Each wire's pack and the combine, our Triton tier (gated) and the torch chain
    it replaced (the torch tier; reported, not gated), per batch size."""
    out: list[TrafficCase] = []
    name = EP[0]
    for tokens, mode in EP_SIZES:
        run_t = tokens if mode == "low_latency" else min(tokens, EP_RUN_TOKENS)
        size = f"{tokens} token{'s' if tokens > 1 else ''}, {mode.replace('_', ' ')}"
        scaling = "real" if run_t == tokens else f"{run_t} of {tokens} tokens"
        for tier in ("triton", "torch"):
            label = "" if tier == "triton" else " (torch chain)"
            for wire_fmt in EP_WIRES:
                gates = (EP_GATE, EP_PACK_LAUNCH_GATE) if tier == "triton" else ()
                out.append(
                    TrafficCase(
                        name,
                        f"ep_permute.pack {wire_fmt}{label}",
                        size,
                        scaling,
                        _ep_pack(tokens, mode, wire_fmt, tier),
                        gates,
                    )
                )
            gates = (EP_GATE, EP_COMBINE_LAUNCH_GATE) if tier == "triton" else ()
            out.append(
                TrafficCase(
                    name,
                    f"ep_permute.combine{label}",
                    size,
                    scaling,
                    _ep_combine(tokens, mode, tier),
                    gates,
                )
            )
    return out
