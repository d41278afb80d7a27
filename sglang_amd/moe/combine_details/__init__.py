"""Private: the Triton kernel behind `moe/combine.py`."""
