#!/usr/bin/env bash
# The prepared GPU check, for a task that is lent a device (device minutes are
# scarce): the kernel test files compiled on the device (the `gpu` tests and the
# rest of each kernel file), the attention and MoE benches against their peers
# (SGLang's own Triton attention among them: from SGLang when installed, else
# from its kernel files carried in .peer/, see scripts/sglang_kernel_shim.py), and
# a sweep of the attention kernels' launch flags (scripts/sweep_attention.py).
# (bench dsa: DSA's indexer and sparse attention against SGLang's sparse MLA decode;
# bench mtp, where sglang is installed and SGLANG_AMD_MTP_MODEL names an MTP checkpoint:
# decode tokens/s with and without MTP at batch 1, 4, 16, and the accept length.)
# About 6 minutes on an H200 (298 and 330 s there before bench dsa, which adds at
# most 60; the tests' first compiles take most of theirs), on
# an image that has torch and triton but not sglang. Everything lands in
# $OUT/gpu-check.tgz (re-packed after each step, so a step cut short keeps the
# ones before; failures are logged as they happen, scripts/pytest_failure_log.py)
# and the steps' tails in $OUT/summary.txt; the figures go into BENCHMARKS.md
# with the device, the date and the commit. STEPS="tests bench sweep" picks steps.
#   .venv/bin/python scripts/sglang_kernel_shim.py .peer     # here, once
#   OUT=/tmp/out bash scripts/gpu_check.sh                     # there
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out/gpu-check}
RES=$(mktemp -d)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d .peer/sglang ] && ! "$PY" -c "import sglang" 2>/dev/null && PYTHONPATH="$PYTHONPATH:$PWD/.peer"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
status=0
# STEPS: which of "tests bench sweep" to run (default all).
want() { [[ " ${STEPS:-tests bench sweep} " == *" $1 "* ]]; }

pack() { tar czf "$OUT/gpu-check.tgz" -C "$RES" . 2>/dev/null; cp "$RES/summary.txt" "$OUT/"; }
say() { echo "$@" | tee -a "$RES/summary.txt"; }

step() {  # step NAME SECONDS CMD...: run with a time limit, log to NAME.log
    local name=$1 limit=$2
    shift 2
    say "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$RES/$name.log" 2>&1
    local rc=$?
    say "   rc=$rc in $((SECONDS - start))s; tail:"
    tail -n 25 "$RES/$name.log" | sed 's/^/   /' | tee -a "$RES/summary.txt"
    [ "$rc" -eq 0 ] || status=1
    pack
}

{
    date -u
    git rev-parse --short HEAD 2>/dev/null || echo "commit unknown"
    "$PY" -c "import torch, triton; print('torch', torch.__version__, 'hip', torch.version.hip, 'cuda', torch.version.cuda); print('triton', triton.__version__); p = torch.cuda.get_device_properties(0); print(p.name, p.multi_processor_count, 'units', p.total_memory >> 30, 'GiB')"
    "$PY" -c "import sglang; print('sglang peer:', getattr(sglang, 'KERNELS_ONLY_NOTE', 'installed ' + sglang.__version__))" 2>&1 | tail -1
    (nvidia-smi || rocm-smi) 2>/dev/null | head -15
} >"$RES/device.txt" 2>&1
cat "$RES/device.txt" | tee -a "$RES/summary.txt"
pack

if ! want tests; then
    :
elif ! "$PY" -c "import pytest" 2>/dev/null; then
    say "pytest is not installed on this image: the gpu tests cannot run"
    status=1
else
    # xdist spreads the first compile of each kernel configuration over the cores.
    workers=$("$PY" -c "import xdist" 2>/dev/null && echo "-n 16" || echo "")
    export PYTEST_FAILURE_LOG="$RES/gpu-test-failures.log"
    step gpu-tests 300 "$PY" -m pytest -v $workers -p no:cacheprovider -rfE \
        -p scripts.pytest_failure_log \
        --junitxml="$RES/gpu-tests.xml" \
        tests/test_attention_triton.py tests/test_attention_sparse.py \
        tests/test_attention_indexer.py tests/test_attention_reference.py \
        tests/test_moe_fused_triton.py tests/test_moe_reference.py \
        tests/test_mxfp4.py tests/test_mxfp4_linear.py tests/test_bench.py \
        tests/test_attention_dsa.py tests/test_attention_topk.py \
        tests/test_attention_sinks.py tests/test_moe_gpt_oss.py tests/test_ep_permute.py
fi
if want bench; then
    step bench-attention 120 "$PY" -m sglang_amd.cli bench attention --out "$RES"
    step bench-moe 90 "$PY" -m sglang_amd.cli bench moe --out "$RES"
    step bench-dsa 60 "$PY" -m sglang_amd.cli bench dsa --out "$RES"
    # Expert parallelism needs two GPUs or more (NCCL/RCCL ranks); one GPU skips it.
    if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
        step bench-ep 90 "$PY" -m sglang_amd.cli bench ep --out "$RES"
    else
        echo "bench-ep: skipped (fewer than two GPUs)"
    fi
    # MTP serves through SGLang: it needs sglang on the image and a checkpoint with
    # MTP layers on the device (no network there), e.g. MiMo-7B-RL or a GLM-4.5-Air.
    if ! "$PY" -c "import sglang.srt" 2>/dev/null; then
        say "bench-mtp: skipped (sglang is not installed on this image)"
    elif [ -z "${SGLANG_AMD_MTP_MODEL:-}" ]; then
        say "bench-mtp: skipped (set SGLANG_AMD_MTP_MODEL to a checkpoint with MTP layers)"
    else
        step bench-mtp 240 "$PY" -m sglang_amd.cli bench mtp --model "$SGLANG_AMD_MTP_MODEL" \
            --batches 1,4,16 --new-tokens 128 --out "$RES"
    fi
fi
want sweep && step sweep-attention 120 "$PY" scripts/sweep_attention.py --budget 60 --out "$RES"
say "gpu_check: status $status"
pack
exit "$status"
