"""hypothesis where it is installed; elsewhere (the GPU test image has torch and
triton only) its property tests skip and the rest of each module still collects."""

from __future__ import annotations

import pytest

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:

    class _Strategies:
        def __getattr__(self, name: str):
            return lambda *args, **kwargs: None

    st = _Strategies()

    def settings(*args, **kwargs):
        return lambda fn: fn

    def given(*args, **kwargs):
        return pytest.mark.skip(reason="hypothesis is not installed here (GPU test image)")


__all__ = ["given", "settings", "st"]
