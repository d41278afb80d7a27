"""Mixture-of-experts: routers (`routing.py`) and the torch reference of the fused
expert computation (`reference.py`), bf16 or MXFP4 weights. Never imports sglang."""
