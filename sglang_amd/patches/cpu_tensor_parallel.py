"""Tensor and expert parallelism on our CPU platform: SGLang's CPU collectives, no pinning.

SGLang 0.5.23 routes a CPU process group's collectives by a module flag, `_is_cpu`,
which is true only for its in-tree CPU engine (SGLANG_USE_CPU_ENGINE=1, which
needs sgl-kernel's CPU build; our platform exists to avoid it). On our platform
the flag is false, so a server with tp > 1 and any --moe-a2a-backend fails where:

  parallel_state  reduce-scatter and all-gather go through `sglang::reg_*` custom
                  ops that out-of-tree platforms register for PrivateUse1 only
                  ("Could not run ... with arguments from the 'CPU' backend")
  forward_batch_info  the MLP-sync batch preparation pins host memory, which a
                  CPU-only torch cannot ("Cannot access accelerator device"),
                  and reads the CUDA-graph seq-len fill value instead of the CPU one

Both branches SGLang takes for its own CPU engine are the right ones here (plain
torch.distributed calls over gloo; pageable copies), so `apply()` sets the flag in
those two modules, and only in a process whose platform is ours. Not a HookRegistry
patch: the flag is read in the middle of SGLang's functions. `TARGETS` names each
function that must still read it (`tests/test_patches.py`); should SGLang route
CPU groups by the platform instead, this patch is dead and must go.
"""

from __future__ import annotations

import importlib
import os

from sglang_amd.flags import CPU_PLATFORM

_FLAG = "_is_cpu"
TARGETS = {
    "sglang.srt.distributed.parallel_state.GroupCoordinator.reduce_scatter_tensor": _FLAG,
    "sglang.srt.distributed.parallel_state.GroupCoordinator.all_gather_into_tensor": _FLAG,
    "sglang.srt.model_executor.forward_batch_info.ForwardBatch.prepare_mlp_sync_batch": _FLAG,
    "sglang.srt.model_executor.forward_batch_info.ForwardBatch._pad_inputs_to_size": _FLAG,
}
MODULES = (
    "sglang.srt.distributed.parallel_state",
    "sglang.srt.model_executor.forward_batch_info",
)


def on_our_platform() -> bool:
    return os.environ.get("SGLANG_PLATFORM") == CPU_PLATFORM


def apply() -> None:
    """Idempotent; a no-op outside our CPU platform."""
    if not on_our_platform():
        return
    for name in MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, _FLAG):
            raise RuntimeError(f"sglang-amd: {name} no longer has {_FLAG}; update {__name__}")
        setattr(module, _FLAG, True)
