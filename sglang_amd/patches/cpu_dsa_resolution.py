"""Let SGLang resolve a DeepSeek sparse-attention (DSA) model's flags on a machine
without a CUDA device (our CPU platform).

SGLang 0.5.23's DSA resolution (`handle_model_specific_adjustments` and the two
post-process passes it runs: the KV-cache dtype default and the DSA split
backends) asks `torch.cuda.get_device_capability()` for the GPU generation with
no platform check in between, so on a CPU-only machine the start ends in "Found
no NVIDIA driver". Its answers only pick SGLang's own DSA kernels and their KV
dtype, neither of which `--attention-backend amd` uses. While those run, and only
when torch sees no CUDA device, `no_cuda_capability` answers (0, 0): "no GPU
generation", which takes SGLang's most conservative branch (a bfloat16 KV cache;
our resolution hook then restores the dtype the user asked for). Not a
HookRegistry patch: the call sits in the middle of SGLang's function. The
functions in `TARGETS` must still make the call (`tests/test_patches.py`):
should SGLang stop asking, this patch is dead and must go.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_CALL = "torch.cuda.get_device_capability()"
TARGETS = {
    "sglang.srt.arg_groups.model_hook.handle_model_specific_adjustments": _CALL,
    "sglang.srt.arg_groups.overrides._dsa_kv_cache_dtype_default": _CALL,
    "sglang.srt.arg_groups.overrides._dsa_split_backend_resolution": _CALL,
}
# What a machine without a CUDA device answers: no GPU generation.
NO_CAPABILITY = (0, 0)


@contextlib.contextmanager
def no_cuda_capability() -> Iterator[None]:
    """Within the block, `torch.cuda.get_device_capability` answers NO_CAPABILITY
    when torch has no CUDA device; with one, nothing changes."""
    if torch.cuda.is_available():
        yield
        return
    original = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = lambda device=None: NO_CAPABILITY
    try:
        yield
    finally:
        torch.cuda.get_device_capability = original
