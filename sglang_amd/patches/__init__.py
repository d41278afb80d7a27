"""Version-pinned changes to stock SGLang (0.5.23), applied through its HookRegistry.

Only where SGLang offers no extension point of its own. Each module names its
targets in `TARGETS`; `tests/test_patches.py` fails when one of them moves or
changes signature, so an SGLang upgrade cannot silently disable a patch.
"""
