"""Linear attention: Gated DeltaNet (Qwen3-Next's linear-attention layers) over SGLang's
state pool. The math in `reference.py` (torch, the oracle), the ops `tiers.OPS` runs in
`gdn.py` (torch tier only; no Triton tier yet), the capability in `capability.py`.
SGLang adapters: `sglang_gdn.py` (SGLang's GDN kernel calls, same signatures) and
`sglang_registration.py` (installs `patches/cpu_gdn.py` on our CPU platform)."""
