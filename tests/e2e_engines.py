"""One SGLang Engine alive at a time, shared across e2e tests.

Engine start costs ~20 s on the CI machine; tests that need the same
configuration share it, and asking for another configuration shuts the
previous one down first (two SmolLM2 engines would double the memory).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from sglang_amd.flags import CPU_PLATFORM

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
    """Select our CPU platform (unless SGLANG_PLATFORM is already set) for the
    engines here, which run `device="cpu"` on any machine, GPU or not.

    SGLang resolves its platform once per process, so this only counts before the
    first use of `sglang.srt.platforms.current_platform`; conftest calls it at
    import for that reason, and the engine fixtures again for direct users.
    """
    os.environ.setdefault("SGLANG_PLATFORM", CPU_PLATFORM)


def _apply_env(wanted: dict[str, str], keys: dict[str, str | None]) -> None:
    """Set `wanted` and unset the other `keys`, touching only those variables."""
    for k in keys:
        if k in wanted:
            os.environ[k] = wanted[k]
        else:
            os.environ.pop(k, None)


@contextlib.contextmanager
def engine_environment(**extra: str) -> Iterator[None]:
    """os.environ as an engine's processes see it (`server_env`), restored after."""
    wanted = server_env(**extra)
    saved = {k: os.environ.get(k) for k in set(os.environ) | set(wanted)}
    _apply_env(wanted, saved)
    try:
        yield
    finally:
        _apply_env({k: v for k, v in saved.items() if v is not None}, saved)


class EngineCache:
    def __init__(self, model_path: str):
        self.model_path = model_path
        self._key = None
        self._engine = None

    def get(self, env: dict[str, str] | None = None, model_path: str | None = None, **kwargs):
        """The engine for these Engine kwargs; `env` adds variables its processes see;
        `model_path` overrides the cache's default model (SmolLM2)."""
        model_path = model_path or self.model_path
        key = (model_path, tuple(sorted((env or {}).items())), tuple(sorted(kwargs.items())))
        if key != self._key:
            self.close()
            import sglang as sgl

            # the scheduler is spawned inside Engine() and copies os.environ
            with engine_environment(**(env or {})):
                self._engine = sgl.Engine(model_path=model_path, **{**ENGINE_DEFAULTS, **kwargs})
            self._key = key
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
        self._engine = None
        self._key = None
