"""Private: Triton kernels and launch heuristics behind `attention/decode.py`."""
