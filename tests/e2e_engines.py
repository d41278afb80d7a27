"""One SGLang Engine alive at a time, shared across e2e tests.

Engine start costs ~20 s on the CI machine; tests that need the same
configuration share it, and asking for another configuration shuts the
previous one down first (two SmolLM2 engines would double the memory).
"""

from __future__ import annotations

import os

from sglang_amd import CPU_PLATFORM_NAME

ENGINE_DEFAULTS = dict(
    device="cpu",
    log_level="error",
    max_total_tokens=16384,
    random_seed=0,
)


def server_env(**extra: str) -> dict[str, str]:
    """Environment for an SGLang process: the test process's, minus the Triton
    interpreter (it would make our backend pick the Triton tier and crawl)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(extra)
    return env


def ensure_cpu_platform() -> None:
    """Select our CPU platform before sglang resolves one (CPU-only machines)."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("SGLANG_PLATFORM", CPU_PLATFORM_NAME)


class EngineCache:
    def __init__(self, model_path: str):
        self.model_path = model_path
        self._key = None
        self._engine = None

    def get(self, **kwargs):
        key = tuple(sorted(kwargs.items()))
        if key != self._key:
            self.close()
            import sglang as sgl

            self._engine = sgl.Engine(model_path=self.model_path, **{**ENGINE_DEFAULTS, **kwargs})
            self._key = key
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
        self._engine = None
        self._key = None
