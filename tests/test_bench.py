"""`sglang-amd bench`: the plumbing (cases, peers, table, JSON, PNG) on smoke shapes.

Timings here are not measurements; GPU numbers live in BENCHMARKS.md.
"""

from __future__ import annotations

import json

import pytest
import torch

from sglang_amd import cli


@pytest.mark.parametrize(
    "what",
    # bench moe's smoke (67 s on CI) repeats the table/JSON/PNG path the others prove.
    ["attention", pytest.param("moe", marks=pytest.mark.full), "dsa"],
)
def test_bench_smoke_writes_table_json_and_png(what, tmp_path, capsys):
    assert cli.main(["bench", what, "--smoke", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"sglang-amd bench {what}" in out and "SMOKE" in out
    record = json.loads((tmp_path / f"{what}.json").read_text())
    rows = record["rows"]
    assert all(r["seconds"] for r in rows if r["impl"].startswith("amd")), rows
    ours = [r for r in rows if r["impl"].startswith("amd") and r["seconds"]]
    peers = [r for r in rows if not r["impl"].startswith("amd") and r["seconds"]]
    assert ours and peers, rows
    assert all(r["rate"] > 0 for r in ours + peers)
    assert "x  " in out  # the ours/best ratio column is filled
    assert (tmp_path / f"{what}.png").stat().st_size > 0
    assert record["timing"].startswith("cache-cold") and "timing: cache-cold" in out
    for case in {r["case"] for r in rows}:  # one row per case is ours, marked
        assert [r["role"] for r in rows if r["case"] == case].count("ours") == 1
    if what == "moe":  # ours is W4A16; A4W4 is our variant, not a peer; bf16 rows are peers
        roles = {
            r["impl"].split(" ", 2)[-1] if r["impl"].startswith("amd") else r["impl"]: r["role"]
            for r in rows
        }
        assert roles["mxfp4"] == "ours" and roles["mxfp4 a4w4"] == "variant"
        assert all(role == "peer" for impl, role in roles.items() if "bf16" in impl)
    # Ours is timed as served: replayed from a CUDA graph on a GPU (attention and MoE).
    mode = "graph" if torch.cuda.is_available() else "eager"
    assert all(r["note"].endswith(mode) for r in ours), ours


def test_moe_weight_bytes_count_mxfp4_scales():
    from sglang_amd.bench.moe import DEEPSEEK_V3, weight_bytes

    bf16 = weight_bytes(DEEPSEEK_V3, 8, mxfp4=False)
    mx = weight_bytes(DEEPSEEK_V3, 8, mxfp4=True)
    assert bf16 == 8 * 3 * 7168 * 2048 * 2
    assert bf16 / mx == pytest.approx(2 / (0.5 + 1 / 32))  # 3.76x fewer bytes


# --- report: ours is one marked row, compared with peers only ---------------------------------


def _moe_case_rows(case, mxfp4, a4w4, bf16_peers):
    from sglang_amd.bench.report import Row

    rows = [
        Row(case, "amd triton mxfp4", mxfp4, 1e9 if mxfp4 else None, "", "ours"),
        Row(case, "amd triton mxfp4 a4w4", a4w4, 1e9, "", "variant"),
    ]
    rows += [Row(case, f"peer {i}", s, 1e9, "", "peer") for i, s in enumerate(bf16_peers)]
    return rows


def _line(out: str, case: str, impl: str) -> str:
    return next(ln for ln in out.splitlines() if ln.startswith(case) and f" {impl} " in ln)


def test_report_ratio_is_ours_over_best_peer_never_a_variant():
    from sglang_amd.bench import report

    # The A4W4 variant is the fastest row: it must neither be "ours" nor the peer beaten.
    rows = _moe_case_rows("moe a", 10e-6, 5e-6, [30e-6, 40e-6])
    assert [r.impl for r in report.compare(rows)] == ["amd triton mxfp4", "peer 0"]
    out = report.table(
        {"ceilings": {"copy_bytes_per_s": 1e12, "bf16_flop_per_s": 1e15}, "rows": rows}, "hdr"
    )
    assert _line(out, "moe a", "amd triton mxfp4").rstrip().endswith("3.00x")
    assert "x" not in _line(out, "moe a", "amd triton mxfp4 a4w4").split()[-1]


def test_report_says_when_ours_has_no_time_instead_of_substituting():
    from sglang_amd.bench import report

    rows = _moe_case_rows("moe b", None, 5e-6, [30e-6])
    rows[0].note = "failed: RuntimeError"
    out = report.table(
        {"ceilings": {"copy_bytes_per_s": 1e12, "bf16_flop_per_s": 1e15}, "rows": rows}, "hdr"
    )
    assert "no time" in _line(out, "moe b", "amd triton mxfp4")
    assert "failed: RuntimeError" in _line(out, "moe b", "amd triton mxfp4")
    assert not any(ln.rstrip().endswith("x") for ln in out.splitlines()[3:]), out
    assert "x  " not in out  # no ratio anywhere


# --- timing: cache-cold, the flush outside the timed span --------------------------------------


def test_time_fn_flushes_before_every_timed_call_outside_the_span():
    import time

    from sglang_amd.bench.roofline import time_fn, time_replayed

    for timer in (time_fn, time_replayed):
        events: list[str] = []

        def flush(events=events):
            events.append("flush")
            time.sleep(0.02)  # a slow flush: must not be in the measured time

        seconds = timer(
            lambda events=events: events.append("fn"),
            torch.device("cpu"),
            warmup=1,
            iters=4,
            flush=flush,
        )
        seconds = seconds[0] if isinstance(seconds, tuple) else seconds
        assert events == ["fn"] + ["flush", "fn"] * 4
        assert seconds < 0.01


def test_flush_size_follows_the_device_cache(monkeypatch):
    from types import SimpleNamespace

    from sglang_amd.bench import roofline

    gpu = torch.device("cuda")
    for l2, assumed in ((50 << 20, 256 << 20), (4 << 20, 256 << 20), (1 << 30, 1 << 30)):
        props = SimpleNamespace(L2_cache_size=l2)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d, p=props: p)
        assert roofline.last_level_cache_bytes(gpu) == assumed
        assert roofline.flush_bytes(gpu) == roofline.FLUSH_FACTOR * assumed
    cpu = torch.device("cpu")
    flush = roofline.CacheFlush(cpu)
    assert (
        flush.buffer.numel() * 4 == flush.nbytes == roofline.FLUSH_FACTOR * roofline.CPU_CACHE_BYTES
    )
    flush()
    assert "cache-cold" in flush.describe() and f"{flush.nbytes >> 20} MiB" in flush.describe()


@pytest.mark.gpu
def test_time_replayed_flushes_between_graph_replays_outside_the_graph():
    from sglang_amd.bench.roofline import CacheFlush, time_replayed

    device = torch.device("cuda")
    real, calls = CacheFlush(device), []
    counter = torch.zeros((), device=device)

    def flush():
        calls.append(1)
        real()

    seconds, mode = time_replayed(lambda: counter.add_(1), device, warmup=2, iters=5, flush=flush)
    assert mode == "graph" and seconds > 0
    assert len(calls) == 5  # one per timed replay, none captured into the graph


# --- moe: bounded preparation; a shape that does not fit leaves the others ---------------------


def test_moe_weights_quantize_in_bounded_chunks(monkeypatch):
    from sglang_amd.bench import moe
    from sglang_amd.moe import reference
    from sglang_amd.moe.reference import quantize_experts

    seen: list[torch.Tensor] = []
    real = reference.quantize_mxfp4

    def recording(x, *args, **kwargs):
        seen.append(x)
        return real(x, *args, **kwargs)

    monkeypatch.setattr(reference, "quantize_mxfp4", recording)
    shape = moe.Shape("chunky", 16, 2, 128, 64)
    chunk = 3 * (2 * 64 * 128) * 4  # float32 bytes of three experts' w13
    w13, w2, q = moe.prepare_weights(shape, torch.device("cpu"), torch.bfloat16, chunk)
    assert w13.dtype == w2.dtype == torch.bfloat16
    assert max(x.numel() for x in seen) * 4 <= chunk  # never all experts at once
    assert all(x.dtype == torch.bfloat16 for x in seen)  # no float32 copy of the weights
    whole = quantize_experts(w13, w2)  # the chunks give the same bytes
    for name in ("w13", "w13_scale", "w2", "w2_scale"):
        assert torch.equal(getattr(q, name), getattr(whole, name)), name


PEAK_RSS = """
import resource, torch
from sglang_amd.bench.moe import Shape, prepare_weights
torch.randn(4, dtype=torch.bfloat16).mul_(1)  # warm the allocator paths
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
w13, w2, q = prepare_weights(Shape("s", 32, 2, 1024, 512), torch.device("cpu"),
                             torch.bfloat16, chunk_bytes=8 << 20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def test_moe_prepare_peak_memory_is_weights_plus_a_chunk():
    import subprocess
    import sys

    from sglang_amd.bench.moe import QUANT_WORKSPACE

    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    weights = 32 * 3 * 1024 * 512 * (2 + 0.5 + 1 / 32)  # bf16 + MXFP4: 124 MB
    # bf16 + MXFP4 weights, one chunk's workspace, and slack; whole-tensor float32
    # generation and quantization peaked at 670 MB here (3x this bound).
    bound = weights + QUANT_WORKSPACE * (8 << 20) + (64 << 20)
    assert int(out.stdout.split()[-1]) < bound


def _fake_timing(monkeypatch, moe):
    """Rows without running kernels (or importing sglang): these tests are about which rows."""
    monkeypatch.setattr(moe, "sglang_moe_peer", lambda *args: (None, "not run here"))
    monkeypatch.setattr(moe, "time_fn", lambda fn, device, **kw: 1e-3)
    monkeypatch.setattr(moe, "time_replayed", lambda fn, device, **kw: (1e-3, "eager"))


def test_moe_out_of_memory_in_one_shape_keeps_the_other_shapes_rows(monkeypatch):
    from sglang_amd.bench import moe
    from sglang_amd.moe import reference

    _fake_timing(monkeypatch, moe)
    big, small = moe.Shape("big", 8, 2, 96, 32), moe.Shape("small", 8, 2, 64, 32)
    real = reference.quantize_mxfp4

    def oom_for_big(x, *args, **kwargs):
        if x.shape[-1] == 96:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x, *args, **kwargs)

    monkeypatch.setattr(reference, "quantize_mxfp4", oom_for_big)
    cases = [(big, 1), (big, 16), (small, 1)]
    rows = moe.run(cases, torch.device("cpu"), torch.bfloat16)["rows"]
    big_rows = [r for r in rows if " big " in r.case]
    small_rows = [r for r in rows if " small " in r.case]
    assert {r.case for r in big_rows} == {"moe big T1 E8 k2", "moe big T16 E8 k2"}
    assert all(r.seconds is None and "out of memory" in r.note for r in big_rows)
    assert [r.role for r in big_rows].count("ours") == 2
    ours = [r for r in small_rows if r.role == "ours"]
    assert len(ours) == 1 and ours[0].seconds


def test_moe_shape_larger_than_free_memory_is_not_run(monkeypatch):
    from sglang_amd.bench import moe

    _fake_timing(monkeypatch, moe)
    big, small = moe.Shape("big", 64, 2, 512, 256), moe.Shape("small", 8, 2, 64, 32)
    free = moe.prepare_bytes(small, torch.bfloat16) + 1
    assert moe.prepare_bytes(big, torch.bfloat16) > free
    monkeypatch.setattr(moe, "_free_bytes", lambda device: free)
    made: list[str] = []
    real = moe.prepare_weights
    monkeypatch.setattr(
        moe, "prepare_weights", lambda s, *a, **k: made.append(s.name) or real(s, *a, **k)
    )
    rows = moe.run([(big, 1), (small, 1)], torch.device("cpu"), torch.bfloat16)["rows"]
    assert made == ["small"]  # refused before allocating anything
    big_rows = [r for r in rows if " big " in r.case]
    assert big_rows and all(r.seconds is None and "not run" in r.note for r in big_rows)
    assert "GB free" in big_rows[0].note
    assert any(r.seconds for r in rows if " small " in r.case and r.role == "ours")


# (kind, sequences, (Hq, Hkv), D, Dv or None): GQA decode and MLA extend over a prefix.
_PEER_CASES = [
    ("decode", [(40, 1), (7, 1)], (4, 2), 32, None),
    ("extend", [(5, 7), (0, 9)], (16, 1), 576, 512),
]


@pytest.mark.sglang
@pytest.mark.cpu_interpreter
@pytest.mark.parametrize("kind,seqs,heads,d,dv", _PEER_CASES)
def test_sglang_attention_peer_computes_attention_on_our_batch(kind, seqs, heads, d, dv):
    """The bench's SGLang peer is handed our paged batch as its triton backend would
    hand it its own (slots, splits, prefix in the pool): a ratio is only meaningful
    if the peer computed the same attention. float16: the interpreter's bf16 dot is off."""
    from sglang.kernels.ops.attention import decode_attention, extend_attention, metadata

    from sglang_amd.attention.reference import paged_attention_reference
    from sglang_amd.audit.traffic import interpreted_kernels
    from sglang_amd.bench.sglang_peers import build_attention_call
    from sglang_amd.testing import make_paged_batch

    b = make_paged_batch(seqs, *heads, d, dv, page_size=4, dtype=torch.float16)
    with interpreted_kernels(decode_attention, extend_attention, metadata):
        fn, note = build_attention_call(kind, b, 0.1, dv, cores=132, hip=False)
        got = fn().float()
    v = b.k_cache[..., :dv] if dv else b.v_cache
    want = paged_attention_reference(
        b.q.float(), b.k_cache.float(), v.float(), b.req_to_token, b.req_pool_indices.tolist(),
        b.kv_lens.tolist(), b.qo_lens.tolist(), scale=0.1,
    )  # fmt: skip
    torch.testing.assert_close(got, want, atol=3e-3, rtol=3e-3)
    if kind == "decode":
        assert "splits" in note


@pytest.mark.sglang
def test_kernel_shim_serves_sglang_attention_kernels_without_sglang(tmp_path):
    """`scripts/sglang_kernel_shim.py` (for a GPU image without SGLang): the package it
    writes shadows SGLang, and SGLang's attention launchers import from it with the
    defaults SGLang gives their switches."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "shim", root / "scripts" / "sglang_kernel_shim.py"
    )
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    shim.build(tmp_path)  # reads the SGLang installed here (imported already: quick)
    probe = (
        "import sglang\n"
        "from sglang.kernels.ops.attention import decode_attention, extend_attention\n"
        "from sglang.srt.environ import envs\n"
        "print(sglang.KERNELS_ONLY_NOTE)\n"
        "print(callable(decode_attention.decode_attention_fwd),"
        " callable(extend_attention.extend_attention_fwd))\n"
        "print(envs.SGLANG_TRITON_DECODE_ATTN_STATIC_KV_SPLITS.get())\n"
        "from sglang.kernels.ops.attention.dsa import triton_sparse_mla_decode as d\n"
        "print(callable(d.triton_sparse_mla_decode_splitk))\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{root}", "PATH": "/usr/bin:/bin", "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True,
                         capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    assert "no SGLang install here" in out[0]
    assert out[1:] == ["True True", "False", "True"]


@pytest.mark.gpu
@pytest.mark.parametrize("heads", [16, 128])
def test_gpu_sglang_sparse_mla_peer_computes_our_sparse_attention(heads):
    """`bench dsa`'s peer (SGLang's Triton sparse MLA decode, from SGLang or the kernel
    shim) on the rows our table picks computes the attention ours does: its ratio
    compares the same work. Its split partials are bf16, hence 2e-2."""
    import importlib.util

    from sglang_amd.attention.reference import sparse_attention_reference
    from sglang_amd.bench.sglang_peers import sglang_sparse_mla_peer
    from sglang_amd.testing import make_paged_batch

    if importlib.util.find_spec("sglang") is None:
        pytest.skip("no SGLang and no kernel shim on the path")
    b = make_paged_batch([(999, 1), (300, 1)], heads, 1, 576, 512, page_size=64,
                         dtype=torch.bfloat16, device="cuda")  # fmt: skip
    topk = torch.stack([torch.randperm(n, device="cuda")[:256] for n in (1000, 301)]).int()
    rows = b.req_pool_indices
    slots = torch.gather(b.req_to_token[rows.long()], 1, topk.long()).int()
    fn, note = sglang_sparse_mla_peer(b.q, b.k_cache, slots, 0.07, 512)
    assert fn is not None, note
    got = fn().float().view(2, heads, 512)
    want = sparse_attention_reference(b.q.float(), b.k_cache.float(), b.k_cache[..., :512].float(),
                                      b.req_to_token, rows.tolist(), topk, scale=0.07)  # fmt: skip
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
