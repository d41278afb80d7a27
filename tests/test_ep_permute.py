"""The communicator's local permutes: the Triton tier against the torch tier (the oracle).

`ep_permute.pack` (plan + every token's wire record into its destinations' rows)
and `ep_permute.combine` (each token's returned rows summed in rank order), on
fresh random inputs: no tokens, one, odd counts; world 1-8; top-k 1-8; -1 slots,
ids past the last expert, every token to one rank; hidden sizes that fit each
wire (with padding bytes between fields and rows that cross a tile edge); both
layouts (high throughput: exact rank-grouped buffer; low latency: `capacity`
rows a rank, padding zeroed). Output buffers are poisoned first, with rows past
what the call owns that must stay untouched. Bytes and sums are compared bit for
bit: the FP8 wire is rounded on the bits in the kernel (not by Triton's cast,
which the interpreter gets wrong), and bf16 sums by hand too, so nothing here
needs a tolerance. The kernels run on a GPU where there is one (the torch tier
on the CPU beside them), else in Triton's interpreter (TRITON_INTERPRET=1).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import pytest
import torch

from sglang_amd.ep import wire
from sglang_amd.ep.plan import SendPlan
from sglang_amd.fp8_blocks import quantize_fp8

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _dev(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(DEVICE) for t in tensors)


def _on_cpu(plan: SendPlan) -> SendPlan:
    return SendPlan(plan.slot.cpu(), plan.counts.cpu())


POISON = 0xA5
EXTRA_ROWS = 3  # rows past the call's in the poisoned buffer


@dataclass(frozen=True)
class Shape:
    tokens: int
    world: int
    topk: int
    experts_per_rank: int
    hidden: int
    routing: str = "random"  # "random", "one_rank" (every token to the last rank), "nowhere"


# Each exercises something the others do not (see the module docstring).
SHAPES = (
    Shape(0, 2, 2, 3, 128),
    Shape(1, 1, 1, 4, 256),
    Shape(1, 8, 8, 2, 384),
    Shape(7, 3, 4, 3, 640),
    Shape(9, 5, 3, 2, 96),
    Shape(33, 8, 8, 4, 512),
    Shape(6, 4, 2, 2, 256, "one_rank"),
    Shape(5, 2, 3, 2, 128, "nowhere"),
    Shape(12, 2, 6, 16, 384),
)
# (wire, hidden override or None): each wire at sizes it takes; odd hidden sizes
# leave padding bytes after x (bf16: 2 bytes) or after the MXFP4 scales (11 bytes).
WIRE_SIZES = {"none": (None, 7), "fp8": (None,), "mxfp4": (None, 352)}


def _inputs(shape: Shape, hidden: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    t, k = shape.tokens, shape.topk
    n = shape.world * shape.experts_per_rank
    x = (torch.randn(t, hidden, generator=g) * torch.logspace(-3, 2, hidden)).to(dtype)
    w = torch.rand(t, k, generator=g)
    if shape.routing == "one_rank":
        ids = torch.randint(n - shape.experts_per_rank, n, (t, k), generator=g)
    elif shape.routing == "nowhere":
        ids = torch.randint(n, 2 * n, (t, k), generator=g)  # past the last expert
        ids[:, 0] = -1
    else:
        ids = torch.randint(0, n, (t, k), generator=g)
        ids[torch.rand(t, k, generator=g) < 0.25] = -1
        ids[t // 2 :, -1] = n + 1  # past the last expert: sent nowhere for that slot
    return x, w, ids


def _id(case) -> str:
    shape, wire_fmt, hidden, dtype, ll = case
    return (
        f"t{shape.tokens}-w{shape.world}-k{shape.topk}-{shape.routing}-{wire_fmt}-h{hidden}-"
        f"{str(dtype)[6:]}-{'ll' if ll else 'ht'}"
    )


def _cases():
    out = []
    dtypes = (torch.bfloat16, torch.float32, torch.float16)
    i = 0
    for shape in SHAPES:
        for wire_fmt, sizes in WIRE_SIZES.items():
            for size in sizes:
                hidden = size or shape.hidden
                if wire_fmt == "fp8" and hidden % 128:
                    continue
                for low_latency in (False, True):
                    case = (shape, wire_fmt, hidden, dtypes[i % 3], low_latency)
                    marks = [pytest.mark.full] if shape.tokens > 16 else []
                    out.append(pytest.param(case, marks=marks, id=_id(case)))
                    i += 1
    return out


CASES = _cases()


def _capacity(shape: Shape, low_latency: bool) -> int | None:
    return shape.tokens + 2 if low_latency else None


# The 33-token shape (5 to 20 s a wire in the interpreter) runs under `make test-full`.
@pytest.mark.parametrize("case", CASES)
def test_pack_matches_the_torch_tier_byte_for_byte(case):
    from sglang_amd.ep.permute import pack_triton
    from sglang_amd.ep.permute_reference import pack_torch

    shape, wire_fmt, hidden, dtype, low_latency = case
    x, w, ids = _inputs(shape, hidden, dtype, seed=zlib.crc32(_id(case).encode()))
    layout = wire.RowLayout(hidden, shape.topk, wire_fmt, dtype)
    cap = _capacity(shape, low_latency)
    args = (x, w, ids, layout, shape.experts_per_rank, shape.world, cap)
    want = pack_torch(*args)
    rows = want.buf.shape[0]
    out = torch.full((rows + EXTRA_ROWS, layout.row_bytes), POISON, dtype=torch.uint8)
    out = out.to(DEVICE)
    got = pack_triton(*_dev(x, w, ids), *args[3:], out=out)
    assert got.buf.shape == want.buf.shape and (not rows or got.buf.data_ptr() == out.data_ptr())
    buf = got.buf.cpu()
    assert torch.equal(buf, want.buf), (buf != want.buf).nonzero()[:8].tolist()
    assert (out[rows:] == POISON).all(), "rows past the send buffer were written"
    assert got.send_counts == want.send_counts
    assert torch.equal(got.plan.counts.cpu(), want.plan.counts)
    assert got.plan.counts.dtype == torch.int64
    assert torch.equal(got.plan.slot.long().cpu(), want.plan.slot)
    assert torch.equal(got.plan.dest.cpu(), want.plan.dest)
    if shape.routing == "nowhere":
        assert rows == (shape.world * cap if low_latency else 0)
    if low_latency and shape.tokens:  # every padding row is zero, as the torch tier sends it
        counts = want.plan.counts
        pad = torch.arange(cap) >= counts[:, None]
        assert (buf.view(shape.world, cap, -1)[pad] == 0).all()


def _plans(shape: Shape, ids: torch.Tensor):
    from sglang_amd.ep.opt_flags import permute_flags
    from sglang_amd.ep.permute import plan_triton
    from sglang_amd.ep.plan import plan_sends
    from sglang_amd.target_info import INTERPRETER, current_target

    (ids_d,) = _dev(ids)
    flags = permute_flags(INTERPRETER if DEVICE == "cpu" else current_target(ids_d.device))
    triton_plan = plan_triton(ids_d, shape.experts_per_rank, shape.world, flags)
    return {"torch": plan_sends(ids, shape.experts_per_rank, shape.world), "triton": triton_plan}


COMBINE_DTYPES = (  # (what travels back, the token dtype)
    (torch.float32, torch.float32),
    (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.bfloat16),
    (torch.float16, torch.float16),
    (torch.float32, torch.float16),
    (torch.bfloat16, torch.float32),
)


@pytest.mark.parametrize("low_latency", [False, True], ids=["ht", "ll"])
@pytest.mark.parametrize(
    "shape",
    [pytest.param(s, marks=[pytest.mark.full] if s.tokens > 16 else []) for s in SHAPES],
    ids=lambda s: f"t{s.tokens}-w{s.world}-k{s.topk}",
)
def test_combine_matches_the_torch_tier_bit_for_bit(shape, low_latency):
    """Every dtype pair, from either tier's plan (the tiers may be forced apart)."""
    from sglang_amd.ep.permute import combine_triton
    from sglang_amd.ep.permute_reference import combine_torch

    hidden = shape.hidden
    _, _, ids = _inputs(shape, hidden, torch.float32, seed=shape.tokens * 31 + shape.world)
    plans = _plans(shape, ids)
    cap = _capacity(shape, low_latency)
    rows = shape.world * cap if low_latency else int(plans["torch"].counts.sum())
    g = torch.Generator().manual_seed(rows)
    for i, (back_dtype, x_dtype) in enumerate(COMBINE_DTYPES):
        # Magnitudes over many binades: the rank-order sums round at every add.
        back = (torch.randn(rows, hidden, generator=g) * 10 ** torch.randint(-2, 3, (rows, 1),
                generator=g)).to(back_dtype)  # fmt: skip
        plan = (
            plans["triton"]
            if i % 2
            else SendPlan(*_dev(plans["torch"].slot, plans["torch"].counts))
        )
        want = combine_torch(back, plans["torch"], x_dtype, cap)
        assert torch.equal(combine_torch(back, _on_cpu(plans["triton"]), x_dtype, cap), want)
        out = torch.full((shape.tokens + EXTRA_ROWS, hidden), float("nan"), dtype=x_dtype)
        out = out.to(DEVICE)
        got = combine_triton(*_dev(back), plan, x_dtype, cap, out=out[: shape.tokens])
        assert got.dtype == x_dtype and (not shape.tokens or got.data_ptr() == out.data_ptr())
        got = got.cpu()
        assert torch.equal(got, want), (back_dtype, x_dtype, (got - want).abs().max())
        assert out[shape.tokens :].isnan().all(), "rows past the tokens were written"


def test_combine_rounds_bf16_ties_to_even_at_every_add():
    """float32 rows summed into bf16 tokens: ties round to even (Triton's interpreter
    truncates a float32 -> bf16 cast; the kernel rounds on the bits)."""
    from sglang_amd.ep.permute import combine_triton
    from sglang_amd.ep.permute_reference import combine_torch

    ulp = 2.0**-7  # bf16 spacing in [1, 2)
    vals = torch.tensor([1 + ulp / 2, 1 + 3 * ulp / 2, -(1 + ulp / 2), 1 + ulp / 4, 255.5, 0.0])
    hidden = vals.numel()
    world, tokens = 3, 2
    slot = torch.tensor([[0, 0, 0], [1, -1, 1]], dtype=torch.int32)
    plan = SendPlan(slot, torch.tensor([2, 1, 2]))
    back = torch.stack([vals, vals * 3, vals / 7, vals * 5, vals * 0.5])
    want = combine_torch(back, plan, torch.bfloat16)
    got = combine_triton(*_dev(back), SendPlan(*_dev(slot, plan.counts)), torch.bfloat16).cpu()
    assert got.shape == (tokens, hidden) and torch.equal(got, want)

    def truncate(v):  # what a truncating cast would give
        return (v.view(torch.int32) & -65536).view(torch.float32)

    acc = torch.zeros(tokens, hidden)
    for r in range(world):
        rows = torch.where(
            slot[:, r, None] >= 0, back[(slot[:, r] + plan.counts[:r].sum()).clamp(min=0)], 0
        )
        acc = truncate(acc + truncate(rows))
    assert not torch.equal(acc.to(torch.bfloat16), want)  # the ties above tell the two apart


def test_fp8_wire_rounds_as_torch_at_every_edge():
    """x / scale at nearest-even ties, mantissas that carry into the exponent (the
    interpreter's float8 cast drops that carry), subnormals, +-448 and -0: the
    kernel's bytes are `fp8_blocks.quantize_fp8`'s. A block holding NaN or inf
    decodes to NaN on both tiers."""
    from sglang_amd.ep.permute import pack_triton
    from sglang_amd.ep.permute_reference import pack_torch

    amax = 448.0 * 4  # scale 4: x = 4 * y hits y's edges exactly
    edges = [amax, -amax, -0.0, 0.0]
    for m in range(8):  # a tie between every pair of mantissas, in several binades
        for e in (-9, -7, -6, -3, 0, 4, 7):
            edges += [4 * (1 + (m + 0.5) / 8) * 2.0**e, -4 * (1 + (m + 0.5) / 8) * 2.0**e]
    edges += [4 * 2.0**-9 * (k + 0.5) for k in range(8)]  # subnormal ties
    edges += [4 * 447.9, 4 * 1.9999, 4 * 0.015624]
    row = torch.tensor(edges)
    hidden = 128 * -(-row.numel() // 128)
    row = torch.nn.functional.pad(row, (0, hidden - row.numel()))
    x = torch.stack([row, torch.randn(hidden) * 1e-6, torch.zeros(hidden), row.flip(0)])
    bad = x[1].clone()
    bad[5], bad[200 % hidden] = float("nan"), float("inf")
    x = torch.cat([x, bad[None]])
    layout = wire.RowLayout(hidden, 1, "fp8", torch.float32)
    w, ids = torch.ones(5, 1), torch.zeros(5, 1, dtype=torch.long)
    got = pack_triton(*_dev(x, w, ids), layout, 1, 1)
    got = type(got)(got.buf.cpu(), _on_cpu(got.plan), got.send_counts)
    want = pack_torch(x, w, ids, layout, 1, 1)
    x8, scale = quantize_fp8(x[:4])
    assert torch.equal(wire.field(layout, got.buf, "x")[:4].view(torch.uint8), x8.view(torch.uint8))
    assert torch.equal(wire.field(layout, got.buf, "scales")[:4], scale)
    assert torch.equal(got.buf[:4], want.buf[:4])
    for packed in (got, want):
        back = wire.dequantize(layout, wire.field(layout, packed.buf, "x"),
                               wire.field(layout, packed.buf, "scales"))  # fmt: skip
        assert back[4].isnan().all(), "a non-finite block must decode to NaN"
        assert back[:4].isfinite().all()


@pytest.mark.cpu_interpreter  # counted by the interpreter's launch counter
def test_low_latency_pack_reads_nothing_on_the_host(monkeypatch):
    """The low-latency pack and the combine never read the device from the host (what
    keeps them capturable in a CUDA graph); the high-throughput pack reads the counts
    once, for the all-to-all's sizes. Two launches for the pack, one for the combine,
    and no torch op besides allocations."""
    from sglang_amd.audit.traffic import counting
    from sglang_amd.ep.permute import combine_triton, pack_triton

    shape = Shape(6, 4, 4, 2, 256)
    x, w, ids = _inputs(shape, 256, torch.bfloat16, seed=3)
    layout = wire.RowLayout(256, 4, "mxfp4", torch.bfloat16)
    reads: list[str] = []

    def host_read(name):
        real = getattr(torch.Tensor, name)

        def read(self, *a, **k):
            reads.append(name)
            return real(self, *a, **k)

        return read

    for name in ("tolist", "item", "__int__", "__bool__", "__index__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, host_read(name))
    with counting() as t:
        packed = pack_triton(x, w, ids, layout, 2, 4, capacity=8)
        back = torch.randn(packed.buf.shape[0], 256).to(torch.bfloat16)
    with counting() as tc:
        combine_triton(back, packed.plan, torch.bfloat16, 8)
    assert reads == []
    assert t.triton_launches == 2 and tc.triton_launches == 1 and tc.torch_launches == 0
    assert set(t.torch_ops) <= {"randn", "_to_copy"}, t.torch_ops  # the test's own back rows
    pack_triton(x, w, ids, layout, 2, 4)
    assert reads == ["tolist"]


@pytest.mark.cpu_interpreter  # Triton is the CPU's tier only under the interpreter
def test_tiers_serve_the_ops_and_a_refused_call_falls_to_torch(monkeypatch, caplog):
    from sglang_amd.ep.permute_reference import pack_torch
    from sglang_amd.tiers import Tier, TieredOp

    pack = TieredOp("ep_permute.pack", "cpu")
    assert pack.tier is Tier.TRITON  # the interpreter makes Triton the CPU tier
    shape = Shape(4, 2, 2, 2, 128)
    x, w, ids = _inputs(shape, 128, torch.float64, seed=1)
    layout = wire.RowLayout(128, 2, "none", torch.float64)
    args = (x, w, ids, layout, 2, 2)
    with caplog.at_level(logging.WARNING):
        got = pack(*args)  # float64 tokens: the Triton tier refuses, torch serves
    assert "float64" in caplog.text and torch.equal(got.buf, pack_torch(*args).buf)
    # The family variable forces both ops; an op's own variable wins over it. Not
    # SGLANG_AMD_EP_TIER: that one picks the communicator's transport.
    monkeypatch.setenv("SGLANG_AMD_EP_PERMUTE_TIER", "torch")
    monkeypatch.setenv("SGLANG_AMD_EP_PERMUTE_COMBINE_TIER", "triton")
    assert TieredOp("ep_permute.pack", "cpu").tier is Tier.TORCH
    assert TieredOp("ep_permute.combine", "cpu").tier is Tier.TRITON
    monkeypatch.setenv("SGLANG_AMD_EP_TIER", "torch")
    monkeypatch.delenv("SGLANG_AMD_EP_PERMUTE_TIER")
    assert TieredOp("ep_permute.pack", "cpu").tier is Tier.TRITON


def test_a_forced_permute_tier_that_cannot_run_is_refused_at_start(monkeypatch):
    """The ep capability owns both ops, so the shared start check selects them."""
    from types import SimpleNamespace

    from sglang_amd import capability
    from sglang_amd.flags import TierError

    args = SimpleNamespace(
        moe_a2a_backend="customized", tp_size=2, ep_size=2, moe_runner_backend="amd",
        deepep_mode="auto", device="cpu",
    )  # fmt: skip
    assert "ep" in [c.name for c in capability.check_start(args, None)]
    monkeypatch.setenv("SGLANG_AMD_EP_PERMUTE_TIER", "aiter")
    with pytest.raises(TierError, match="SGLANG_AMD_EP_PERMUTE_TIER=aiter cannot serve"):
        capability.check_start(args, None)
