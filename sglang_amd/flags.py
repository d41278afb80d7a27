"""The names users type and the errors they get back.

Every value a user passes to SGLang to reach our code (flag values, the platform
name, the speculative algorithms we serve), the error classes our start-time
checks raise, and the one rule for "is this server on the CPU". The families
(attention/, moe/, quant/, ...) import these instead of spelling them again.
Never imports sglang: `sglang-amd env`, the GPU test image and the kernels use it.
"""

from __future__ import annotations

import os
from typing import Any

# --attention-backend / --prefill-attention-backend / --decode-attention-backend /
# --speculative-draft-attention-backend value.
ATTENTION_BACKEND = "amd"
# --moe-runner-backend value.
MOE_RUNNER_BACKEND = "amd"
# --moe-a2a-backend value served by our expert-parallel communicator (sglang_amd/ep).
EP_A2A_BACKEND = "customized"
# --quantization value.
QUANTIZATION = "amd_mxfp4"
# SGLANG_PLATFORM value (entry point in the sglang.srt.platforms group).
CPU_PLATFORM = "sglang_amd_cpu"
# --speculative-algorithm values --attention-backend amd serves: draft-model
# speculation through SGLang's EAGLE workers (verify, draft extend, draft decode).
SPECULATIVE_ALGORITHMS = frozenset({"EAGLE", "EAGLE3", "NEXTN", "STANDALONE"})


class SglangAmdError(ValueError):
    """A configuration sglang-amd cannot serve; the message names what to change."""


class UnsupportedConfigError(SglangAmdError):
    """A flag combination (or model) our backends cannot serve, refused at start."""


class TierError(SglangAmdError):
    """Bad tier configuration; the message names the variable to change."""


class TierUnavailableError(TierError):
    """A forced tier cannot serve this op on this machine."""


def server_device(server_args: Any) -> str:
    """'cpu' when the server runs on the CPU (`--device cpu`), else 'cuda' (the GPU
    torch exposes as cuda: CUDA or ROCm). SGLang resolves --device before our
    checks run; an unset one means the GPU default."""
    device = str(getattr(server_args, "device", None) or "cuda")
    return "cpu" if device.split(":")[0] == "cpu" else "cuda"


def env_on(name: str) -> bool:
    """An SGLang boolean switch set in the environment (SGLang's EnvBool spellings)."""
    return os.environ.get(name, "").strip().lower() in ("true", "1", "yes", "y")
