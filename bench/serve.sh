#!/usr/bin/env bash
# bench/serve.sh - ctrain serve against a FastAPI + PyTorch server of the same model and weights.
#
#   bench/serve.sh [--models mlp,cnn] [--clients 1,8,64] [--seconds N] [--reps N] [--threads N] [--torch-workers N] [--weights mlp=W.h5,cnn=W.h5]
#
# For each model (configs/fashion_mnist_MODEL.yaml) it takes the weights given, or makes them
# with a one-epoch fit, then starts `ctrain serve` (-q, --no-reload) and bench/torch_serve.py
# (FastAPI on one uvicorn worker, bench/torch_reference.py's model with the same weights read
# from the weights file with h5py) on 127.0.0.1, checks that both answer 64 test images as
# `ctrain predict` does (to 1e-5), and drives each with bench/loadgen.c: N clients, each on
# its own keep-alive connection, send {"instances": [one image]} back to back for --seconds
# (default 5, after 0.5 s of warm-up), at each of --clients. Each measurement is repeated
# --reps times (default 3), the servers taking turns, and the table has the medians of
# requests per second and of the p50 and p99 latencies.
#
# --threads (default 1): ctrain's backend.threads and torch.set_num_threads in each uvicorn
# worker; the load generator runs on the same machine and needs cores of its own.
# --torch-workers N (N > 1) adds a row for uvicorn with N workers (each with --threads).
# Python: bench/.venv (PEERS_PYTHON=path overrides), given torch, h5py, fastapi and uvicorn
# from PyPI where they are missing.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

usage() {
    sed -n '4p' "$0" | sed 's/^#   /usage: /' >&2
    exit 2
}
refuse() {
    echo "serve.sh: $*" >&2
    exit 2
}
# A comma-separated list of whole numbers from 1 to max.
numbers() {
    local opt=$1 text=$2 max=$3 n
    [ -n "$text" ] || refuse "$opt wants a value"
    IFS=, read -r -a list <<< "$text"
    for n in "${list[@]}"; do
        [[ "$n" =~ ^[1-9][0-9]{0,5}$ ]] && [ "$n" -le "$max" ] ||
            refuse "$opt wants whole numbers from 1 to $max, not '$n'"
    done
}

models=mlp,cnn
clients=1,8,64
seconds=5
reps=3
threads=1
torch_workers=1
weights=""
while [ $# -gt 0 ]; do
    case "$1" in
        --models|--clients|--seconds|--reps|--threads|--torch-workers|--weights)
            [ $# -ge 2 ] || refuse "$1 wants a value"
            opt=$1 val=$2
            shift ;;
        --models=*|--clients=*|--seconds=*|--reps=*|--threads=*|--torch-workers=*|--weights=*)
            opt=${1%%=*} val=${1#*=} ;;
        -h|--help) usage ;;
        *) echo "serve.sh: unknown argument '$1'" >&2; usage ;;
    esac
    case "$opt" in
        --models) models=$val ;;
        --clients) numbers --clients "$val" 4096; clients=$val ;;
        --seconds) numbers --seconds "$val" 3600; seconds=$val ;;
        --reps) numbers --reps "$val" 99; reps=$val ;;
        --threads) numbers --threads "$val" 256; threads=$val ;;
        --torch-workers) numbers --torch-workers "$val" 64; torch_workers=$val ;;
        --weights) weights=$val ;;
    esac
    shift
done
[[ "$seconds$reps$threads$torch_workers" != *,* ]] ||
    refuse "--seconds, --reps, --threads and --torch-workers take one number"
IFS=, read -r -a model_list <<< "$models"
[ ${#model_list[@]} -gt 0 ] || refuse "--models wants mlp, cnn or both"
for m in "${model_list[@]}"; do
    case "$m" in mlp|cnn) ;; *) refuse "--models: unknown model '$m' (mlp, cnn)" ;; esac
done
IFS=, read -r -a client_list <<< "$clients"
# --weights mlp=FILE,cnn=FILE
declare -A given=()
if [ -n "$weights" ]; then
    IFS=, read -r -a pairs <<< "$weights"
    for p in "${pairs[@]}"; do
        m=${p%%=*} f=${p#*=}
        case "$m" in mlp|cnn) ;; *) refuse "--weights wants MODEL=FILE with MODEL mlp or cnn, not '$p'" ;; esac
        [ "$m" != "$p" ] && [ -f "$f" ] || refuse "--weights: no file '$f' for $m"
        given[$m]=$(cd "$(dirname "$f")" && pwd)/$(basename "$f")
    done
fi

ctrain=${CTRAIN:-./ctrain}
[ -x "$ctrain" ] || { echo "serve.sh: no ctrain at '$ctrain': build it first (./configure && make), or set CTRAIN=path" >&2; exit 1; }
# In a build tree, ./ctrain is libtool's wrapper script; run the program itself.
if [ -x "$(dirname "$ctrain")/.libs/ctrain" ] && head -c 2 "$ctrain" | grep -q '#!'; then
    export LD_LIBRARY_PATH="$(cd "$(dirname "$ctrain")/.libs" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    ctrain="$(dirname "$ctrain")/.libs/ctrain"
fi
[ -f data/fashion-mnist.h5 ] || { echo "serve.sh: data/fashion-mnist.h5 is missing: run  scripts/setup.sh --data  first" >&2; exit 1; }
command -v curl >/dev/null || { echo "serve.sh: curl is missing (apt-get install curl)" >&2; exit 1; }

python=${PEERS_PYTHON:-bench/.venv/bin/python}
if ! "$python" -c 'import torch, h5py, fastapi, uvicorn' 2>/dev/null; then
    if [ -n "${PEERS_PYTHON:-}" ]; then
        echo "serve.sh: $python lacks torch, h5py, fastapi or uvicorn" >&2
        exit 1
    fi
    echo "serve.sh: installing torch, h5py, fastapi and uvicorn from PyPI into bench/.venv (once)" >&2
    { [ -x bench/.venv/bin/pip ] || python3 -m venv bench/.venv; } &&
        bench/.venv/bin/pip install --quiet torch h5py fastapi uvicorn ||
        { echo "serve.sh: could not install them (is PyPI reachable?)" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ctrain-serve-bench.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cc=${CC:-cc}
"$cc" -std=c11 -O2 -Wall -Wextra -pthread bench/loadgen.c -o "$work/loadgen" ||
    { echo "serve.sh: cannot compile bench/loadgen.c" >&2; exit 1; }

# 64 test images, one request body each.
"$python" - "$work/bodies.txt" <<'EOF'
import json, sys, h5py
x = h5py.File("data/fashion-mnist.h5", "r")["test/images"][:64]
with open(sys.argv[1], "w") as f:
    for image in x:
        f.write(json.dumps({"instances": [image.tolist()]}, separators=(",", ":")) + "\n")
EOF

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready URL LOG: until GET URL answers 200 (at most 120 s).
wait_ready() {
    local i
    for i in $(seq 240); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.5
    done
    echo "serve.sh: $1 did not answer within 120 s; the end of its log:" >&2
    tail -n 20 "$2" >&2
    exit 1
}

# start_ctrain MODEL WEIGHTS: sets url_ctrain and pid_ctrain.
start_ctrain() {
    local m=$1 w=$2 out=$work/ctrain-$1.out port="" i
    "$ctrain" serve "configs/fashion_mnist_$m.yaml" --weights "$w" --port 0 -q --no-reload \
        --set "backend.threads=$threads" >"$out" 2>&1 &
    pid_ctrain=$!
    pids+=("$pid_ctrain")
    for i in $(seq 600); do
        port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$out")
        [ -n "$port" ] && break
        kill -0 "$pid_ctrain" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "serve.sh: ctrain serve did not start:" >&2; cat "$out" >&2; exit 1; }
    url_ctrain=http://127.0.0.1:$port/v1/models/fashion_mnist_$m
    wait_ready "$url_ctrain" "$out"
}

# start_torch MODEL WEIGHTS WORKERS: sets url_torch and pid_torch.
start_torch() {
    local m=$1 w=$2 n=$3 port log=$work/torch-$1-$3.log
    port=$(free_port)
    OMP_NUM_THREADS=$threads "$python" bench/torch_serve.py "$m" "$w" --port "$port" \
        --threads "$threads" --workers "$n" >"$log" 2>&1 &
    pid_torch=$!
    pids+=("$pid_torch")
    url_torch=http://127.0.0.1:$port/v1/models/fashion_mnist_$m
    wait_ready "$url_torch" "$log"
}

# stop PID NAME: SIGTERM, then a clean exit: 0 for ctrain; uvicorn shuts down and then
# raises the signal again, which ends it with 143 (128 + SIGTERM).
stop() {
    local rc=0
    kill -TERM "$1"
    wait "$1" || rc=$?
    [ "$rc" = 0 ] || { [ "$2" != ctrain ] && [ "$rc" = 143 ]; } ||
        { echo "serve.sh: $2 exited $rc after SIGTERM" >&2; exit 1; }
}

# check MODEL PREDICTIONS URL...: each server answers test images 0-63, in one request, as
# ctrain predict does.
check() {
    local m=$1 pred=$2
    shift 2
    "$python" - "$m" "$work/bodies.txt" "$pred" "$@" <<'EOF'
import json, sys, urllib.request, h5py, numpy as np
model, bodies, pred, urls = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
images = [json.loads(line)["instances"][0] for line in open(bodies)]
want = h5py.File(pred, "r")["predictions"][:len(images)]
diffs = []
for url in urls:
    req = urllib.request.Request(url + ":predict", data=json.dumps({"instances": images}).encode())
    with urllib.request.urlopen(req, timeout=60) as r:
        got = np.array(json.loads(r.read())["predictions"])
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= 1e-5:
        sys.exit(f"serve.sh: {model}: {url} answers {got.shape} predictions that differ from "
                 f"ctrain predict's by {diff:.3g}")
    diffs.append(f"{diff:.1e}")
print(f"{model}: every server answers the 64 test images as ctrain predict does "
      f"(largest differences {', '.join(diffs)})", file=sys.stderr)
EOF
}

# load MODEL SERVER CLIENTS REP URL: one loadgen run, appended to the results.
load() {
    local out
    out=$("$work/loadgen" --url "$5:predict" --body "$work/bodies.txt" --clients "$3" \
        --seconds "$seconds" --warmup 0.5 --expect '"predictions"' 2>"$work/loadgen.err") || true
    if [ -z "$out" ]; then
        echo "serve.sh: loadgen failed:" >&2
        cat "$work/loadgen.err" >&2
        exit 1
    fi
    [ -s "$work/loadgen.err" ] && sed "s/^/  $2: /" "$work/loadgen.err" >&2
    echo "  $1 $2 rep $4: $out" >&2
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$out" >> "$work/results.tsv"
}

: > "$work/results.tsv"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for m in "${model_list[@]}"; do
    if [ -n "${given[$m]:-}" ]; then
        w=${given[$m]}
    else
        echo "== $m: weights from a one-epoch fit" >&2
        "$ctrain" fit "configs/fashion_mnist_$m.yaml" -o "$work/run-$m" -q --no-report \
            --set fit.epochs=1
        w=$work/run-$m/weights.h5
    fi
    "$ctrain" predict "configs/fashion_mnist_$m.yaml" --weights "$w" --input data/fashion-mnist.h5 \
        --x test/images -o "$work/pred-$m.h5" >/dev/null
    start_ctrain "$m" "$w"
    start_torch "$m" "$w" 1
    servers=(ctrain torch)
    urls=("$url_ctrain" "$url_torch")
    pid_list=("$pid_ctrain" "$pid_torch")
    if [ "$torch_workers" -gt 1 ]; then
        start_torch "$m" "$w" "$torch_workers"
        servers+=("torch-$torch_workers")
        urls+=("$url_torch")
        pid_list+=("$pid_torch")
    fi
    check "$m" "$work/pred-$m.h5" "${urls[@]}"
    for i in "${!urls[@]}"; do # warm-up, not counted
        "$work/loadgen" --url "${urls[$i]}:predict" --body "$work/bodies.txt" --clients 8 \
            --seconds 1 >/dev/null 2>&1 || true
    done
    for rep in $(seq "$reps"); do
        for c in "${client_list[@]}"; do
            for i in "${!urls[@]}"; do
                load "$m" "${servers[$i]}" "$c" "$rep" "${urls[$i]}"
            done
        done
    done
    for i in "${!pid_list[@]}"; do
        stop "${pid_list[$i]}" "${servers[$i]}"
    done
    pids=()
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Report ---------------------------------------------------------------------------------
"$ctrain" --version | head -n 1
"$python" -c 'import torch, fastapi, uvicorn; print(f"torch {torch.__version__}, fastapi {fastapi.__version__}, uvicorn {uvicorn.__version__}")'
echo "$(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)); load average" \
    "(1, 5, 15 min) $load_before before, $load_after after"
echo "threads: $threads (ctrain backend.threads, torch.set_num_threads per uvicorn worker);" \
    "loadgen runs on the same cores"
"$python" - "$work/results.tsv" "$seconds" "$reps" <<'EOF'
import re, statistics, sys
results, seconds, reps = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for line in open(results):
    model, server, clients, rep, out = line.rstrip("\n").split("\t")
    v = dict(re.findall(r"(\w+)=([\d.]+)", out))
    runs.setdefault((model, int(clients), server), []).append(v)
print(f"\nMedians of {reps} runs of {seconds} s each (req/s: the lowest and highest in "
      f"brackets); one image per request.\n")
head = (f"{'model':5} {'clients':>7} {'server':10} {'req/s':>20} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6}  ctrain vs it")
print(head)
print("-" * len(head))
for (model, clients, server), vs in runs.items():
    med = lambda k: statistics.median(float(v[k]) for v in vs)
    rates = [float(v["rps"]) for v in vs]
    errors = sum(int(v["errors"]) for v in vs)
    base = runs.get((model, clients, "ctrain"))
    ratio = ""
    if base and server != "ctrain":
        ratio = f"{statistics.median(float(v['rps']) for v in base) / med('rps'):.1f}x the req/s"
    rate = f"{med('rps'):.0f} ({min(rates):.0f}-{max(rates):.0f})"
    print(f"{model:5} {clients:7} {server:10} {rate:>20} {med('p50_ms'):8.2f} "
          f"{med('p99_ms'):8.2f} {errors:6}  {ratio}")
EOF
