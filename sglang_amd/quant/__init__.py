"""Quantization numerics. `mxfp4.py`: OCP MXFP4 (E2M1 elements, E8M0 block scales)
in torch, the oracle tier for the FP4 kernels. Never imports sglang."""
