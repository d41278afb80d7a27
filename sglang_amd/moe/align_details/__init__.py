"""Private: the Triton kernel behind `moe/align.py`."""
