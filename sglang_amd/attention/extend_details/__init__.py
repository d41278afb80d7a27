"""Private: Triton kernel and launch parameters behind `attention/extend.py`."""
