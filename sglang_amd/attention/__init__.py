"""Attention for SGLang's radix/paged KV pool.

`reference.py` is the torch tier (the oracle); `support.py` says what the backend
serves; `backend.py` is the SGLang adapter (the only module here importing sglang).
"""
