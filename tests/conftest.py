"""Test-wide markers and fixtures.

GPU tests skip cleanly without a device; sglang tests skip where sglang is not
installed (the GPU test image has torch and triton only). On CPU, Triton kernels
run under TRITON_INTERPRET=1; tests that play our Triton tier on CPU tensors
(`cpu_interpreter`) need it and skip where it is off (a GPU machine, where the
`gpu` tests run the compiled kernels instead). SGLang in this process and in the
servers tests start resolves our CPU platform (see `ensure_cpu_platform`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import pytest
import torch

HAS_SGLANG = importlib.util.find_spec("sglang") is not None
HAS_GPU = torch.cuda.is_available()

# Without a GPU our Triton kernels are tested in Triton's interpreter. It is
# chosen when a kernel is decorated, so it must be set before any kernel module
# is imported. SGLang processes started by tests get it removed again (see
# tests/e2e_engines.py) unless a test asks for it.
if not HAS_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    # Triton's own jit helpers (tl.sum, tl.cumsum, ...) are decorated when it is first
    # imported: here, so a test that unsets the variable (tests/test_tiers.py) cannot
    # be the first and leave them compiled-only for every interpreted kernel after it.
    import triton.language  # noqa: F401

# SGLang resolves its platform once per process, at the first use of
# `current_platform` -- which any test module that registers our plugin or
# imports our backend may trigger. Every engine and server the tests start runs
# `device="cpu"`, so our CPU platform is selected here, before any test module is
# imported, rather than at the first e2e fixture (too late in a full run). Safe on
# a GPU machine too: the `gpu` tests never import sglang, and SGLang's hardware
# facts (`get_platform().is_cuda`, ...) come from torch, not from this choice.
if HAS_SGLANG:
    from tests.e2e_engines import ensure_cpu_platform

    ensure_cpu_platform()


def triton_interpreted() -> bool:
    """Whether Triton kernels run on CPU tensors in this process (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


# `make test` runs every family's e2e once; the repetitions (other tiers, dtypes,
# page sizes and models of a family already served once) are marked `full` and
# run under `make test-full`, which sets this variable. CI's time limit is why.
FULL = os.environ.get("SGLANG_AMD_TEST_FULL") == "1"


def pytest_collection_modifyitems(config, items):
    skip_full = pytest.mark.skip(reason="a repetition: runs under `make test-full`")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA/ROCm GPU")
    skip_sglang = pytest.mark.skip(reason="needs sglang installed")
    skip_interpreter = pytest.mark.skip(
        reason="plays the Triton tier on CPU tensors, which needs TRITON_INTERPRET=1 "
        "(set only without a GPU; on a GPU the `gpu` tests run the compiled kernels)"
    )
    for item in items:
        if "full" in item.keywords and not FULL:
            item.add_marker(skip_full)
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(skip_gpu)
        if ("sglang" in item.keywords or "e2e" in item.keywords) and not HAS_SGLANG:
            item.add_marker(skip_sglang)
        if "cpu_interpreter" in item.keywords and not triton_interpreted():
            item.add_marker(skip_interpreter)


# What reads a tensor's value back to the host: inside a CUDA graph the value
# would be frozen at capture.
HOST_READS = ("tolist", "item", "__int__", "__bool__", "__index__", "__float__")


@pytest.fixture
def no_host_reads(monkeypatch):
    """A context manager: inside, any of HOST_READS on a tensor fails the test
    (what a CUDA-graph-safe path must not do)."""

    def host_read(*a, **kw):
        raise AssertionError("a host read inside the graph")

    @contextlib.contextmanager
    def forbid():
        with monkeypatch.context() as patch:
            for name in HOST_READS:
                patch.setattr(torch.Tensor, name, host_read)
            yield

    return forbid


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from sglang_amd.reference_model import smollm2_path

    return str(smollm2_path(progress=False))


@pytest.fixture(scope="session")
def engines(smollm2_path, tmp_path_factory):
    """Session-wide engine cache; the trace file records which backend served."""
    from tests.e2e_engines import EngineCache, ensure_cpu_platform

    ensure_cpu_platform()
    trace_file = tmp_path_factory.mktemp("trace") / "sglang_amd_trace.jsonl"
    os.environ["SGLANG_AMD_TRACE"] = str(trace_file)
    cache = EngineCache(smollm2_path)
    cache.trace_file = trace_file
    yield cache
    cache.close()


@pytest.fixture(scope="session")
def hf_oracle(smollm2_path):
    from tests.oracle import HFOracle

    return HFOracle(smollm2_path)


@pytest.fixture(scope="session")
def prompts(smollm2_path):
    from transformers import AutoTokenizer

    from tests.oracle import build_prompts

    return build_prompts(AutoTokenizer.from_pretrained(smollm2_path))
