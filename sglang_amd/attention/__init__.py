"""Attention for SGLang's radix/paged KV pool (`--attention-backend amd`).

Kernels: `decode.py` + `decode_details/`, `extend.py` + `extend_details/` (Triton),
`reference.py` (torch tier, the oracle), launch flags in `opt_flags*.py`. The op
entry points `tiers.OPS` names are in `attend.py`; start rules in `support.py`;
the capability in `capability.py`. SGLang adapters: `sglang_backend.py`,
`sglang_draft_backend.py`, `sglang_registration.py` (the only modules here that
import sglang).
"""
