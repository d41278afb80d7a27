"""`sglang-amd bench`: the plumbing (cases, peers, table, JSON, PNG) on smoke shapes.

Timings here are not measurements; GPU numbers live in BENCHMARKS.md.
"""

from __future__ import annotations

import json

import pytest
import torch

from sglang_amd import cli


@pytest.mark.parametrize("what", ["attention", "moe"])
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
    if what == "moe":  # ours is timed as served: replayed from a CUDA graph on a GPU
        mode = "graph" if torch.cuda.is_available() else "eager"
        assert all(r["note"].endswith(mode) for r in ours), ours


def test_moe_weight_bytes_count_mxfp4_scales():
    from sglang_amd.bench.moe import DEEPSEEK_V3, weight_bytes

    bf16 = weight_bytes(DEEPSEEK_V3, 8, mxfp4=False)
    mx = weight_bytes(DEEPSEEK_V3, 8, mxfp4=True)
    assert bf16 == 8 * 3 * 7168 * 2048 * 2
    assert bf16 / mx == pytest.approx(2 / (0.5 + 1 / 32))  # 3.76x fewer bytes
