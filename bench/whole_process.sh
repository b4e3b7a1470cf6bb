#!/usr/bin/env bash
# bench/whole_process.sh - the whole `ctrain fit` process against PyTorch's whole script,
# on Fashion-MNIST written as h5py users often write it (chunks of 1000 images, gzip).
#
#   bench/whole_process.sh [--model mlp|cnn] [--epochs N] [--repeat N]
#
# Times, as the wall time of each process from start to exit (reading and checking the
# data, building, training --epochs epochs (default 3), evaluating on the test set), the
# median of --repeat runs (default 3) of
#   ctrain fit configs/fashion_mnist_MODEL.yaml on the gzip-chunked copy, and
#   bench/torch_reference.py MODEL on the same file,
# and prints the ratio. The peers' Python is bench/.venv (bench/run.sh makes it) or
# PEERS_PYTHON.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
model=mlp
epochs=3
repeat=3
while [ $# -gt 0 ]; do
    case "$1" in
        --model) [ $# -ge 2 ] || { echo "whole_process.sh: --model wants a value" >&2; exit 2; }; model=$2; shift ;;
        --epochs) [ $# -ge 2 ] || { echo "whole_process.sh: --epochs wants a value" >&2; exit 2; }; epochs=$2; shift ;;
        --repeat) [ $# -ge 2 ] || { echo "whole_process.sh: --repeat wants a value" >&2; exit 2; }; repeat=$2; shift ;;
        -h|--help) sed -n '4p' "$0" | sed 's/^#   /usage: /'; exit 0 ;;
        *) echo "whole_process.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
case "$epochs" in [1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]) ;; *) echo "whole_process.sh: --epochs wants a positive integer, got '$epochs'" >&2; exit 2 ;; esac
case "$repeat" in [1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]) ;; *) echo "whole_process.sh: --repeat wants a positive integer, got '$repeat'" >&2; exit 2 ;; esac
case "$model" in mlp|cnn) ;; *) echo "whole_process.sh: --model is mlp or cnn" >&2; exit 2 ;; esac
ctrain=${CTRAIN:-./ctrain}
py=${PEERS_PYTHON:-bench/.venv/bin/python}
[ -x "$ctrain" ] || { echo "whole_process.sh: no ctrain at $ctrain; build it first" >&2; exit 2; }
[ -f data/fashion-mnist.h5 ] || { echo "whole_process.sh: data/fashion-mnist.h5 is missing (scripts/setup.sh --data)" >&2; exit 2; }
"$py" -c 'import torch, h5py' 2>/dev/null || { echo "whole_process.sh: $py has no torch and h5py (run bench/run.sh once, or set PEERS_PYTHON)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctrain-whole-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
gz=$tmp/fashion-gzip.h5
"$py" - "$gz" <<'PY'
import sys, h5py
with h5py.File("data/fashion-mnist.h5", "r") as src, h5py.File(sys.argv[1], "w") as out:
    for g in ("train", "test"):
        x, y = src[g + "/images"][:], src[g + "/labels"][:]
        out.create_dataset(g + "/images", data=x, chunks=(1000,) + x.shape[1:], compression="gzip")
        out.create_dataset(g + "/labels", data=y, chunks=(1000,), compression="gzip")
PY

wall() { # command... -> seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

c=$(for _ in $(seq "$repeat"); do
    wall "$ctrain" fit "configs/fashion_mnist_$model.yaml" -o "$tmp/run" --overwrite -q \
        --set data.train.path="$gz" --set data.test.path="$gz" --set fit.epochs="$epochs"
done | median)
t=$(for _ in $(seq "$repeat"); do
    wall "$py" bench/torch_reference.py "$model" --data "$gz" --epochs "$epochs" --threads "$(nproc)"
done | median)
echo "fashion_mnist_$model, $epochs epochs on the gzip-chunked file, whole process, median of $repeat runs"
printf '  ctrain   %7.2f s\n  pytorch  %7.2f s\n' "$c" "$t"
awk -v c="$c" -v t="$t" 'BEGIN { printf "  ctrain / pytorch: %.2fx\n", c / t }'
