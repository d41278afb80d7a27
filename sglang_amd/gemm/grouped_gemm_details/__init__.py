"""Private: the Triton grouped GEMM behind `moe/fused.py`."""
