"""SGLang registration of the linear-attention family (called by `plugin.register`).

  patches/cpu_gdn.py   SGLang's Gated DeltaNet kernels served by our torch tier,
                       in our CPU platform's processes only

Imports sglang (through the patch's registration).
"""

from __future__ import annotations


def register() -> None:
    """Install the GDN patch where our CPU platform is selected. Idempotent."""
    from sglang_amd.patches import cpu_gdn

    cpu_gdn.register()
