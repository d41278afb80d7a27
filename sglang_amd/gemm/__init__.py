"""Matmuls shared by several families: the grouped GEMM behind the fused MoE
(moe/fused.py) and the dense MXFP4 linear (quant/mxfp4_linear.py), and the gated
activations its first MoE launch applies (activation.py). Never imports sglang."""
