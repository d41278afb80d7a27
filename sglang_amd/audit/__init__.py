"""Proving kernels for GPUs this machine does not have: `sglang-amd audit`.

`compile_for_target.py` compiles each launch our wrappers make for MI300X
(gfx942), MI355X (gfx950), H100 (sm_90) and B200 (sm_100); `launches.py` is the
model-shape matrix; `isa.py` reads registers, spills, LDS, occupancy and the
instructions; `compile_audit.py` dedupes, checks the gates and writes the table,
JSON and PNG. Peers: `sglang_peer_launches.py` (the only module here that imports
sglang) drives SGLang's own Triton kernels over the same matrix, `peer_compare.py`
pairs them with ours. `sglang-amd audit --traffic` runs the kernels instead, under
the Triton interpreter: `traffic.py` counts bytes and launches, `traffic_cases.py`
is its scaled-down matrix, `traffic_ideal.py` the ideal bytes per op and
`traffic_audit.py` the gates, table, JSON and PNG.
"""
