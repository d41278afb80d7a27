"""`sglang-amd bench ...`: our kernels against peers measured in the same run.

Each benchmark prints a table of times, achieved GB/s or TFLOP/s, the fraction
of the device's measured copy bandwidth / bf16 matmul peak, and the ratio to the
best peer, and writes the same as JSON and a PNG. Never imports sglang.
"""
