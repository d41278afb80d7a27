"""Kernel and numerics modules must import without sglang (the GPU test image
has torch and triton only). Checked in a fresh interpreter where importing
sglang raises."""

from __future__ import annotations

import subprocess
import sys

KERNEL_MODULES = [
    "sglang_amd.tiers",
    "sglang_amd.target_info",
    "sglang_amd.trace",
    "sglang_amd.testing",
    "sglang_amd.attention.reference",
    "sglang_amd.attention.support",
    "sglang_amd.attention.decode",
    "sglang_amd.attention.extend",
    "sglang_amd.quant.mxfp4",
    "sglang_amd.quant.mxfp4_triton",
    "sglang_amd.quant.mxfp4_linear",
    "sglang_amd.moe.grouped_gemm",
    "sglang_amd.moe.routing",
    "sglang_amd.moe.align",
    "sglang_amd.moe.reference",
    "sglang_amd.moe.fused",
    "sglang_amd.moe.experts",
    "sglang_amd.moe.support",
    "sglang_amd.quant.mxfp4_checkpoint",
    "sglang_amd.bench.attention",
    "sglang_amd.bench.moe",
    "sglang_amd.bench.report",
    "sglang_amd.reference_model",
]

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sglang" or name.startswith("sglang."):
            raise ImportError("sglang must not be imported here: " + name)
sys.meta_path.insert(0, Block())
for m in {modules!r}:
    __import__(m)
print("ok")
"""


def test_kernel_modules_import_without_sglang():
    code = BLOCKER.format(modules=KERNEL_MODULES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
