#!/bin/sh
# test_tensorboard.sh - TensorBoard reads what fit.callbacks' tensorboard writes: runs of a
# small model are read back with TensorBoard's own EventAccumulator, which must find every
# history.csv column (training values and the learning rate in train/, the val_ ones
# without their prefix in validation/) at its epoch with history.csv's value (to float32
# precision), the batch values every update_freq batches at the global step, the weight
# histograms every histogram_freq epochs (none with 0), the model summary for the Text tab
# and a Keras config the Graphs tab turns into a graph (with the edges of a Functional
# model with a shared layer); a resumed run adds files whose steps go on; and the command
# line's errors for a bad key and an unwritable log_dir.
#
# Needs a Python with the tensorboard package: CT_TENSORBOARD_PYTHON, else the virtual
# environment `scripts/setup.sh --test` makes from PyPI (tests/.venv). Without one the
# test says so and is skipped.
set -u
NAME=tensorboard
. "${CT_SRCDIR:-.}/tests/shlib.sh"
src=${CT_SRCDIR:-.}

random_data 200 6 3 "$tmp/d.h5"
cat >"$tmp/e.yaml" <<'YAML'
name: tb
seed: 2
data: {train: {path: d.h5}, validation_split: 0.25}
model:
  input_shape: [6]
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 4, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit:
  epochs: 3
  batch_size: 16
  verbose: 0
  callbacks: [{type: tensorboard, update_freq: 4, histogram_freq: 2}]
YAML

# The command line's errors, which need no Python.
out=$("$ctrain" check "$tmp/e.yaml" --set 'fit.callbacks=[{type: tensorboard, logdir: x}]' 2>&1)
st=$? want="unknown key 'logdir' in callback 'tensorboard' (did you mean 'log_dir'?)"
[ $st = 2 ] && printf '%s' "$out" | grep -qF "$want" && ok || bad "a misspelt key: $out"
mkdir "$tmp/blocked" && : >"$tmp/blocked/logs"
out=$("$ctrain" fit "$tmp/e.yaml" -o "$tmp/blocked" 2>&1)
st=$? want="tensorboard: cannot create $tmp/blocked/logs/train: Not a directory"
[ $st = 1 ] && printf '%s' "$out" | grep -qF "$want" && [ ! -e "$tmp/blocked/history.csv" ] \
    && ok || bad "an unwritable log_dir: $out"

py=${CT_TENSORBOARD_PYTHON:-}
[ -z "$py" ] && [ -x "$src/tests/.venv/bin/python" ] && py=$src/tests/.venv/bin/python
if [ -z "$py" ] || ! "$py" -c "import tensorboard, numpy" >/dev/null 2>&1; then
    echo "SKIP: tensorboard: no Python with the tensorboard package (tests/.venv, made by" \
        "scripts/setup.sh --test, or CT_TENSORBOARD_PYTHON); the event files were not read back"
    [ "$failed" = 0 ] && exit 77
    finish
fi

# check.py RUN [--batch N] [--hist K]: the run's event files against its history.csv.
cat >"$tmp/check.py" <<'PY'
import csv, json, sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run, args = sys.argv[1], sys.argv[2:]
batch = int(args[args.index("--batch") + 1]) if "--batch" in args else 0
hist = int(args[args.index("--hist") + 1]) if "--hist" in args else 0
batches_per_epoch = int(args[args.index("--steps") + 1])
problems = []

def load(sub):
    ea = EventAccumulator(f"{run}/logs/{sub}",
                          size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    ea.Reload()
    return ea

train, val = load("train"), load("validation")
with open(f"{run}/history.csv") as f:
    rows = list(csv.DictReader(f))
epochs = len(rows)
for col in rows[0]:
    if col == "epoch":
        continue
    ea, tag = (val, "epoch_" + col[4:]) if col.startswith("val_") else (train, "epoch_" + col)
    if tag not in ea.Tags()["scalars"]:
        problems.append(f"{tag} missing ({col})")
        continue
    got = ea.Scalars(tag)
    if [e.step for e in got] != list(range(epochs)):
        problems.append(f"{tag}: steps {[e.step for e in got]}")
    for e, r in zip(got, rows):
        want = np.float32(float(r[col]))
        if abs(e.value - want) > 1e-6 * max(1.0, abs(want)):
            problems.append(f"{tag} at {e.step}: {e.value} against {col} {want}")

total = epochs * batches_per_epoch
for tag in ("batch_loss", "batch_accuracy"):
    steps = [e.step for e in train.Scalars(tag)] if tag in train.Tags()["scalars"] else []
    want = list(range(batch, total + 1, batch)) if batch else []
    if steps != want:
        problems.append(f"{tag}: steps {steps}, expected {want}")

sizes = {"dense/kernel": 48, "dense/bias": 8, "dense_1/kernel": 32, "dense_1/bias": 4}
tags = train.Tags()["histograms"]
for w, n in sizes.items():
    tag = w + "/histogram"
    want = [e for e in range(epochs) if hist and e % hist == 0]
    steps = [h.step for h in train.Histograms(tag)] if tag in tags else []
    if steps != want:
        problems.append(f"{tag}: steps {steps}, expected {want}")
    for h in train.Histograms(tag) if tag in tags else []:
        v = h.histogram_value
        if v.num != n or sum(v.bucket) != n or not v.min <= v.max:
            problems.append(f"{tag} at {h.step}: num {v.num}, counts {sum(v.bucket)}")
if not hist and tags:
    problems.append(f"histograms without histogram_freq: {tags}")

if "model_summary" not in train.Tags()["tensors"]:
    problems.append("no model_summary")
else:
    if train.SummaryMetadata("model_summary").plugin_data.plugin_name != "text":
        problems.append("model_summary is not for the text plugin")
    proto = train.Tensors("model_summary")[0].tensor_proto
    text = proto.string_val[0].decode()
    if "Total params: 92" not in text:
        problems.append("model_summary: " + text)
    # what the Text tab shows: the table as preformatted text
    from tensorboard.plugins.text import text_plugin
    from tensorboard.util import tensor_util
    html = text_plugin.text_array_to_html(tensor_util.make_ndarray(proto), True)
    if not html.startswith("<pre><code>Model:"):
        problems.append("the Text tab shows: " + html[:200])
try:
    from tensorboard.plugins.graph import keras_util
    js = train.Tensors("keras")[0].tensor_proto.string_val[0]
    nodes = [n.name for n in keras_util.keras_model_to_graph_def(json.loads(js)).node]
    if not any(n.endswith("/dense_1") for n in nodes):
        problems.append(f"the Keras graph has {nodes}")
except Exception as e:
    problems.append(f"the Keras config: {e!r}")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY

check() {
    if out=$("$py" "$tmp/check.py" "$@" 2>&1); then ok; else bad "$1: $out"; fi
}

# 150 training rows in batches of 16: 10 batches an epoch.
"$ctrain" fit "$tmp/e.yaml" -o "$tmp/run" || bad "fit failed"
check "$tmp/run" --batch 4 --hist 2 --steps 10
[ "$(ls "$tmp/run/logs/train" | wc -l)" = 1 ] && [ "$(ls "$tmp/run/logs/validation" | wc -l)" = 1 ] \
    && ok || bad "one event file per folder: $(ls -R "$tmp/run/logs")"

# Stopped after 2 epochs and resumed to 4: the second files go on at epoch 2 and batch 21.
"$ctrain" fit "$tmp/e.yaml" -o "$tmp/res" --set fit.epochs=2 \
    --set 'fit.callbacks=[{type: tensorboard, update_freq: batch}]' || bad "fit failed"
"$ctrain" fit "$tmp/e.yaml" --resume "$tmp/res" --set fit.epochs=4 \
    --set 'fit.callbacks=[{type: tensorboard, update_freq: batch}]' || bad "resuming failed"
[ "$(ls "$tmp/res/logs/train" | wc -l)" = 2 ] && ok || bad "a resumed run adds a file: $(ls "$tmp/res/logs/train")"
check "$tmp/res" --batch 1 --steps 10

# A Functional model with a shared layer: the Graphs tab's graph has its edges.
cat >"$tmp/f.yaml" <<'YAML'
data: {train: {path: d.h5, x: {a: train/x, b: train/x}, y: train/y}}
model:
  inputs: {a: {shape: [6]}, b: {shape: [6]}}
  layers:
    - {name: h1, type: dense, units: 8, activation: relu, inputs: a}
    - {name: h2, type: dense, units: 8, activation: relu, inputs: a}
    - {name: again, type: shared, layer: h2, inputs: b}
    - {name: cat, type: concatenate, inputs: [h1, h2, again]}
    - {name: out, type: dense, units: 4, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1, batch_size: 16, verbose: 0, callbacks: [tensorboard]}
YAML
"$ctrain" fit "$tmp/f.yaml" -o "$tmp/fun" || bad "fit failed"
if out=$("$py" - "$tmp/fun/logs/train" <<'PY' 2>&1
import json, sys, warnings
warnings.filterwarnings("ignore")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.graph import keras_util
ea = EventAccumulator(sys.argv[1])
ea.Reload()
graph = keras_util.keras_model_to_graph_def(json.loads(ea.Tensors("keras")[0].tensor_proto.string_val[0]))
edges = {n.name.split("/")[-1]: sorted(i.split("/")[-1] for i in n.input) for n in graph.node}
want = {"a": [], "b": [], "h1": ["a"], "h2": ["a", "b"], "cat": ["h1", "h2", "h2"], "out": ["cat"]}
if edges != want:
    sys.exit(f"edges {edges}, expected {want}")
PY
); then ok; else bad "the Functional model's graph: $out"; fi

finish
