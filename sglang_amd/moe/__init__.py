"""Mixture-of-experts (`--moe-runner-backend amd`): routers (`routing.py`), the
expert-aligned layout (`align.py`), weights (`weights.py`; expert biases and the
gated activation, SiLU or gpt-oss's clamped SwiGLU, travel beside them), the torch reference
(`reference.py`) and the Triton tier (`fused.py`, on `gemm/`, ending in
`combine.py`'s top-k sum), the `moe.fused` op (`experts.py`), start rules
(`support.py`) and the capability. SGLang adapters: `sglang_runner.py`,
`sglang_mxfp4_experts.py`, `sglang_registration.py`."""
