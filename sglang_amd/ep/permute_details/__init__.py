"""Private: the Triton kernels behind `ep/permute.py` (plan, pack, combine)."""
