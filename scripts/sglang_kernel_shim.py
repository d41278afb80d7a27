"""Build a kernels-only `sglang` package for a GPU image that has no SGLang.

Where it sits: `sglang-amd bench attention` times SGLang's own Triton attention
(`bench/sglang_peers.py`) beside ours. The GPU image this project is lent has
torch and triton but not SGLang, and SGLang's package cannot be carried there
(its `sglang.srt.utils` pulls in its serving stack). Its attention kernels (and its
DSA backend's Triton sparse MLA decode, `bench dsa`'s peer) need only triton, torch
and six helpers, so this script copies SGLang's own kernel
files, unchanged, from the SGLang installed here (the pinned 0.5.23) into
OUT/sglang/, and writes those helpers: the platform queries (torch's answers on
the machine it runs on), the environment switches (each with the default the
installed SGLang gives it, read here) and no published server config (the
kernels then choose as a server with default flags). `sglang.KERNELS_ONLY_NOTE`
tells the bench's rows where their peer came from.

    .venv/bin/python scripts/sglang_kernel_shim.py .peer   # then PYTHONPATH=.peer
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

KERNELS = [
    "decode_attention.py",
    "extend_attention.py",
    "score_mod.py",
    "metadata.py",
    # The DSA backend's Triton sparse MLA decode (`sglang-amd bench dsa`'s peer).
    "dsa/triton_sparse_mla.py",
    "dsa/triton_sparse_mla_decode.py",
]

FP8_KERNEL = '''"""Written by scripts/sglang_kernel_shim.py: SGLang's float8 flavour query, answered
by torch on this machine (gfx94x stores e4m3fnuz)."""
import torch


def is_fp8_fnuz() -> bool:
    if torch.version.hip is None or not torch.cuda.is_available():
        return False
    return "gfx94" in torch.cuda.get_device_properties(0).gcnArchName
'''

UTILS = '''"""Written by sglang-amd's scripts/sglang_kernel_shim.py: the platform queries
SGLang's attention kernels import, answered by torch on this machine."""
import torch


def is_hip() -> bool:
    return torch.version.hip is not None


def is_cuda() -> bool:
    return torch.version.cuda is not None and torch.cuda.is_available()


def _arch() -> str:
    if not (is_hip() and torch.cuda.is_available()):
        return ""
    return torch.cuda.get_device_properties(0).gcnArchName


def is_gfx95_supported() -> bool:
    return _arch().startswith("gfx95")


def is_gfx1250_supported() -> bool:
    return _arch().startswith("gfx1250")


def get_device_core_count(device_id: int = 0) -> int:
    if not torch.cuda.is_available():
        return 0
    return torch.cuda.get_device_properties(device_id).multi_processor_count
'''

RUNTIME_CONTEXT = '''"""Written by scripts/sglang_kernel_shim.py: no server published its config here,
so the kernels choose as under default flags (what SGLang's own code does then)."""


def get_exec():
    raise ValueError("no SGLang server config in this process")
'''

ENVIRON = '''"""Written by scripts/sglang_kernel_shim.py: the switches SGLang's attention
kernels read, each with the default SGLang {version} gives it."""
import os

_DEFAULTS = {defaults!r}


class _Env:
    def __init__(self, name, default):
        self.name, self.default = name, default

    def get(self):
        raw = os.environ.get(self.name)
        if raw is None:
            return self.default
        if isinstance(self.default, bool):
            return raw.lower() in ("1", "true", "yes")
        return type(self.default)(raw) if self.default is not None else raw


class _Envs:
    def __getattr__(self, name):
        if name not in _DEFAULTS:
            raise AttributeError(name)
        return _Env(name, _DEFAULTS[name])


envs = _Envs()
'''


def build(out: Path) -> Path:
    """Write the package under `out`; returns its folder."""
    import sglang
    from sglang.srt.environ import envs

    src = Path(sglang.__file__).parent / "kernels" / "ops" / "attention"
    root = out / "sglang"
    if root.exists():
        shutil.rmtree(root)
    attention = root / "kernels" / "ops" / "attention"
    (attention / "dsa").mkdir(parents=True)
    (root / "kernels" / "ops" / "quantization").mkdir()
    (root / "srt").mkdir()
    version = getattr(sglang, "__version__", "?")
    note = f"SGLang {version}'s kernel files (no SGLang install here)"
    (root / "__init__.py").write_text(f"KERNELS_ONLY_NOTE = {note!r}\n__version__ = {version!r}\n")
    ops = root / "kernels" / "ops"
    for pkg in (root / "kernels", ops, attention, attention / "dsa", ops / "quantization",
                root / "srt"):  # fmt: skip
        (pkg / "__init__.py").touch()
    (ops / "quantization" / "fp8_kernel.py").write_text(FP8_KERNEL)
    names: set[str] = set()
    for name in KERNELS:
        text = (src / name).read_text()
        names |= set(re.findall(r"envs\.(\w+)", text))
        (attention / name).write_text(text)
    set_here = sorted(n for n in names if n in os.environ)
    if set_here:
        raise SystemExit(f"unset {', '.join(set_here)} first: the shim records SGLang's defaults")
    defaults = {n: getattr(envs, n).get() for n in sorted(names)}
    (root / "srt" / "environ.py").write_text(ENVIRON.format(version=version, defaults=defaults))
    (root / "srt" / "utils.py").write_text(UTILS)
    (root / "srt" / "runtime_context.py").write_text(RUNTIME_CONTEXT)
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(f"wrote {build(Path(sys.argv[1]))}")
