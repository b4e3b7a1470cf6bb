#!/usr/bin/env bash
# bench/contention.sh - ctrain's training step with a core taken by another process.
#
#   bench/contention.sh [--model mlp|cnn] [--steps N] [--repeat N]
#
# Runs `ctrain fit configs/fashion_mnist_MODEL.yaml` for a part of an epoch (--steps,
# default 300, through fit.validation_split so the run stays short) with 1 thread and with
# every usable core (backend.adapt_threads off), then with every core and adapt_threads on
# (the default: fit times the thread counts and keeps the fastest), first alone, then while a competing process keeps one core busy (a
# shell loop pinned to CPU 0 with taskset). Prints the median milliseconds per step from
# `fit --profile` over --repeat runs (default 3) and the ratios, plus PyTorch's step on the
# same data for the MLP when bench/.venv (from bench/run.sh) or PEERS_PYTHON has torch.
#
# What it shows: a busy core holds every step up to the share of the thread that shares it
# (descheduled for a time slice while it holds a chunk), so all threads can be slower than
# one; with adapt_threads the step should stay near the faster fixed count, alone or busy.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
model=mlp
steps=300
repeat=3
while [ $# -gt 0 ]; do
    case "$1" in
        --model) [ $# -ge 2 ] || { echo "contention.sh: --model wants a value" >&2; exit 2; }; model=$2; shift ;;
        --steps) [ $# -ge 2 ] || { echo "contention.sh: --steps wants a value" >&2; exit 2; }; steps=$2; shift ;;
        --repeat) [ $# -ge 2 ] || { echo "contention.sh: --repeat wants a value" >&2; exit 2; }; repeat=$2; shift ;;
        -h|--help) sed -n '4p' "$0" | sed 's/^#   /usage: /'; exit 0 ;;
        *) echo "contention.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
case "$steps" in [1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]) ;; *) echo "contention.sh: --steps wants a positive integer, got '$steps'" >&2; exit 2 ;; esac
case "$repeat" in [1-9]|[1-9][0-9]|[1-9][0-9][0-9]|[1-9][0-9][0-9][0-9]) ;; *) echo "contention.sh: --repeat wants a positive integer, got '$repeat'" >&2; exit 2 ;; esac
case "$model" in mlp|cnn) ;; *) echo "contention.sh: --model is mlp or cnn" >&2; exit 2 ;; esac
ctrain=${CTRAIN:-./ctrain}
[ -x "$ctrain" ] || { echo "contention.sh: no ctrain at $ctrain; build it first" >&2; exit 2; }
[ -f data/fashion-mnist.h5 ] || { echo "contention.sh: data/fashion-mnist.h5 is missing (scripts/setup.sh --data)" >&2; exit 2; }
command -v taskset >/dev/null || { echo "contention.sh: taskset (util-linux) is missing" >&2; exit 2; }
cores=$(nproc)
[ "$cores" -ge 2 ] || { echo "contention.sh: needs at least 2 usable cores, this process has $cores" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ctrain-contention-XXXXXX")
busy_pid=
cleanup() { [ -n "$busy_pid" ] && kill "$busy_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# Training rows for about --steps steps of 128: the rest goes to validation, unused here.
rows=$((steps * 128))
split=$(awk -v r="$rows" 'BEGIN { s = 1 - r / 60000; if (s < 0.01) s = 0.01; printf "%.4f", s }')

step_ms() { # threads adapt_threads -> ms per step from fit --profile
    "$ctrain" fit "configs/fashion_mnist_$model.yaml" -o "$tmp/run" --overwrite -q --profile \
        --set fit.epochs=1 --set data.validation_split="$split" --set backend.threads="$1" \
        --set backend.adapt_threads="${2:-false}" --set fit.validation_freq=100 |
        awk '/whole step/ { print $3 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

measure() { # threads [adapt_threads] -> median ms per step
    for _ in $(seq "$repeat"); do step_ms "$1" "${2:-false}"; done | median
}

torch_ms() {
    local py=${PEERS_PYTHON:-bench/.venv/bin/python}
    [ "$model" = mlp ] && [ -x "$py" ] && "$py" -c 'import torch' 2>/dev/null || return 0
    "$py" - "$1" "$steps" <<'PY'
import sys, time, h5py, torch
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(1)
with h5py.File("data/fashion-mnist.h5", "r") as f:
    x = torch.tensor(f["train/images"][: steps * 128], dtype=torch.float32).reshape(-1, 784) / 255
    y = torch.tensor(f["train/labels"][: steps * 128], dtype=torch.long)
m = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                        torch.nn.ReLU(), torch.nn.Linear(128, 10))
opt = torch.optim.Adam(m.parameters(), 1e-3)
loss = torch.nn.CrossEntropyLoss()
t = time.perf_counter()
for i in range(steps):
    xb, yb = x[i * 128:(i + 1) * 128], y[i * 128:(i + 1) * 128]
    opt.zero_grad()
    loss(m(xb), yb).backward()
    opt.step()
print("%.3f" % (1e3 * (time.perf_counter() - t) / steps))
PY
}

report() { # label threads file [adapt_threads]
    local c t=
    c=$(measure "$2" "${4:-false}")
    [ "${4:-false}" = true ] || t=$(for _ in $(seq "$repeat"); do torch_ms "$2"; done | median)
    printf '%-34s %8s %10s\n' "$1" "$c" "${t:--}"
    echo "$c" >"$tmp/$3"
}

echo "fashion_mnist_$model, $steps steps of 128, medians of $repeat runs: ms per step"
printf '%-34s %8s %10s\n' "" "ctrain" "pytorch"
report "1 thread, alone" 1 one
report "$cores threads, alone" "$cores" all
report "$cores threads, adapting, alone" "$cores" auto true
taskset -c 0 sh -c 'while :; do :; done' &
busy_pid=$!
report "1 thread, CPU 0 busy" 1 one_busy
report "$cores threads, CPU 0 busy" "$cores" all_busy
report "$cores threads, adapting, CPU 0 busy" "$cores" auto_busy true
kill "$busy_pid"
busy_pid=
awk -v a="$(cat "$tmp/all")" -v b="$(cat "$tmp/all_busy")" -v o="$(cat "$tmp/one")" \
    -v u="$(cat "$tmp/auto")" -v ub="$(cat "$tmp/auto_busy")" -v ob="$(cat "$tmp/one_busy")" \
    'BEGIN { printf "all threads: busy / alone %.2fx; busy all threads / alone 1 thread %.2fx\n", b / a, b / o
             printf "adapting: alone / all threads %.2fx; busy / best fixed count busy %.2fx\n", u / a, ub / (ob < b ? ob : b) }'
