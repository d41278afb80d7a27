"""Accuracy evaluation against a running server (`sglang-amd eval ...`)."""
