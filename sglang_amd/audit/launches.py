"""The model-shape matrix the audit compiles, and the calls that make each launch.

Where it sits: `audit/compile_audit.py` runs every `Case` here inside
`compile_for_target.compiling_for(arch)`: each case calls our real wrapper on
small CPU tensors whose per-row shapes (heads, head dims, hidden sizes, dtypes,
strides) are the real model's, while the lengths that only size the grid
(context, tokens, experts) are taken from the matrix through the same
heuristics a GPU serve uses. What the kernels compile to depends on those
shapes, not on the sizes of the tensors handed in. Never imports sglang.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from unittest import mock

import torch

from sglang_amd.target_info import Target

BF16 = torch.bfloat16
_SLOTS = 64  # pool rows handed in; the context comes from max_kv_len


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a model's op at one size."""

    model: str
    op: str
    size: str
    run: Callable[[], object]


# (model, q heads, kv heads, qk dim, v dim) per TP rank, decoded over the pool.
DECODE_ATTENTION = (
    ("Llama-3.1-8B", 32, 8, 128, 128),
    ("Llama-3.1-70B tp8", 8, 1, 128, 128),
    ("Qwen3-235B-A22B tp4", 16, 1, 128, 128),
    ("DeepSeek-V3 MLA 128 heads", 128, 1, 576, 512),
    ("DeepSeek-V3 MLA 16 heads (tp8)", 16, 1, 576, 512),
)
# DeepSeek-V3.2 (DSA) sparse attention: each query token reads its top-k
# (index_topk 2048) latent rows; rows = decode batch or extend tokens.
SPARSE_ATTENTION = (
    ("DeepSeek-V3.2 MLA 128 heads", 128, 1, 576, 512),
    ("DeepSeek-V3.2 MLA 16 heads (tp8)", 16, 1, 576, 512),
)
SPARSE_TOPK = 2048
SPARSE_ROWS = (1, 64, 4096)
# Its lightning indexer: 64 heads of 128 per query token over the index-K rows.
INDEXER = ("DeepSeek-V3.2 indexer", 64, 128)
INDEXER_SIZES = ((1, 8192), (64, 8192), (1, 65536), (4096, 8192))
# Extend: MHA as above; DeepSeek's fresh prefill (decompressed 192 / 128 per head)
# and its absorbed prefix-extend over the latent.
EXTEND_ATTENTION = (
    ("Llama-3.1-8B", 32, 8, 128, 128),
    ("Llama-3.1-70B tp8", 8, 1, 128, 128),
    ("DeepSeek-V3 prefill 128 heads", 128, 128, 192, 128),
    ("DeepSeek-V3 MLA extend 16 heads", 16, 1, 576, 512),
)
# gpt-oss-120b attention per tp8 rank (64 q / 8 kv heads of 64): learned sinks in
# every layer, and the sliding layers' window of 128 (SGLang's size 127).
GPT_OSS_ATTENTION = ("gpt-oss-120b tp8 sinks", 8, 1, 64, 64)
GPT_OSS_WINDOW = 127
# (model, hidden, moe intermediate per rank, top-k, experts)
MOE = (
    ("Qwen3-235B-A22B", 4096, 1536, 8, 128),
    ("DeepSeek-V3", 7168, 2048, 8, 256),
    ("gpt-oss-120b", 2880, 2880, 4, 128),
)
# gpt-oss as it is served: expert biases on both GEMMs, the clamped SwiGLU over
# interleaved gate/up rows (gemm/activation.py); bf16 experts and its own MXFP4
# checkpoint (W4A16). The MOE row above keeps its SiLU launches for comparison.
GPT_OSS_MOE = ("gpt-oss-120b swiglu+bias", 2880, 2880, 4, 128)
GPT_OSS_WEIGHTS = ("bf16", "mxfp4")
DECODE_SIZES = tuple((b, ctx) for b in (1, 8, 64) for ctx in (1024, 8192, 65536))
EXTEND_SIZES = (512, 4096)
MOE_TOKENS = (1, 64, 512)

# Modules that ask `current_target` for their launch flags.
_FLAG_USERS = (
    "sglang_amd.attention.decode",
    "sglang_amd.attention.extend",
    "sglang_amd.attention.indexer",
    "sglang_amd.ep.permute",
    "sglang_amd.gemm.grouped_gemm",
    "sglang_amd.moe.combine",
    "sglang_amd.moe.fused",
    "sglang_amd.quant.mxfp4_linear",
)


@contextlib.contextmanager
def flags_for(target: Target) -> Iterator[None]:
    """Our launch-flag heuristics see `target` instead of the (absent) device."""
    import importlib

    with contextlib.ExitStack() as stack:
        for name in _FLAG_USERS:
            module = importlib.import_module(name)
            stack.enter_context(mock.patch.object(module, "current_target", lambda d=None: target))
        yield


def _decode(
    hq: int,
    hkv: int,
    dqk: int,
    dv: int,
    batch: int,
    ctx: int,
    dtype: torch.dtype = BF16,
    sinks: bool = False,
    window: int | None = None,
) -> None:
    from sglang_amd.attention.decode import paged_decode

    q = torch.empty(batch, hq, dqk, dtype=dtype)
    k = torch.empty(_SLOTS, hkv, dqk, dtype=dtype)
    v = k[..., :dv] if dv < dqk else torch.empty(_SLOTS, hkv, dv, dtype=dtype)
    r2t = torch.zeros(batch, _SLOTS, dtype=torch.int32)
    lens = torch.full((batch,), _SLOTS, dtype=torch.int32)
    paged_decode(
        q, k, v, r2t, torch.arange(batch), lens, scale=0.1, max_kv_len=ctx,
        sinks=torch.empty(hq, dtype=BF16) if sinks else None, sliding_window=window,
    )  # fmt: skip


def _sparse(hq: int, hkv: int, dqk: int, dv: int, rows: int) -> None:
    from sglang_amd.attention import decode
    from sglang_amd.attention.opt_flags import sparse_flags
    from sglang_amd.attention.sparse import sparse_attention

    q = torch.empty(1, hq, dqk, dtype=BF16)
    k = torch.empty(_SLOTS, hkv, dqk, dtype=BF16)
    topk = torch.zeros(1, SPARSE_TOPK, dtype=torch.int32)
    r2t = torch.zeros(1, _SLOTS, dtype=torch.int32)
    # The rows only size the grid and the split count: flags for all of them
    # (`decode.current_target` answers for the audited target), one row handed in.
    flags = sparse_flags(decode.current_target(None), rows, hkv, hq // hkv, SPARSE_TOPK, dqk, dv)
    sparse_attention(q, k, k[..., :dv], r2t, torch.zeros(1, dtype=torch.long), topk, scale=0.1,
                     flags=flags)  # fmt: skip


def _indexer_fp8(heads: int, dim: int, rows: int, width: int) -> None:
    from sglang_amd.attention.index_k_cache import index_k_cache_bytes_per_page
    from sglang_amd.attention.indexer import indexer_logits_fp8

    q8 = torch.empty(rows, heads, dim, dtype=torch.float8_e4m3fn)
    cache = torch.empty(2, index_k_cache_bytes_per_page(64), dtype=torch.uint8)
    out = torch.empty(1, 1).expand(rows, width)  # compiled, never written
    indexer_logits_fp8(q8, torch.empty(rows, heads), cache, 64, torch.zeros(1, 64, dtype=torch.int32),
                       torch.zeros(rows, dtype=torch.long), torch.full((rows,), width, dtype=torch.int32),
                       width=width, out=out)  # fmt: skip


def _indexer(heads: int, dim: int, rows: int, width: int) -> None:
    from sglang_amd.attention.indexer import indexer_logits

    q = torch.empty(rows, heads, dim, dtype=BF16)
    w = torch.empty(rows, heads, dtype=BF16)
    k = torch.empty(_SLOTS, dim, dtype=BF16)
    r2t = torch.zeros(1, _SLOTS, dtype=torch.int32)
    # Scores [rows, width] float32: expanded, never written (compiled, not run).
    out = torch.empty(1, 1).expand(rows, width)
    indexer_logits(q, w, k, r2t, torch.zeros(rows, dtype=torch.long),
                   torch.full((rows,), width, dtype=torch.int32), scale=dim**-0.5,
                   width=width, out=out)  # fmt: skip


def _topk(rows: int, width: int) -> None:
    from sglang_amd.attention.topk import topk_positions

    # Expanded, never read or written (compiled, not run).
    scores = torch.empty(1, width).expand(rows, width)
    out = torch.empty(1, SPARSE_TOPK, dtype=torch.int32).expand(rows, SPARSE_TOPK)
    topk_positions(scores, SPARSE_TOPK, out=out)


def _extend(
    hq: int,
    hkv: int,
    dqk: int,
    dv: int,
    tokens: int,
    dtype: torch.dtype = BF16,
    sinks: bool = False,
    window: int | None = None,
) -> None:
    from sglang_amd.attention.extend import paged_extend

    new = 64  # query rows handed in; the tile plan does not change the kernel
    q = torch.empty(new, hq, dqk, dtype=dtype)
    k = torch.empty(_SLOTS, hkv, dqk, dtype=dtype)
    v = k[..., :dv] if (hkv == 1 and dv < dqk) else torch.empty(_SLOTS, hkv, dv, dtype=dtype)
    r2t = torch.zeros(1, _SLOTS, dtype=torch.int32)
    lens = torch.tensor([new], dtype=torch.int32)
    paged_extend(
        q, k, v, r2t, torch.arange(1), lens, lens, scale=0.1, kv_lens_cpu=[new], qo_lens_cpu=[new],
        sinks=torch.empty(hq, dtype=BF16) if sinks else None, sliding_window=window,
    )  # fmt: skip


def _moe(
    hidden: int,
    inter: int,
    topk: int,
    experts: int,
    tokens: int,
    weights: str,
    gpt_oss: bool = False,
) -> None:
    """One fused MoE layer: its four launches (align, gated GEMM1 with SiLU-and-mul,
    GEMM2, top-k combine), plus the two activation quantizers with A4W4. `gpt_oss`:
    with expert biases and gpt-oss's clamped SwiGLU over interleaved rows."""
    from sglang_amd.gemm.activation import SILU, gpt_oss_swiglu
    from sglang_amd.moe.fused import fused_moe
    from sglang_amd.moe.weights import Mxfp4Experts

    # The token count and the expert count size the alignment kernel's tiles
    # (its sort chunk, its histogram bins); the GEMMs only see them in the grid, so
    # one expert's weights stand for all of them (expanded: stride 0, nothing allocated).
    x = torch.empty(tokens, hidden, dtype=BF16)
    ids = torch.zeros(tokens, topk, dtype=torch.int32)
    w = torch.ones(tokens, topk)

    def stack(*shape: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(1, *shape, dtype=dtype).expand(experts, *shape)

    extra: dict = {"activation": SILU}
    if gpt_oss:
        extra = dict(
            activation=gpt_oss_swiglu(),
            b13=stack(2 * inter, dtype=BF16),
            b2=stack(hidden, dtype=BF16),
        )
    if weights == "bf16":
        w13, w2 = stack(2 * inter, hidden, dtype=BF16), stack(hidden, inter, dtype=BF16)
        fused_moe(x, w13, w2, w, ids, **extra)
        return
    u8 = torch.uint8
    q = Mxfp4Experts(
        stack(2 * inter, hidden // 2, dtype=u8),
        stack(2 * inter, hidden // 32, dtype=u8),
        stack(hidden, inter // 2, dtype=u8),
        stack(hidden, inter // 32, dtype=u8),
    )
    fused_moe(x, q, None, w, ids, act_mxfp4=weights == "a4w4", **extra)


# Expert parallelism's local permutes (ep/permute.py) on one EP rank: (model,
# hidden, top-k, experts, EP ranks). gpt-oss's 2880 is 2.8 of the 1024-column
# tile (a partial last chunk) and takes no fp8 wire (not a multiple of 128).
EP = (
    ("DeepSeek-V3 EP8", 7168, 8, 256, 8),
    ("gpt-oss-120b EP8", 2880, 4, 128, 8),
)
EP_TOKENS = (1, 64, 4096)  # low latency up to its capacity of 64, high throughput past it
EP_CAPACITY = 64


def _ep(hidden: int, topk: int, experts: int, world: int, tokens: int, wire_fmt: str) -> None:
    """One dispatch's plan and pack launches and its combine, bf16 tokens. Nothing
    runs, so the plan is handed in and the buffers are one row (expanded inputs:
    the grid comes from the token count, the code from the shapes)."""
    from sglang_amd.ep import permute, wire
    from sglang_amd.ep.opt_flags import permute_flags
    from sglang_amd.ep.plan import SendPlan

    flags = permute_flags(permute.current_target(None))
    capacity = EP_CAPACITY if tokens <= EP_CAPACITY else None
    layout = wire.RowLayout(hidden, topk, wire_fmt, BF16)
    x = torch.empty(1, hidden, dtype=BF16).expand(tokens, hidden)
    ids = torch.zeros(tokens, topk, dtype=torch.int32)
    permute.plan_triton(ids, experts // world, world, flags)
    slot = torch.zeros(tokens, world, dtype=torch.int32)
    plan = SendPlan(slot, torch.zeros(world, dtype=torch.long))
    buf = torch.empty(1, layout.row_bytes, dtype=torch.uint8)
    permute.pack_rows_triton(x, torch.ones(tokens, topk), ids, plan, layout, buf, capacity, flags)
    out = torch.empty(1, hidden, dtype=BF16).expand(tokens, hidden)
    permute.combine_triton(torch.empty(1, hidden, dtype=BF16), plan, BF16, capacity, out=out,
                           flags=flags)  # fmt: skip


def _linear(n: int, k: int, rows: int, a4w4: bool) -> None:
    from sglang_amd.quant.mxfp4_linear import mxfp4_linear

    x = torch.empty(rows, k, dtype=BF16)
    w = torch.empty(n, k // 2, dtype=torch.uint8)
    s = torch.empty(n, k // 32, dtype=torch.uint8)
    mxfp4_linear(x, w, s, act_mxfp4=a4w4)


# The subset `make test` compiles: one shape per kernel family and code path.
QUICK_MODELS = {
    "Llama-3.1-8B",
    "DeepSeek-V3.2 MLA 16 heads (tp8)",
    "DeepSeek-V3.2 indexer",
    "DeepSeek-V3.2 indexer FP8",
    "DeepSeek-V3.2 indexer top-k",
    "DeepSeek-V3 MLA 16 heads (tp8)",
    "DeepSeek-V3 prefill 128 heads",
    "DeepSeek-V3 MLA extend 16 heads",
    "DeepSeek-V3",
    "DeepSeek-V3 o_proj",
    "gpt-oss-120b swiglu+bias",
    "gpt-oss-120b tp8 sinks sliding",
    "DeepSeek-V3 EP8",
}


def cases(quick: bool = False) -> list[Case]:
    """The matrix; `quick` keeps one size of a few shapes (what `make test` compiles)."""
    out = _all_cases(quick)
    return [c for c in out if c.model in QUICK_MODELS] if quick else out


def attention_cases(
    quick: bool, decode: Callable[..., object], extend: Callable[..., object]
) -> list[Case]:
    """The matrix's decode and extend cases, labelled as the audit pairs ours with
    a peer's: `decode(hq, hkv, dqk, dv, batch, ctx)` and `extend(hq, hkv, dqk, dv,
    tokens)` make each case's launches."""
    out: list[Case] = []
    decode_sizes = ((8, 8192),) if quick else DECODE_SIZES
    for model, hq, hkv, dqk, dv in DECODE_ATTENTION:
        for b, ctx in decode_sizes:
            out.append(
                Case(
                    model,
                    "attention.decode",
                    f"batch {b}, context {ctx}",
                    lambda a=(hq, hkv, dqk, dv, b, ctx): decode(*a),
                )
            )
    for model, hq, hkv, dqk, dv in EXTEND_ATTENTION:
        for t in EXTEND_SIZES[:1] if quick else EXTEND_SIZES:
            out.append(
                Case(
                    model,
                    "attention.extend",
                    f"{t} new tokens",
                    lambda a=(hq, hkv, dqk, dv, t): extend(*a),
                )
            )
    return out


def sparse_cases(quick: bool, sparse: Callable[..., object]) -> list[Case]:
    """The matrix's DSA sparse-attention cases, labelled as the audit pairs ours with
    a peer's: `sparse(hq, hkv, dqk, dv, rows)` makes each case's launches."""
    return [
        Case(
            model,
            "attention.sparse",
            f"{rows} query tokens, top-{SPARSE_TOPK}",
            lambda a=(hq, hkv, dqk, dv, rows): sparse(*a),
        )
        for model, hq, hkv, dqk, dv in SPARSE_ATTENTION
        for rows in (SPARSE_ROWS[1:2] if quick else SPARSE_ROWS)
    ]


def indexer_fp8_cases(quick: bool, fp8: Callable[..., object]) -> list[Case]:
    """The matrix's DSA FP8 indexer cases (SGLang's index-K cache), labelled as the
    audit pairs ours with a peer's: `fp8(heads, dim, rows, width)` makes each
    case's launches."""
    name, heads, dim = INDEXER
    return [
        Case(
            f"{name} FP8",
            "attention.indexer",
            f"{rows} query tokens, {width} positions, SGLang's index-K cache",
            lambda a=(heads, dim, rows, width): fp8(*a),
        )
        for rows, width in (INDEXER_SIZES[1:2] if quick else INDEXER_SIZES[::3])
    ]


def moe_cases(
    quick: bool,
    moe: Callable[..., object],
    weights: Sequence[str],
    models: Sequence[tuple] = MOE,
) -> list[Case]:
    """The fused-MoE cases of `models` (MOE rows) for each of our `weights` ("bf16",
    "mxfp4", "a4w4"), labelled as the audit pairs ours with a peer's:
    `moe(hidden, inter, topk, experts, tokens, weights)` makes each case's launches."""
    return [
        Case(
            model,
            f"moe.fused {w}",
            f"{t} tokens",
            lambda a=(hidden, inter, topk, experts, t, w): moe(*a),
        )
        for model, hidden, inter, topk, experts in models
        for w in weights
        for t in (MOE_TOKENS[1:2] if quick else MOE_TOKENS)
    ]


def _all_cases(quick: bool) -> list[Case]:
    out = attention_cases(quick, _decode, _extend)
    if not quick:  # served with --dtype float32 (SGLang allows it on GPUs): 4-byte K/V tiles
        f32 = attention_cases(
            True, partial(_decode, dtype=torch.float32), partial(_extend, dtype=torch.float32)
        )
        out += [replace(c, model=f"{c.model} float32") for c in f32]
    model, hq, hkv, dqk, dv = GPT_OSS_ATTENTION
    for window in (None, GPT_OSS_WINDOW):
        layer = "sliding" if window else "full"
        sink = dict(sinks=True, window=window)
        for b, ctx in ((8, 8192),) if quick else DECODE_SIZES:
            out.append(
                Case(
                    f"{model} {layer}",
                    "attention.decode",
                    f"batch {b}, context {ctx}",
                    lambda a=(hq, hkv, dqk, dv, b, ctx), kw=sink: _decode(*a, **kw),
                )
            )
        for t in EXTEND_SIZES[:1] if quick else EXTEND_SIZES:
            out.append(
                Case(
                    f"{model} {layer}",
                    "attention.extend",
                    f"{t} new tokens",
                    lambda a=(hq, hkv, dqk, dv, t), kw=sink: _extend(*a, **kw),
                )
            )
    name, heads, dim = INDEXER
    for rows, width in INDEXER_SIZES[1:2] if quick else INDEXER_SIZES:
        out.append(
            Case(
                name,
                "attention.indexer",
                f"{rows} query tokens, {width} positions",
                lambda a=(heads, dim, rows, width): _indexer(*a),
            )
        )
    for rows, width in INDEXER_SIZES[1:2] if quick else INDEXER_SIZES:
        out.append(
            Case(
                f"{name} top-k",
                "attention.indexer",
                f"{rows} query tokens, top {SPARSE_TOPK} of {width} positions",
                lambda a=(rows, width): _topk(*a),
            )
        )
    out += indexer_fp8_cases(quick, _indexer_fp8)
    out += sparse_cases(quick, _sparse)
    out += moe_cases(quick, _moe, ("bf16", "mxfp4", "a4w4"))
    out += moe_cases(quick, partial(_moe, gpt_oss=True), GPT_OSS_WEIGHTS, (GPT_OSS_MOE,))
    for rows in (1, 64) if not quick else (64,):
        for a4w4 in (False, True):
            out.append(
                Case(
                    "DeepSeek-V3 o_proj",
                    f"quant.mxfp4_linear {'a4w4' if a4w4 else 'w4a16'}",
                    f"{rows} rows",
                    lambda a=(7168, 16384, rows, a4w4): _linear(*a),
                )
            )
    for model, hidden, topk, experts, world in EP:
        for wire_fmt in ("none", "fp8", "mxfp4") if hidden % 128 == 0 else ("none", "mxfp4"):
            for t in EP_TOKENS[1:] if quick else EP_TOKENS:
                mode = "low latency" if t <= EP_CAPACITY else "high throughput"
                out.append(
                    Case(
                        model,
                        f"ep_permute.pack+combine {wire_fmt}",
                        f"{t} tokens, {mode}",
                        lambda a=(hidden, topk, experts, world, t, wire_fmt): _ep(*a),
                    )
                )
    return out
