"""Private: the split-KV decode kernels behind `attention/decode.py`."""
