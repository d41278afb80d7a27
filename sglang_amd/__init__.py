"""sglang-amd: ATOM-style backends plugged into stock SGLang (pinned 0.5.23).

Nothing here imports sglang: the kernel and numerics modules must import on
machines that only have torch and triton. SGLang finds us through the entry
points in pyproject.toml (`plugin.register`, `platform.activate`).
"""

__version__ = "0.1.0"
SGLANG_VERSION = "0.5.23"
