#!/usr/bin/env bash
# The kernels' checks on a machine with a Hopper GPU (H100/H200) and a CUDA torch already
# installed (a vendor image, no network needed): build compat_kernels against that torch with
# sm_90 machine code, run the import, unit and GPU suites, then bench/kernels_bandwidth.py.
#
#   bash bench/gpu_check.sh [OUT_DIR]      (default OUT_DIR: ./gpu-check)
#
# PYTHON picks the interpreter (default python3). Every step runs even when one before it
# failed; each one's log, JUnit and the bandwidth JSON land in OUT_DIR, and the script exits
# non-zero when any step failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-${OUT:-$ROOT/gpu-check}}"
PY="${PYTHON:-python3}"
WHEELS="$(mktemp -d)"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
failed=0

step() {  # step NAME CMD...: run CMD, its output to the terminal and OUT/NAME.log
    local name="$1"; shift
    echo "=== $name: $*"
    local t0=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc in $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || failed=1
    return "$rc"
}

step facts bash -c "nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv; \
    nvcc --version | tail -n 2; \
    $PY -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))'"

# The wheel is built the way compatmatrix builds it: against the installed torch, no build
# isolation, CUDA required, Hopper machine code.
step build env COMPAT_KERNELS_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$(nproc)" \
    "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEELS" "$ROOT/kernels"
step install "$PY" -m pip install --no-deps --force-reinstall "$WHEELS"/compat_kernels-*.whl

# The suites import the installed wheel (importlib mode), never kernels/src. Plugins a
# vendor image may carry are kept out: the suites turn warnings into errors, and
# pytest-benchmark warns under xdist.
cd "$ROOT/kernels" || exit 1
for suite in import unit gpu; do
    workers=(-n 8)
    [ "$suite" = import ] && workers=()
    step "suite-$suite" "$PY" -m pytest "tests/$suite" "${workers[@]}" -q -p no:cacheprovider -p no:benchmark \
        --junitxml "$OUT/junit-$suite.xml"
done
cd "$ROOT" || exit 1

step bandwidth "$PY" bench/kernels_bandwidth.py --dtypes bfloat16 float16 float32 \
    --tokens 4096 --json "$OUT/bandwidth.json"
exit "$failed"
