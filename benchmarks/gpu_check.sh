#!/usr/bin/env bash
# The GPU check: everything that needs a GPU to mean something, in one run and one results file.
#
#   bash benchmarks/gpu_check.sh [RESULTS_FILE]     (default: gpu_check_<UTC time>.txt)
#
# 1. the CUDA test subset (python -m pytest -m cuda tests/test_cuda.py): every Triton and CUDA
#    kernel against its reference, the multi-tensor CUDA optimizer kernel included, and the
#    Trainer's CUDA graphs, compiled step and host synchronisations;
# 2. the Trainer's host synchronisations per step and per epoch (python -m nol_fast.bench.syncs);
# 3. the kernel benchmarks: nol-fast benchmark spectral, optim and physics;
# 4. the end-to-end suite, nol-fast benchmark e2e --variants all: the Trainer in fp32 and in its
#    default precision (bf16 on a GPU that computes in it), eager, compiled, in CUDA graphs, and
#    compiled in CUDA graphs, next to neuraloperator.
# It is meant to take under 8 minutes on one H200 (GPU_CHECK_SETUPS=a,c, say, times fewer e2e
# setups). Every step runs even when an earlier one fails; the exit status is that of the first
# failure.
#
# Without a CUDA device it runs the part that runs on the CPU: the CUDA tests are collected and
# skip, and the benchmarks run on the CPU at their smallest sizes, with the e2e suite on its
# small setup. GPU_CHECK_SMOKE=1 shrinks every step to a smoke test of the script itself (the
# test suite runs it so: tests/test_gpu_check.py); the numbers it prints time nothing.
set -uo pipefail
cd "$(dirname "$0")/.."  # python -m runs the package of this checkout
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$PWD/.cache/inductor}"
results="${1:-gpu_check_$(date -u +%Y%m%dT%H%M%SZ).txt}"
python="${PYTHON:-python}"

if "$python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    gpu=1
else
    gpu=0
fi
if [[ "${GPU_CHECK_SMOKE:-0}" == 1 ]]; then
    syncs=(--variants eager)
    spectral=(--shapes 2d --repeat 1)
    optim=(--sets fno --repeat 1)
    physics=(--residuals darcy --repeat 1)
    e2e=(--setups s --variants eager --repeat 1)
elif [[ "$gpu" == 1 ]]; then
    syncs=(--variants eager,compile,graphs)
    spectral=(--shapes 1d,2d,3d)
    optim=(--sets fno,10m)
    physics=(--residuals navier_stokes,darcy)
    e2e=(--setups "${GPU_CHECK_SETUPS:-a,b,c}" --variants all)
else
    syncs=(--variants eager,compile)
    spectral=(--shapes 2d --repeat 3)
    optim=(--sets fno --repeat 3)
    physics=(--repeat 3)
    e2e=(--setups s --variants all --repeat 3)
fi

status=0
SECONDS=0
# step TITLE COMMAND...: runs COMMAND, its output and exit status going to the results file.
step() {
    local title="$1" start="$SECONDS" rc
    shift
    {
        echo
        echo "== $title"
        echo "\$ $*"
    } >>"$results"
    "$@" >>"$results" 2>&1
    rc=$?
    echo "-- exit status $rc after $((SECONDS - start)) s" >>"$results"
    echo "$title: exit status $rc after $((SECONDS - start)) s"
    if [[ "$rc" != 0 && "$status" == 0 ]]; then
        status="$rc"
    fi
}

{
    echo "nol_fast GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ "$gpu" == 1 ]]; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    else
        echo "no CUDA device: the CPU-runnable part only"
    fi
} >"$results"
echo "writing $results"

step "versions and build" "$python" -m nol_fast info
step "CUDA tests" "$python" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider
step "host synchronisations of the Trainer" "$python" -m nol_fast.bench.syncs "${syncs[@]}"
step "kernel benchmark: spectral convolution" \
    "$python" -m nol_fast benchmark spectral "${spectral[@]}"
step "kernel benchmark: optimizer step" "$python" -m nol_fast benchmark optim "${optim[@]}"
step "kernel benchmark: physics residuals" "$python" -m nol_fast benchmark physics "${physics[@]}"
step "end-to-end training step" "$python" -m nol_fast benchmark e2e "${e2e[@]}"
if grep -q "accuracy guard FAILED" "$results"; then
    echo "end-to-end training step: the accuracy guard failed"
    [[ "$status" == 0 ]] && status=1
fi

echo >>"$results"
echo "== done in $SECONDS s, exit status $status" >>"$results"
echo "done in $SECONDS s, exit status $status; results in $results"
exit "$status"
