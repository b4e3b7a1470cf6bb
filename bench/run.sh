#!/usr/bin/env bash
# bench/run.sh - ctrain against PyTorch and Keras on the example experiments, on this machine.
#
#   bench/run.sh [--quick] [--epochs N] [--models mlp,cnn,cnn_bn,resnet,text_lstm,...] [--threads N] [--seeds N]
#                [--peers torch,keras]
#
# Expects a built ctrain (./ctrain in the top folder, or CTRAIN=path) and the data files
# data/fashion-mnist.h5, data/fortunes-char.h5 and data/fortunes-topics.h5 (scripts/setup.sh --data). The peers, the newest PyTorch and Keras 3
# on TensorFlow, come from a virtual environment bench/.venv created on first use from PyPI
# (or PEERS_PYTHON=path/to/python); without PyPI, Debian's python3-torch is used.
#
# --models picks the experiments, configs/fashion_mnist_MODEL.yaml (default mlp,cnn,cnn_bn;
# resnet, the small residual network, is run only when named). The text models, run only
# when named: text_lstm (configs/text_char_lstm.yaml), text_transformer
# (configs/text_transformer.yaml) and text_gru (configs/text_classify_gru.yaml); for them
# the report has the validation loss and accuracy of the last epoch instead of test accuracy.
#
# Prints per framework and model: median epoch time, training samples/s, peak RSS, test
# accuracy, ctrain's speed and memory relative to each peer, and the achieved FLOP rate as a
# fraction of this machine's SGEMM rate (measured by bench/sgemm.c).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

usage() {
    sed -n '4p' "$0" | sed 's/^#   /usage: /'
    exit 2
}

quick=0
epochs=""
models="mlp,cnn,cnn_bn"
threads=$(nproc)
seeds=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --epochs) [ $# -ge 2 ] || usage; epochs=$2; shift ;;
        --epochs=*) epochs=${1#*=} ;;
        --models) [ $# -ge 2 ] || usage; models=$2; shift ;;
        --models=*) models=${1#*=} ;;
        --threads) [ $# -ge 2 ] || usage; threads=$2; shift ;;
        --threads=*) threads=${1#*=} ;;
        --seeds) [ $# -ge 2 ] || usage; seeds=$2; shift ;;
        --seeds=*) seeds=${1#*=} ;;
        --peers) [ $# -ge 2 ] || usage; peers=$2; shift ;;
        --peers=*) peers=${1#*=} ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
    esac
    shift
done
if [ -z "$epochs" ] && [ "$quick" = 1 ]; then
    epochs=2
fi
case "$epochs" in ''|[1-9]|[1-9][0-9]|[1-9][0-9][0-9]) ;; *) echo "run.sh: --epochs wants a positive integer" >&2; exit 2 ;; esac
case "$seeds" in [1-9]) ;; *) echo "run.sh: --seeds wants 1 to 9" >&2; exit 2 ;; esac
IFS=, read -r -a model_list <<< "$models"
for m in "${model_list[@]}"; do
    case "$m" in
        mlp|cnn|cnn_bn|resnet|text_lstm|text_transformer|text_gru) ;;
        *) echo "run.sh: unknown model '$m' (mlp, cnn, cnn_bn, resnet, text_lstm, text_transformer, text_gru)" >&2; exit 2 ;;
    esac
done

# Each model's experiment file and data file.
config_of() {
    case "$1" in
        text_lstm) echo configs/text_char_lstm.yaml ;;
        text_transformer) echo configs/text_transformer.yaml ;;
        text_gru) echo configs/text_classify_gru.yaml ;;
        *) echo "configs/fashion_mnist_$1.yaml" ;;
    esac
}
data_of() {
    case "$1" in
        text_lstm|text_transformer) echo data/fortunes-char.h5 ;;
        text_gru) echo data/fortunes-topics.h5 ;;
        *) echo data/fashion-mnist.h5 ;;
    esac
}

ctrain=${CTRAIN:-./ctrain}
if [ ! -x "$ctrain" ]; then
    echo "run.sh: no ctrain at '$ctrain': build it first (./configure && make), or set CTRAIN=path" >&2
    exit 1
fi
# In a build tree, ./ctrain is libtool's wrapper script; time the program itself.
if [ -x "$(dirname "$ctrain")/.libs/ctrain" ] && head -c 2 "$ctrain" | grep -q '#!'; then
    export LD_LIBRARY_PATH="$(cd "$(dirname "$ctrain")/.libs" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    ctrain="$(dirname "$ctrain")/.libs/ctrain"
fi
for m in "${model_list[@]}"; do
    if [ ! -f "$(data_of "$m")" ]; then
        echo "run.sh: $(data_of "$m") is missing: run  scripts/setup.sh --data  first" >&2
        exit 1
    fi
done
if [ ! -x /usr/bin/time ]; then
    echo "run.sh: /usr/bin/time is missing (Debian package 'time': apt-get install -y time)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ctrain-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
results=$work/results.tsv
: > "$results"

# --- The SGEMM ceiling ----------------------------------------------------------------------
cc=${CC:-cc}
if ! "$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -O2 bench/sgemm.c -o "$work/sgemm" -lopenblas; then
    echo "run.sh: cannot compile bench/sgemm.c against OpenBLAS (libopenblas-dev)" >&2
    exit 1
fi
"$work/sgemm" 2048 "$threads" | tee "$work/sgemm.txt"

# --- Peers ----------------------------------------------------------------------------------
# Newest PyTorch, TensorFlow (CPU) and Keras 3 from PyPI, in bench/.venv (created once, with
# FastAPI and uvicorn for bench/serve.sh's PyTorch server;
# PEERS_PYTHON=path/to/python uses another environment). Where PyPI cannot be reached,
# Debian's python3-torch stands in for PyTorch and Keras is skipped.
peers_python=${PEERS_PYTHON:-${KERAS_PYTHON:-}}
if [ -z "$peers_python" ]; then
    peers_python=bench/.venv/bin/python
    if ! "$peers_python" -c 'import torch, keras, h5py' 2>/dev/null; then
        echo "run.sh: installing torch, tensorflow-cpu, keras, h5py, fastapi and uvicorn from PyPI into bench/.venv (once)" >&2
        if ! { [ -x bench/.venv/bin/pip ] || python3 -m venv bench/.venv; }; then
            echo "run.sh: python3 -m venv failed (apt-get install python3-venv)" >&2
        elif ! bench/.venv/bin/pip install --quiet --upgrade torch tensorflow-cpu keras h5py fastapi uvicorn; then
            echo "run.sh: pip could not install the peers (is PyPI reachable?)" >&2
        fi
    fi
fi
torch_python=$peers_python
if ! "$torch_python" -c 'import torch, h5py' 2>/dev/null; then
    torch_python=/usr/bin/python3
    if "$torch_python" -c 'import torch, h5py' 2>/dev/null; then
        echo "run.sh: using Debian's python3-torch for PyTorch" >&2
    else
        echo "run.sh: no PyTorch (PyPI unreachable and python3-torch/python3-h5py not installed); skipping it" >&2
        torch_python=""
    fi
fi
keras_python=$peers_python
case ",${peers:-torch,keras}," in *,torch,*) ;; *) torch_python="" ;; esac
case ",${peers:-torch,keras}," in
    *,keras,*) ;;
    *) echo "run.sh: --peers leaves Keras out"; keras_python="" ;;
esac
if [ -n "$keras_python" ] && ! "$keras_python" -c 'import keras, h5py' 2>/dev/null; then
    echo "run.sh: no Keras 3 in $keras_python; skipping Keras" >&2
    keras_python=""
fi

# --- Runs -----------------------------------------------------------------------------------

# Prefixes each line read with the time it arrived, in seconds.
stamp() {
    local line
    while IFS= read -r line; do
        printf '%s %s\n' "$EPOCHREALTIME" "$line"
    done
}

# ctrain's per-epoch lines (-v 2) are flushed as each epoch ends, validation included, so
# the gap between consecutive lines is the epoch's wall time; stdbuf makes the line just
# before epoch 1 ("Training on ...") arrive when it is written, not at the first flush.
run_ctrain() {
    local m=$1 seed=$2 log=$work/ctrain-$1-$2.log
    local args=(fit "$(config_of "$m")" -v 2 -o "$work/run-$m" --overwrite
                --set "backend.threads=$threads" --set "seed=$seed")
    [ -n "$epochs" ] && args+=(--set "fit.epochs=$epochs")
    echo "== ctrain $m (seed $seed)" >&2
    /usr/bin/time -f %M -o "$work/ctrain-$m-$seed.rss" stdbuf -oL -eL "$ctrain" "${args[@]}" 2>&1 \
        | stamp | tee "$log" | cut -d' ' -f2- >&2
    printf 'ctrain\t%s\t%s\t%s\n' "$m" "$log" "$work/ctrain-$m-$seed.rss" >> "$results"
}

run_peer() {
    local name=$1 python=$2 script=$3 m=$4 seed=$5 log=$work/$1-$4-$5.log
    local args=("$script" "$m" --threads "$threads" --seed "$seed")
    [ -n "$epochs" ] && args+=(--epochs "$epochs")
    echo "== $name $m (seed $seed)" >&2
    if /usr/bin/time -f %M -o "$work/$name-$m-$seed.rss" "$python" "${args[@]}" > "$log" 2>&1; then
        grep -E '^(epoch|Epoch|[0-9]+/[0-9]+|torch|keras)' "$log" | tail -n 4 >&2 || true
        printf '%s\t%s\t%s\t%s\n' "$name" "$m" "$log" "$work/$name-$m-$seed.rss" >> "$results"
    else
        echo "run.sh: $name $m failed; the last lines of its output:" >&2
        tail -n 20 "$log" >&2
    fi
}

# Wall time of `ctrain summary` (process start to exit), median of 21 runs.
time_summary() {
    python3 - "$ctrain" "$(config_of "$1")" <<'PY'
import statistics, subprocess, sys, time
times = []
for _ in range(21):
    t = time.perf_counter()
    subprocess.run([sys.argv[1], "summary", sys.argv[2]], check=True, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
print(f"{1e3 * statistics.median(times):.1f}")
PY
}

for m in "${model_list[@]}"; do
    for seed in $(seq 1 "$seeds"); do
        run_ctrain "$m" "$seed"
        [ -n "$torch_python" ] && run_peer torch "$torch_python" bench/torch_reference.py "$m" "$seed"
        [ -n "$keras_python" ] && run_peer keras "$keras_python" bench/keras_reference.py "$m" "$seed"
    done
    printf '%s\t%s\n' "$m" "$(time_summary "$m")" >> "$work/summary.tsv"
done

# --- Report ---------------------------------------------------------------------------------
"$ctrain" --version | tail -n 1 | sed 's/^/ctrain links /'
python3 - "$results" "$work/sgemm.txt" "$threads" "$work/summary.tsv" <<'EOF'
import re
import statistics
import sys

results, sgemm_file, threads, summary_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
TRAIN_SAMPLES = 54000  # 60000 minus validation_split 0.1


def conv_macs(h, w, cin, cout, k, pad, stride=1):
    """Multiply-adds of a convolution (same padding if pad, else valid) and its output size."""
    if pad:
        oh, ow = -(-h // stride), -(-w // stride)
    else:
        oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    return oh * ow * cout * k * k * cin, oh, ow


def model_macs(model):
    """Forward multiply-adds per sample of the dense and conv layers of each example."""
    if model == "mlp":
        return 784 * 256 + 256 * 128 + 128 * 10
    if model == "cnn":
        a, h, w = conv_macs(28, 28, 1, 32, 3, False)
        h, w = h // 2, w // 2
        b, h, w = conv_macs(h, w, 32, 64, 3, False)
        h, w = h // 2, w // 2
        return a + b + h * w * 64 * 10
    if model == "resnet":
        total, h, w = conv_macs(28, 28, 1, 32, 3, True)
        cin = 32
        for cout, stride in ((32, 1), (64, 2), (128, 2)):
            a, oh, ow = conv_macs(h, w, cin, cout, 3, True, stride)
            b, _, _ = conv_macs(oh, ow, cout, cout, 3, True)
            total += a + b
            if stride != 1 or cin != cout:
                total += conv_macs(h, w, cin, cout, 1, False, stride)[0]
            h, w, cin = oh, ow, cout
        return total + cin * 10
    total, h, w, cin = 0, 28, 28, 1
    for cout, pool in ((32, False), (32, True), (64, False), (64, True)):
        macs, h, w = conv_macs(h, w, cin, cout, 3, True)
        total, cin = total + macs, cout
        if pool:
            h, w = h // 2, w // 2
    return total + h * w * cin * 256 + 256 * 10


def gemm_rates():
    text = open(sgemm_file).read()
    core = re.search(r"openblas core (\S+)", text).group(1)
    rates = {int(t): float(r) for t, r in re.findall(r"threads (\d+): ([\d.]+) GFLOP/s", text)}
    return core, rates


def parse_ctrain(log):
    """Epoch times, test accuracy (for a text model, the last epoch's validation accuracy),
    the last validation loss and the number of training samples."""
    stamps, acc, val_acc, val_loss, samples = [], None, None, None, None
    for line in open(log):
        t, _, text = line.rstrip("\n").partition(" ")
        if text.startswith("Training on") or re.match(r"Epoch \d+/\d+ - ", text):
            stamps.append(float(t))
        m = re.match(r"Training on (\d+) samples", text)
        if m:
            samples = int(m.group(1))
        m = re.match(r"Test \(\d+ samples\):.* accuracy: ([\d.]+)", text)
        if m:
            acc = float(m.group(1))
        m = re.match(r"Epoch .* val_accuracy: ([\d.]+) - val_loss: ([\d.]+)", text)
        if m:
            val_acc, val_loss = float(m.group(1)), float(m.group(2))
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    return times, acc if acc is not None else val_acc, val_loss, samples


def parse_peer(log):
    """Version, median epoch time, accuracy (test, or for a text model validation) and the
    validation loss of a text model."""
    text = open(log).read()
    m = re.search(r"(torch|keras) (\S+) \w+: median epoch ([\d.]+)s, test accuracy ([\d.]+)", text)
    if m:
        return m.group(2), float(m.group(3)), float(m.group(4)), None
    m = re.search(r"(torch|keras) (\S+) \w+: median epoch ([\d.]+)s, validation loss ([\d.]+), "
                  r"validation accuracy ([\d.]+)", text)
    if m:
        return m.group(2), float(m.group(3)), float(m.group(5)), float(m.group(4))
    return None, None, None, None


core, rates = gemm_rates()
peak1, peakn = rates.get(1), rates.get(threads, max(rates.values()))
runs, samples = [], {}
for line in open(results):
    name, model, log, rss_file = line.rstrip("\n").split("\t")
    rss = int(open(rss_file).read().split()[-1]) / 1024
    if name == "ctrain":
        times, acc, loss, samples[model] = parse_ctrain(log)
        if not times:
            print(f"ctrain {model}: no epoch lines in its output", file=sys.stderr)
            continue
        epoch, version, n = statistics.median(times), "", len(times)
    else:
        version, epoch, acc, loss = parse_peer(log)
        n = None
        if epoch is None:
            print(f"{name} {model}: no summary line in its output", file=sys.stderr)
            continue
    runs.append(dict(name=name, version=version, model=model, epoch=epoch, rss=rss, acc=acc,
                     loss=loss, n=n))

# Several seeds: the median of the runs' epoch times, the largest RSS, the mean accuracy
# (and its range).
rows = []
for key in dict.fromkeys((r["name"], r["model"]) for r in runs):
    group = [r for r in runs if (r["name"], r["model"]) == key]
    accs = [r["acc"] for r in group if r["acc"] is not None]
    losses = [r["loss"] for r in group if r["loss"] is not None]
    rows.append(dict(name=key[0], model=key[1], version=group[0]["version"],
                     epoch=statistics.median(r["epoch"] for r in group),
                     rss=max(r["rss"] for r in group),
                     acc=statistics.mean(accs) if accs else None,
                     acc_lo=min(accs) if accs else None, acc_hi=max(accs) if accs else None,
                     loss=statistics.mean(losses) if losses else None, seeds=len(group), n=sum(r["n"] or 0 for r in group)))


def versus(r, base):
    if not base or r is base:
        return ""
    return f"{r['epoch'] / base['epoch']:.2f}x speed, {base['rss'] / r['rss']:.2f}x memory"


image_models = [m for m in dict.fromkeys(r["model"] for r in rows) if not m.startswith("text_")]
text_models = [m for m in dict.fromkeys(r["model"] for r in rows) if m.startswith("text_")]
print()
print(f"SGEMM 2048^3 (OpenBLAS {core}): {peak1:.1f} GFLOP/s on 1 thread, "
      f"{peakn:.1f} GFLOP/s on {threads}")
print(f"All frameworks on {threads} threads.")
if image_models:
    print("Epoch times: ctrain and Keras include the validation pass (6000 samples), the "
          "PyTorch script has none.")
    print("GFLOP/s counts 6 x multiply-adds of the dense and conv layers per training sample.")
    print()
    head = (f"{'model':7} {'framework':22} {'epoch s':>8} {'samples/s':>10} {'peak RSS':>9} "
            f"{'test acc':>8} {'GFLOP/s':>8} {'of SGEMM':>8}  ctrain vs it")
    print(head)
    print("-" * len(head))
for model in image_models:
    flops = 6 * model_macs(model)
    group = [r for r in rows if r["model"] == model]
    base = next((r for r in group if r["name"] == "ctrain"), None)
    for r in group:
        rate = TRAIN_SAMPLES / r["epoch"]
        gflops = flops * rate * 1e-9
        label = f"{r['name']} {r['version']}".strip()
        acc = f"{r['acc']:.4f}" if r["acc"] is not None else "-"
        if r["acc"] is not None and r["seeds"] > 1:
            acc += f" ({r['acc_lo']:.4f}-{r['acc_hi']:.4f})"
        print(f"{model:7} {label:22} {r['epoch']:8.2f} {rate:10.0f} {r['rss']:7.0f}MB "
              f"{acc:>8} {gflops:8.1f} {gflops / peakn:8.1%}  {versus(r, base)}")
    print(f"{'':7} ({flops / 1e6:.2f} MFLOP per sample; ctrain's median over "
          f"{base['n'] if base else 0} epochs of {base['seeds'] if base else 0} run(s); "
          f"test accuracy: the mean over seeds 1..{base['seeds'] if base else 0}, range in "
          f"brackets)")
if text_models:
    print()
    print("Text models: every framework's epoch includes its pass over the validation rows; "
          "validation loss and accuracy after the last epoch (for the language models, per "
          "predicted character).")
    print()
    head = (f"{'model':16} {'framework':22} {'epoch s':>8} {'samples/s':>10} {'peak RSS':>9} "
            f"{'val loss':>8} {'val acc':>8}  ctrain vs it")
    print(head)
    print("-" * len(head))
for model in text_models:
    group = [r for r in rows if r["model"] == model]
    base = next((r for r in group if r["name"] == "ctrain"), None)
    for r in group:
        rate = f"{samples[model] / r['epoch']:10.0f}" if samples.get(model) else f"{'-':>10}"
        label = f"{r['name']} {r['version']}".strip()
        loss = f"{r['loss']:.4f}" if r["loss"] is not None else "-"
        acc = f"{r['acc']:.4f}" if r["acc"] is not None else "-"
        print(f"{model:16} {label:22} {r['epoch']:8.2f} {rate} {r['rss']:7.0f}MB "
              f"{loss:>8} {acc:>8}  {versus(r, base)}")
print()
print("ctrain vs it: speed = its epoch time / ctrain's (above 1: ctrain faster); "
      "memory = ctrain's peak RSS / its (below 1: ctrain smaller).")

# The targets: epoch time against the faster peer (MLP 0.5x, CNN 0.6x, ResNet 0.7x), peak RSS against
# the smaller peer (0.25x), accuracy within 0.5 points of the peers, summary under 20 ms,
# and the MLP at 50 % of the machine's SGEMM rate.
summary_ms = dict(line.split() for line in open(summary_file))
print()
print("Targets:")
limits = {"mlp": 0.5, "cnn": 0.6, "cnn_bn": None, "resnet": 0.7}


def verdict(ok):
    return "met" if ok else "MISSED"


for model in image_models:
    group = [r for r in rows if r["model"] == model]
    base = next((r for r in group if r["name"] == "ctrain"), None)
    peers = [r for r in group if r is not base]
    if not base or not peers:
        continue
    fastest = min(peers, key=lambda r: r["epoch"])
    smallest = min(peers, key=lambda r: r["rss"])
    t = base["epoch"] / fastest["epoch"]
    m = base["rss"] / smallest["rss"]
    lim = limits.get(model)
    if lim:
        print(f"  {model}: epoch time {t:.2f}x {fastest['name']}'s (target <= {lim}): "
              f"{verdict(t <= lim)}")
    print(f"  {model}: peak RSS {m:.2f}x {smallest['name']}'s (target <= 0.25): "
          f"{verdict(m <= 0.25)}")
    accs = [r["acc"] for r in peers if r["acc"] is not None]
    if base["acc"] is not None and accs:
        gap = 100 * (max(accs) - base["acc"])
        print(f"  {model}: mean test accuracy {base['acc']:.4f}, best peer {max(accs):.4f} "
              f"({gap:+.2f} points behind; target <= 0.5): {verdict(gap <= 0.5)}")
    if model == "resnet" and base["acc"] is not None:
        print(f"  resnet: mean test accuracy {base['acc']:.4f} (target >= 0.925): "
              f"{verdict(base['acc'] >= 0.925)}")
    if model == "mlp":
        frac = 6 * model_macs(model) * TRAIN_SAMPLES / base["epoch"] * 1e-9 / peakn
        print(f"  mlp: {frac:.1%} of the SGEMM rate end to end (target >= 50%): "
              f"{verdict(frac >= 0.5)}")
for model, ms in summary_ms.items():
    print(f"  {model}: ctrain summary {float(ms):.1f} ms (target < 20): {verdict(float(ms) < 20)}")
EOF
