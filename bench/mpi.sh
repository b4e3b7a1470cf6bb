#!/bin/sh
# bench/mpi.sh - data-parallel training on processes of this machine: ctrain under mpirun
# against PyTorch's DistributedDataParallel (gloo, bench/torch_ddp.py), same model, global
# batch, data split and optimizer, one thread per process.
#
#   bench/mpi.sh [--np 2] [--epochs 3] [--models mlp,cnn]
#
# Prints, per model: ctrain's median epoch (from its per-step time; fit -v 2), the step's
# allreduce wait and its share (fit --profile, rank 0), and PyTorch's median epoch with
# its allreduce and without (no_sync), whose difference is the communication its backward
# pass did not hide. Needs a build with MPI, data/fashion-mnist.h5 (scripts/setup.sh
# --data) and a Python with torch and h5py (PEERS_PYTHON, else bench/.venv). Timings on a
# shared machine vary: the load average is printed before and after.
set -eu
cd "$(dirname "$0")/.."
np=2 epochs=3 models=mlp,cnn
while [ $# -gt 0 ]; do
    case $1 in
    --np|--epochs|--models)
        [ $# -ge 2 ] || { echo "mpi.sh: $1 wants a value" >&2; exit 2; }
        case $1 in --np) np=$2 ;; --epochs) epochs=$2 ;; --models) models=$2 ;; esac
        shift 2 ;;
    *) echo "mpi.sh: unknown argument '$1'; usage: bench/mpi.sh [--np N] [--epochs N] [--models mlp,cnn]" >&2; exit 2 ;;
    esac
done
for v in "np=$np" "epochs=$epochs"; do
    case ${v#*=} in
    [1-9]|[1-9][0-9]|[1-9][0-9][0-9]) ;;
    *) echo "mpi.sh: --${v%%=*} wants a positive integer, got '${v#*=}'" >&2; exit 2 ;;
    esac
done
for m in $(echo "$models" | tr , ' '); do
    case $m in mlp|cnn) ;; *) echo "mpi.sh: unknown model '$m' (mlp or cnn)" >&2; exit 2 ;; esac
done
py=${PEERS_PYTHON:-bench/.venv/bin/python}
grep -q "define CT_HAVE_MPI 1" autoconfig.h || { echo "mpi.sh: ctrain was built without MPI" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctrain-mpi-bench-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Median of the epochs' times, from lines "Epoch 1/3 - 422/422 - 12s 28ms/step - ...".
epoch_median() {
    sed -n 's|^Epoch [0-9]*/[0-9]* - \([0-9]*\)/[0-9]* - [0-9ms]* \([0-9.]*\)\([um]*s\)/step.*|\1 \2 \3|p' "$1" |
        awk '{ f = $3 == "us" ? 1e-6 : $3 == "ms" ? 1e-3 : 1; print $1 * $2 * f }' | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
for m in $(echo "$models" | tr , ' '); do
    mpirun --oversubscribe --allow-run-as-root -np "$np" ./ctrain fit "configs/fashion_mnist_$m.yaml" \
        -o "$tmp/$m" --overwrite --no-report -v 2 --profile --set fit.epochs="$epochs" \
        --set backend.threads=1 >"$tmp/$m.log" 2>&1 || { cat "$tmp/$m.log"; exit 1; }
    wait_ms=$(sed -n 's/^  allreduce wait ([0-9]* ranks) *\([0-9.]*\) *\([0-9.]*%\)/\1 ms per step, \2 of it/p' "$tmp/$m.log")
    step=$(sed -n 's/^  whole step *\([0-9.]*\)/\1/p' "$tmp/$m.log")
    echo "ctrain $m x$np: median epoch $(epoch_median "$tmp/$m.log")s, step $step ms, allreduce wait $wait_ms"
    "$py" bench/torch_ddp.py "$m" --np "$np" --epochs "$epochs"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
