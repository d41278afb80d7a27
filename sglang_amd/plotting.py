"""The one way a report draws its PNG: matplotlib when installed, headless.

Where it sits: every writer of a bench or audit report (bench/report.py, ep.py,
serve.py, sglang_mtp.py; audit/compile_audit.py, traffic_audit.py) writes its
JSON first, then asks `pyplot()` for matplotlib and draws only when it is there
(the GPU image and a bare install may lack it), then `save()`s the figure.
Never imports sglang.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Lay out, write and close `fig`; returns `path`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
