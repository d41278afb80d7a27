"""Version-pinned changes to stock SGLang (0.5.23), applied through its HookRegistry.

Only where SGLang offers no extension point of its own. Each module names its
targets in `TARGETS`; `tests/test_patches.py` fails when one of them moves or
changes signature, so an SGLang upgrade cannot silently disable a patch.
"""

from __future__ import annotations

from collections.abc import Callable

_registered: set[str] = set()


def register_around_hooks(owner: str, hooks: dict[str, Callable]) -> None:
    """Register `hooks` (target -> AROUND wrapper) once per `owner` module."""
    if owner in _registered:
        return
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    for target, hook in hooks.items():
        HookRegistry.register(target, hook, HookType.AROUND)
    _registered.add(owner)
