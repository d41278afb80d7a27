"""Triton fused MoE (bf16 and MXFP4 W4A16 experts) against the torch reference.

Under TRITON_INTERPRET=1 on CPU with small shapes; compiled on a GPU. Also the
layer's launch budget (align, gated GEMM1, GEMM2, combine: four launches, no
torch kernel between them), the alignment kernel's contract, and outputs
pre-filled with NaN (every row the kernels should write, they write).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sglang_amd.moe.align import align_by_expert, max_blocks
from sglang_amd.moe.fused import fused_moe
from sglang_amd.moe.reference import fused_moe_reference, quantize_experts
from sglang_amd.moe.routing import softmax_topk
from sglang_amd.testing import capture_cuda_graph

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def make(experts, k, tokens, hidden=64, inter=32, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=g) * 0.1
    w2 = torch.randn(experts, hidden, inter, generator=g) * 0.1
    x = torch.randn(tokens, hidden, generator=g).to(dtype)
    w, ids = softmax_topk(torch.randn(tokens, experts, generator=g), k)
    return x, w13, w2, w, ids


# 512 tokens (4,096 slots at k 8) costs 10-40 s a case in the interpreter: make test-full.
@pytest.mark.parametrize("tokens", [1, 33, pytest.param(512, marks=pytest.mark.full)])
@pytest.mark.parametrize("k", [1, 2, 8])
@pytest.mark.parametrize("experts", [8, 64])
@pytest.mark.parametrize("mxfp4", [False, True])
def test_fused_matches_reference_fp32(experts, k, tokens, mxfp4):
    """The issue's grid; with 1 or 33 tokens over 64 experts most experts get no token."""
    x, w13, w2, w, ids = make(experts, k, tokens, seed=experts + k + tokens)
    if mxfp4:
        q = quantize_experts(w13, w2)
        want = fused_moe_reference(x, q, None, w, ids)
        dev = type(q)(*(t.to(DEVICE) for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
        got = fused_moe(x.to(DEVICE), dev, None, w.to(DEVICE), ids.to(DEVICE))
    else:
        want = fused_moe_reference(x, w13, w2, w, ids)
        got = fused_moe(x.to(DEVICE), w13.to(DEVICE), w2.to(DEVICE), w.to(DEVICE), ids.to(DEVICE))
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)


def test_fused_bf16_mxfp4_and_unrouted_slots():
    x, w13, w2, w, ids = make(8, 2, 20, dtype=torch.bfloat16, seed=5)
    ids[3, 1] = -1  # expert parallel: a slot whose expert lives elsewhere
    q = quantize_experts(w13, w2)
    want = fused_moe_reference(x, q, None, w, ids)
    dev = type(q)(*(t.to(DEVICE) for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    got = fused_moe(x.to(DEVICE), dev, None, w.to(DEVICE), ids.to(DEVICE))
    torch.testing.assert_close(got.cpu().float(), want.float(), atol=2e-2, rtol=2e-2)


def test_a4w4_needs_mxfp4_experts():
    x, w13, w2, w, ids = make(4, 1, 3)
    with pytest.raises(ValueError, match="A4W4"):
        fused_moe(x, w13, w2, w, ids, act_mxfp4=True)


def test_hidden_mismatch_is_an_error():
    x, w13, w2, w, ids = make(4, 1, 3)
    with pytest.raises(ValueError, match="hidden size"):
        fused_moe(x[:, :32], w13, w2, w, ids)


def _a4w4_by_token(x, q, w, ids):
    """A4W4 written token by token from the definition (independent of both tiers)."""
    from sglang_amd.quant.mxfp4 import fake_quantize_mxfp4

    w13, w2 = q.dequantize(torch.float32)
    xq = fake_quantize_mxfp4(x.float())
    out = torch.zeros(x.shape, dtype=torch.float32)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            if e < 0:  # routed to another rank: contributes nothing here
                continue
            gate, up = (w13[e] @ xq[t]).chunk(2)
            h = fake_quantize_mxfp4((torch.nn.functional.silu(gate) * up)[None])[0]
            out[t] += w[t, j] * (w2[e] @ h)
    return out


@pytest.mark.parametrize(
    "experts,k,tokens,hidden,inter",
    # K of 96 / 160: the last 64-wide K tile of the dot_scaled kernel is partial.
    # 70 tokens: above 64, x takes a quantizer launch instead of GEMM1's prologue.
    [(8, 2, 9, 64, 32), (64, 8, 3, 96, 96), (8, 1, 40, 160, 64), (8, 2, 70, 64, 32)],
)
def test_a4w4_matches_definition(experts, k, tokens, hidden, inter):
    x, w13, w2, w, ids = make(experts, k, tokens, hidden, inter, seed=11 + tokens)
    ids[0, 0] = -1  # a slot routed to another rank
    q = quantize_experts(w13, w2)
    want = _a4w4_by_token(x, q, w, ids)
    ref = fused_moe_reference(x, q, None, w, ids, act_mxfp4=True)
    dev = type(q)(*(t.to(DEVICE) for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    got = fused_moe(x.to(DEVICE), dev, None, w.to(DEVICE), ids.to(DEVICE), act_mxfp4=True)
    torch.testing.assert_close(ref, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)
    # Really A4: rounding the activations moves the result off W4A16.
    w4a16 = fused_moe_reference(x, q, None, w, ids)
    assert (w4a16 - want).abs().max() > 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 7, 64, 512, 2048])
@pytest.mark.parametrize("experts,k", [(8, 2), (64, 8), (256, 8)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_gpu_grid(experts, k, tokens, dtype):
    """Compiled kernels at real widths (hidden 1024, intermediate 512), both weight kinds."""
    x, w13, w2, w, ids = make(experts, k, tokens, hidden=1024, inter=512, dtype=dtype, seed=tokens)
    q = quantize_experts(w13, w2)
    dev = type(q)(*(t.cuda() for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    # The reference rounds where the kernels store (H200: bf16 slots of magnitude
    # ~16 cancelled to ~0 and left 0.17 against the float32 definition).
    out = fused_moe(x.cuda(), dev, None, w.cuda(), ids.cuda())
    want = fused_moe_reference(x, q, None, w, ids, stored_as=dtype)
    torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)
    out = fused_moe(x.cuda(), dev, None, w.cuda(), ids.cuda(), act_mxfp4=True)  # A4W4
    want = fused_moe_reference(x, q, None, w, ids, act_mxfp4=True, stored_as=dtype)
    torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)
    out = fused_moe(x.cuda(), w13.to(dtype).cuda(), w2.to(dtype).cuda(), w.cuda(), ids.cuda())
    want = fused_moe_reference(x, w13.to(dtype), w2.to(dtype), w, ids, stored_as=dtype)
    torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)


def test_torch_tier_under_graph_capture_is_a_clear_error(monkeypatch):
    """The torch tier reads expert ids on the host; inside a CUDA-graph capture it
    must say so (the plugin turns graphs off at start when that tier serves)."""
    from dataclasses import replace

    from sglang_amd.moe.experts import ExpertsOp
    from sglang_amd.tiers import Tier

    op = ExpertsOp("cpu")
    op.selection = replace(op.selection, tier=Tier.TORCH)
    x, w13, w2, w, ids = make(4, 2, 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="--disable-cuda-graph"):
        op(x, w13, w2, w, ids)


@pytest.mark.gpu
@pytest.mark.parametrize("act_mxfp4", [False, True])
def test_gpu_fused_moe_replays_in_a_cuda_graph(act_mxfp4):
    """What serving a MoE layer under SGLang's CUDA graphs needs: captured once,
    replayed with other tokens and other routings (experts that go from many
    tokens to none) into the same buffers."""
    experts, k, tokens = 64, 8, 16
    x, w13, w2, w, ids = make(experts, k, tokens, hidden=1024, inter=512, dtype=torch.bfloat16)
    q = quantize_experts(w13, w2)
    dev = type(q)(*(t.cuda() for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))
    x_s, w_s, ids_s = x.cuda(), w.cuda(), ids.cuda()
    out = torch.empty_like(x_s)

    def launch():
        out.copy_(fused_moe(x_s, dev, None, w_s, ids_s, act_mxfp4=act_mxfp4))

    graph = capture_cuda_graph(launch)

    for seed in (1, 2, 3):
        x2, _, _, w2_, ids2 = make(experts, k, tokens, hidden=1024, inter=512, seed=seed)
        if seed == 3:  # every token on the same 8 experts: the rest get none
            ids2 = torch.arange(k).expand(tokens, k).contiguous()
        x_s.copy_(x2.to(torch.bfloat16))
        w_s.copy_(w2_)
        ids_s.copy_(ids2)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        want = fused_moe_reference(x2.to(torch.bfloat16), q, None, w2_, ids2,
                                   act_mxfp4=act_mxfp4, stored_as=torch.bfloat16)  # fmt: skip
        torch.testing.assert_close(out.cpu().float(), want.float(), atol=3e-2, rtol=3e-2)


def _to(q, device):
    return type(q)(*(t.to(device) for t in (q.w13, q.w13_scale, q.w2, q.w2_scale)))


@pytest.mark.parametrize(
    "experts,k,tokens,hidden,inter",
    # hidden 40 / inter 24: partial K and N tiles (float weights only; MXFP4 needs % 32).
    [(4, 1, 1, 64, 32), (8, 2, 13, 64, 64), (16, 4, 7, 96, 32), (8, 3, 5, 40, 24)],
)
@pytest.mark.parametrize("weights", ["float", "mxfp4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_matches_reference_fresh_inputs(experts, k, tokens, hidden, inter, weights, dtype):
    if weights == "mxfp4" and (hidden % 32 or inter % 32):
        pytest.skip("MXFP4 needs hidden and intermediate % 32")
    x, w13, w2, w, ids = make(experts, k, tokens, hidden, inter, dtype, seed=tokens * k + hidden)
    if weights == "mxfp4":
        q = quantize_experts(w13, w2)
        want = fused_moe_reference(x, q, None, w, ids)
        got = fused_moe(x.to(DEVICE), _to(q, DEVICE), None, w.to(DEVICE), ids.to(DEVICE))
    else:
        w13, w2 = w13.to(dtype), w2.to(dtype)
        want = fused_moe_reference(x, w13, w2, w, ids)
        got = fused_moe(*(t.to(DEVICE) for t in (x, w13, w2, w, ids)))
    assert got.dtype == dtype and got.shape == x.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.cpu().float(), want.float(), atol=tol, rtol=tol)


def _poisoned_empty(real):
    """torch.empty whose memory is garbage the way a reused allocation can be:
    NaN for floats, a large id for ints, 0xAB for bytes."""

    def empty(*args, **kwargs):
        t = real(*args, **kwargs)
        if t.is_floating_point():
            return t.fill_(float("nan"))
        return t.fill_(0xAB if t.dtype == torch.uint8 else 123456)

    return empty


@pytest.mark.parametrize("mode", ["float", "mxfp4", "a4w4"])
def test_outputs_prefilled_with_nan_are_fully_written(monkeypatch, mode):
    """Every buffer fused_moe allocates starts as garbage (NaN): the kernels write
    every element they later read, and unrouted slots' rows are never read."""
    x, w13, w2, w, ids = make(8, 2, 9, dtype=torch.bfloat16, seed=21)
    ids[2, 1] = -1
    ids[4] = -1  # a token routed to no local expert: its output row is zero
    if mode == "float":
        args = (w13.bfloat16(), w2.bfloat16())
        want = fused_moe_reference(x, *args, w, ids)
        args = tuple(t.to(DEVICE) for t in args)
    else:
        q = quantize_experts(w13, w2)
        want = fused_moe_reference(x, q, None, w, ids, act_mxfp4=mode == "a4w4")
        args = (_to(q, DEVICE), None)
    monkeypatch.setattr(torch, "empty", _poisoned_empty(torch.empty))
    got = fused_moe(x.to(DEVICE), *args, w.to(DEVICE), ids.to(DEVICE), act_mxfp4=mode == "a4w4")
    monkeypatch.undo()
    assert not got.isnan().any()
    assert (got[4] == 0).all()
    torch.testing.assert_close(got.cpu().float(), want.float(), atol=2e-2, rtol=2e-2)


def test_ids_outside_the_experts_are_routed_nowhere():
    """-1 and ids >= E (another rank's experts) contribute nothing; int64 ids that
    would wrap into range as int32 too."""
    experts = 8
    x, w13, w2, w, ids = make(experts, 3, 11, seed=4)
    ids = ids.long()
    foreign = ids.clone()
    foreign[0, 0] = -1
    foreign[1, 2] = experts
    foreign[3, 1] = 2**32 + 1  # int32 of it is 1: must not land on expert 1
    foreign[5] = -7
    want = fused_moe_reference(x, w13, w2, w, torch.where(foreign == ids, ids, -1))
    got = fused_moe(*(t.to(DEVICE) for t in (x, w13, w2, w, foreign)))
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)
    assert (got[5] == 0).all()


@pytest.mark.parametrize("tokens,k,experts,block", [(1, 1, 4, 16), (37, 4, 8, 16), (64, 8, 64, 4)])
@pytest.mark.parametrize("id_dtype", [torch.int32, torch.int64])
def test_align_kernel_contract(tokens, k, experts, block, id_dtype, monkeypatch):
    g = torch.Generator().manual_seed(tokens + experts)
    ids = torch.randint(0, experts, (tokens, k), generator=g).to(id_dtype)
    ids[0, 0] = -1
    if tokens > 3:
        ids[3, :] = experts + 5
    monkeypatch.setattr(torch, "empty", _poisoned_empty(torch.empty))
    slots, block_expert, total = align_by_expert(ids.to(DEVICE), experts, block)
    monkeypatch.undo()
    assert slots.dtype == block_expert.dtype == torch.int32
    slots, block_expert = slots.cpu().long(), block_expert.cpu().long()
    num_slots = tokens * k
    nb = max_blocks(num_slots, experts, block)
    assert total == nb * block and slots.shape == (total,) and block_expert.shape == (nb,)
    flat = ids.reshape(-1).long()
    routed = (flat >= 0) & (flat < experts)
    real = slots < num_slots
    # Every routed slot exactly once, in a block of its own expert; nothing else.
    assert sorted(slots[real].tolist()) == torch.nonzero(routed).flatten().tolist()
    owner = block_expert.repeat_interleave(block)
    assert torch.equal(flat[slots[real]], owner[real])
    # Everything else is the sentinel; used blocks come first, ascending by expert,
    # each expert's run padded to whole blocks; then expert -1 to the end.
    assert (slots[~real] == num_slots).all()
    used = int((block_expert >= 0).sum())
    assert torch.equal(block_expert[:used], block_expert[:used].sort().values)
    assert (block_expert[used:] == -1).all() and (slots[used * block :] == num_slots).all()
    counts = torch.bincount(flat[routed], minlength=experts)
    assert used == int(((counts + block - 1) // block).sum())
    for e in range(experts):
        rows = owner == e
        assert int(real[rows].sum()) == int(counts[e])
        # An expert's valid slots come before its padding.
        assert bool(real[rows][: int(counts[e])].all())


# Aten ops that allocate or alias but launch no GPU kernel.
_NO_KERNEL = {
    "empty",
    "empty_strided",
    "empty_like",
    "new_empty",
    "new_empty_strided",
    "detach",
    "lift_fresh",
    "alias",
    "view",
    "_unsafe_view",
    "as_strided",
    "t",
    "transpose",
    "slice",
    "select",
    "unsqueeze",
    "squeeze",
    "expand",
    "permute",
    "split",
    "split_with_sizes",
    "unbind",
    "_reshape_alias",
}


class _CountLaunches(TorchDispatchMode):
    """Records every aten op that would launch a GPU kernel (views, metadata and
    empty allocations aside) and every Triton launch, by name."""

    def __init__(self):
        super().__init__()
        self.launches: list[str] = []
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        aliases = any(
            r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns
        )
        if not self.paused and not aliases and name not in _NO_KERNEL:
            self.launches.append(f"aten.{name}")
        return func(*args, **(kwargs or {}))

    @contextlib.contextmanager
    def counting_triton(self):
        """Count `kernel[grid](...)` launches; the interpreter's own host copies
        inside a launch are not the layer's kernels."""
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction

        originals = {cls: cls.__getitem__ for cls in (JITFunction, InterpretedFunction)}
        mode = self

        def make(original):
            def getitem(kernel, grid):
                launch = original(kernel, grid)

                def counted(*args, **kwargs):
                    mode.launches.append(f"triton.{kernel.fn.__name__}")
                    mode.paused = True
                    try:
                        return launch(*args, **kwargs)
                    finally:
                        mode.paused = False

                return counted

            return getitem

        try:
            for cls, original in originals.items():
                cls.__getitem__ = make(original)
            with self:
                yield self
        finally:
            for cls, original in originals.items():
                cls.__getitem__ = original


@pytest.mark.parametrize("mode", ["bf16", "mxfp4", "a4w4"])
def test_a_layer_takes_four_launches(mode):
    """Issue 13's budget: align, GEMM1 (+SiLU-and-mul), GEMM2 (x router weight),
    combine -- nothing else, torch ops included. A4W4 too: GEMM1 quantizes x in
    its prologue and writes act as MXFP4, GEMM2 reads it packed."""
    x, w13, w2, w, ids = make(8, 2, 5, dtype=torch.bfloat16, seed=2)
    if mode == "bf16":
        args = tuple(t.bfloat16().to(DEVICE) for t in (w13, w2))
    else:
        args = (_to(quantize_experts(w13, w2), DEVICE), None)
    x, w, ids = x.to(DEVICE), w.to(DEVICE), ids.to(DEVICE)
    counter = _CountLaunches()
    with counter.counting_triton():
        fused_moe(x, *args, w, ids, act_mxfp4=mode == "a4w4")
    gemm = "triton._grouped_gemm_a4w4_kernel" if mode == "a4w4" else "triton._grouped_gemm_kernel"
    want = ["triton._align_kernel", gemm, gemm, "triton._combine_kernel"]
    assert counter.launches == want


def test_a4w4_above_64_tokens_quantizes_x_first():
    """Past 64 tokens every output-column program of GEMM1 would read x's float
    rows: one quantizer launch first (gemm/opt_flags.quantize_a_in_gemm)."""
    x, w13, w2, w, ids = make(8, 2, 65, dtype=torch.bfloat16, seed=3)
    q = _to(quantize_experts(w13, w2), DEVICE)
    counter = _CountLaunches()
    with counter.counting_triton():
        fused_moe(x.to(DEVICE), q, None, w.to(DEVICE), ids.to(DEVICE), act_mxfp4=True)
    gemm = "triton._grouped_gemm_a4w4_kernel"
    want = ["triton._align_kernel", "triton._quantize_kernel", gemm, gemm, "triton._combine_kernel"]
    assert counter.launches == want
