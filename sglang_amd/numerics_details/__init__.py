"""Private: @triton.jit number-format helpers shared by kernels of several families.

`mxfp4.py` is the one Triton MXFP4 encoder: `quant/`'s converter and `gemm/`'s
A4W4 grouped GEMM (activations quantized in its prologue and epilogue) both call
it, so the bytes they write are the same bytes. Imports only triton.
"""
