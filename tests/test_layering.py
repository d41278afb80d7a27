"""The package's layering, as rules a newcomer can read off file names:

- a module imports sglang only if it is an entry point (`plugin.py`,
  `platform.py`, `cli.py`), lives in `patches/`, or is named `sglang_*.py`;
  every other module never imports sglang, not even lazily, and imports on the
  GPU test image (torch and triton only) — checked in a fresh interpreter where
  importing sglang raises;
- quant/ imports neither moe/ nor attention/; moe/ never imports attention/;
  ep/ (the communicator) imports no family but quant/ (its MXFP4 wire);
  gemm/ (shared matmuls) imports no family; attention/ imports neither moe/ nor
  quant/; the `@triton.jit` folders (`*_details/`) import only triton, the
  package-level `triton_utils` and the shared MXFP4 encoder
  (`numerics_details/mxfp4.py`);
- tier dispatch is written once: only `tiers.py` falls back between tiers, and
  every op's implementations resolve.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sglang_amd"
ENTRY_POINTS = {"plugin.py", "platform.py", "cli.py"}


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _sglang_facing(path: Path) -> bool:
    rel = path.relative_to(PACKAGE)
    return (
        (len(rel.parts) == 1 and rel.name in ENTRY_POINTS)
        or rel.parts[0] == "patches"
        or rel.name.startswith("sglang_")
    )


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


FILES = sorted(PACKAGE.rglob("*.py"))
PLAIN = [p for p in FILES if not _sglang_facing(p)]


def _family_imports(path: Path, family: str) -> list[str]:
    prefix = f"sglang_amd.{family}"
    return sorted(n for n in _imports(path) if n == prefix or n.startswith(prefix + "."))


@pytest.mark.parametrize("path", PLAIN, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_plain_modules_never_import_sglang(path):
    bad = sorted(n for n in _imports(path) if n == "sglang" or n.startswith("sglang."))
    assert not bad, f"{path.name} imports {bad}: name it sglang_*.py or move the import"


def test_sglang_facing_modules_are_named_so():
    """The rule's other half: each sglang_*.py really imports sglang, itself or
    through another sglang_*.py or a patch of ours (else it should drop the prefix)."""
    for path in FILES:
        if path.name.startswith("sglang_") and path.name != "__init__.py":
            names = _imports(path)
            assert any(
                n == "sglang"
                or n.startswith("sglang.")
                or n.rsplit(".", 1)[-1].startswith("sglang_")
                or ".sglang_" in n
                or n.startswith("sglang_amd.patches")
                for n in names
            ), path


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sglang" or name.startswith("sglang."):
            raise ImportError("sglang must not be imported here: " + name)
sys.meta_path.insert(0, Block())
for m in {modules!r}:
    __import__(m)
print("ok")
"""


def test_plain_modules_import_without_sglang():
    modules = [_module(p) for p in PLAIN]
    code = BLOCKER.format(modules=modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("quant", ("moe", "attention")),
        ("moe", ("attention",)),
        ("gemm", ("moe", "attention", "quant")),
        ("attention", ("moe", "quant", "gemm")),
        ("ep", ("attention", "moe", "gemm")),
    ],
)
def test_families_import_only_down_the_layers(folder, forbidden):
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for family in forbidden:
            assert not _family_imports(path, family), f"{path} imports {family}/"


def test_kernel_folders_import_only_triton():
    allowed = (
        {"sglang_amd.triton_utils", "sglang_amd.numerics_details.mxfp4"}
        | {f"sglang_amd.triton_utils.{n}" for n in ("mma", "scale_scores", "dot_flags")}
        | {
            f"sglang_amd.numerics_details.mxfp4.{n}"
            for n in ("quantize_pairs", "quantize_tile", "e2m1_value")
        }
    )
    for path in sorted(PACKAGE.rglob("*_details/*.py")):
        ours = {n for n in _imports(path) if n.startswith("sglang_amd")}
        assert ours <= allowed, (path, ours)


def test_tier_dispatch_is_written_once():
    from sglang_amd import tiers

    for path in FILES:
        if path.name == "tiers.py":
            continue
        tree = ast.parse(path.read_text())
        calls = {
            n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
        }
        assert "fallback_once" not in calls, f"{path} falls back between tiers itself"
    for spec in tiers.OPS.values():
        assert tiers.Tier.TORCH in spec.implemented, spec.name
        for impl in spec.impls:
            assert callable(tiers._resolve(impl.fn)), impl
            if impl.refusal:
                assert callable(tiers._resolve(impl.refusal)), impl
        if spec.trace_fields:
            assert callable(tiers._resolve(spec.trace_fields)), spec.name
