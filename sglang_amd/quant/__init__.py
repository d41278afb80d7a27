"""Quantization numerics and checkpoint formats (`--quantization amd_mxfp4`).

`mxfp4.py`: OCP MXFP4 (E2M1 elements, E8M0 block scales) in torch, the oracle;
`mxfp4_triton.py` + `mxfp4_details/`: the Triton tier; `mxfp4_checkpoint.py`:
the checkpoint formats read (Quark exports, gpt-oss's mxfp4); `mxfp4_linear.py`: the dense MXFP4 linear op. Start
rules in `support.py`, the capability in `capability.py`; SGLang adapters
`sglang_mxfp4.py`, `sglang_registration.py`. Never imports moe/ (the MoE family
plugs its MXFP4 experts method into this family's config).
"""
