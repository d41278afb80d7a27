#!/usr/bin/env bash
# The prepared GPU check, for the day a device is lent (device minutes are scarce):
# the `gpu` tests, the compile audit for this machine's own target, and every bench,
# within 8 minutes, on an image that has torch and triton but not sglang. Results
# (logs, JUnit XML, the benches' JSON and PNG) go to $OUT; their figures go into
# BENCHMARKS.md with the device, the date and the commit.
#   OUT=/tmp/out bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
status=0

step() {  # step NAME SECONDS CMD...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc in $((SECONDS - start))s; tail:"
    tail -n 15 "$OUT/$name.log" | sed 's/^/   /'
    [ "$rc" -eq 0 ] || status=1
}

{
    date -u
    git rev-parse --short HEAD 2>/dev/null || echo "commit unknown"
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'hip', torch.version.hip, 'cuda', torch.version.cuda); print('triton', triton.__version__); print(torch.cuda.get_device_name(0))"
    (nvidia-smi || rocm-smi) 2>/dev/null | head -20
} >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

if ! "$PY" -c "import pytest" 2>/dev/null; then
    echo "pytest is not installed on this image: the gpu tests cannot run" | tee "$OUT/gpu-tests.log"
    status=1
else
    step gpu-tests 240 "$PY" -m pytest -q -m gpu -p no:cacheprovider \
        --junitxml="$OUT/gpu-tests.xml" \
        tests/test_attention_triton.py tests/test_moe_fused_triton.py \
        tests/test_mxfp4_linear.py tests/test_bench.py
fi
step bench-attention 90 "$PY" -m sglang_amd.cli bench attention --out "$OUT"
step bench-moe 120 "$PY" -m sglang_amd.cli bench moe --out "$OUT"
echo "gpu_check: results in $OUT (status $status)"
exit "$status"
