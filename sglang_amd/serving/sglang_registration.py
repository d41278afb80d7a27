"""SGLang registration of the serving family (called by `plugin.register`).

  patches/request_validation.py   token-id checks on SGLang's request path

Imports sglang (through the patch's registration).
"""

from __future__ import annotations


def register() -> None:
    """Install the request checks. Idempotent."""
    from sglang_amd.patches import request_validation

    request_validation.register()
