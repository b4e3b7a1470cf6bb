#!/bin/bash
# bench/gpu.sh - on a machine with an NVIDIA GPU: builds ctrain with the CUDA backend for
# that GPU, runs the GPU-against-CPU comparison suite, then trains the MLP and CNN examples
# on the GPU with ctrain and with PyTorch (eager, same batch size, FP32) and prints median
# epoch times and test accuracies, the figures bench/RESULTS.md records.
#
#   bench/gpu.sh [--epochs N] [--skip-tests] [--python PY]
#
# Needs: nvcc and the CUDA libraries, ctrain's build dependencies (scripts/setup.sh
# --deps), python3 with torch (CUDA) and h5py, and data/fashion-mnist.h5
# (scripts/setup.sh --data). Writes its build to build-gpu/ and logs to bench/gpu-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=5 tests=1 py=${PEERS_PYTHON:-python3}
while [ $# -gt 0 ]; do
    case $1 in
    --epochs) epochs=$2; shift ;;
    --skip-tests) tests=0 ;;
    --python) py=$2; shift ;;
    *) echo "usage: bench/gpu.sh [--epochs N] [--skip-tests] [--python PY]" >&2; exit 2 ;;
    esac
    shift
done
logs=bench/gpu-logs
mkdir -p "$logs"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$logs/gpu.txt"
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
[ -f data/fashion-mnist.h5 ] || { echo "bench/gpu.sh: data/fashion-mnist.h5 is missing (scripts/setup.sh --data)" >&2; exit 1; }

# Build for this GPU only: quicker than every architecture.
[ -x configure ] || autoreconf -fi >/dev/null
mkdir -p build-gpu
(cd build-gpu && ../configure --with-cuda ${cap:+--with-cuda-arch=$cap} >"../$logs/configure.txt" 2>&1 &&
    make -j"$(nproc)" >"../$logs/make.txt" 2>&1) || { tail -30 "$logs/configure.txt" "$logs/make.txt"; exit 1; }
grep "CUDA:" "$logs/configure.txt"
ctrain=build-gpu/ctrain
export CTRAIN_CUDA_MODULE=$PWD/build-gpu/.libs/ctrain-cuda.so

if [ "$tests" = 1 ]; then
    # A failing comparison is reported, and the timings still run.
    set +e
    (cd build-gpu && make -j"$(nproc)" tests/test_cuda >/dev/null &&
        CT_SRCDIR="$PWD/.." CT_BUILDDIR="$PWD" ./tests/test_cuda) 2>&1 | tee "$logs/test_cuda.txt"
    status=${PIPESTATUS[0]}
    set -e
    echo "comparison suite exit status: $status"
fi

# Epoch times from the moment each progress line appears (as bench/run.sh does on the CPU).
stamp() { "$py" -u -c 'import sys, time
for line in sys.stdin: print(f"{time.time():.6f} {line}", end="", flush=True)'; }
for m in mlp cnn; do
    "$ctrain" fit "configs/fashion_mnist_$m.yaml" --device cuda -v 2 -o "build-gpu/run-$m" \
        --overwrite --set fit.epochs="$epochs" 2>&1 | stamp >"$logs/ctrain-$m.txt"
    "$py" bench/torch_reference.py "$m" --device cuda --epochs "$epochs" --data data/fashion-mnist.h5 \
        2>&1 | tee "$logs/torch-$m.txt" | tail -1
done
"$py" - "$logs" <<'PY'
import re, statistics, sys
logs = sys.argv[1]
print(f"\n{'model':6} {'framework':10} {'median epoch s':>15} {'test acc':>9}")
for m in ("mlp", "cnn"):
    stamps, acc = [], None
    for line in open(f"{logs}/ctrain-{m}.txt"):
        t, _, text = line.rstrip("\n").partition(" ")
        if text.startswith("Training on") or re.match(r"Epoch \d+/\d+ - ", text):
            stamps.append(float(t))
        a = re.match(r"Test \(\d+ samples\):.* accuracy: ([\d.]+)", text)
        if a:
            acc = float(a.group(1))
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    # The first epoch includes set-up (module load, cuBLAS initialisation): left out.
    med = statistics.median(times[1:] or times) if times else float("nan")
    text = open(f"{logs}/torch-{m}.txt").read()
    p = re.search(r"torch (\S+) \w+: median epoch ([\d.]+)s, test accuracy ([\d.]+)", text)
    print(f"{m:6} {'ctrain':10} {med:15.3f} {acc if acc is not None else float('nan'):9.4f}")
    if p:
        print(f"{m:6} {'torch ' + p.group(1):10} {float(p.group(2)):15.3f} {float(p.group(3)):9.4f}")
        print(f"{m:6} ratio ctrain / torch: {med / float(p.group(2)):.2f} (target <= 1)")
PY
