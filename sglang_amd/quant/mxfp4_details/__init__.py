"""Private: Triton kernels behind `quant/mxfp4_triton.py`."""
