#!/bin/sh
# test_keras.sh - Keras reads what ctrain writes: the weights.h5 of two Sequential models
# (one of them recurrent: lstm, both kinds of gru, simple_rnn, forwards and backwards), of
# a Functional one (two inputs, a shared layer, merges, two outputs), of one with
# wrappers (bidirectional in every merge mode, time_distributed), of an encoder and
# decoder joined by their states (return_state, initial_state) and of three masked ones
# (embedding with mask_zero into an lstm returning sequences, and into a bidirectional
# gru, on token sequences padded at the end and in the middle; and merges of masks, whose
# union Keras 3 takes, and of a mask with an unmasked tensor, where Keras 3 drops it), and
# of one with the 1-D transposed, depthwise and separable convolutions, unit
# normalization, both SELU and Gaussian dropouts and an activity penalty, and of one
# with conv3d and the 3-D pools load with
# keras.saving.load_model, and Keras's predictions equal ctrain's; Keras's
# evaluate gives the masked models' loss (and accuracy) that `ctrain evaluate` does, and
# the penalty's model's; and
# ctrain predicts what Keras does from a Keras file of wrapped layers.
#
# Needs a Python with Keras (and h5py and numpy): CT_KERAS_PYTHON, else the virtual
# environment `scripts/setup.sh --test` makes from PyPI (tests/.venv), else the one
# `scripts/setup.sh --bench` makes (bench/.venv). Without one the test says so and is
# skipped.
set -u
NAME=keras
. "${CT_SRCDIR:-.}/tests/shlib.sh"
src=${CT_SRCDIR:-.}
keras_python

# Random inputs and targets for both models.
"$py" - "$tmp/d.h5" <<'PY' || bad "writing the data failed"
import sys, numpy as np, h5py
rng = np.random.default_rng(3)
with h5py.File(sys.argv[1], "w") as f:
    f["a"] = rng.normal(size=(96, 6)).astype("f4")
    f["b"] = rng.normal(size=(96, 6)).astype("f4")
    f["img"] = rng.random(size=(96, 8, 8, 1)).astype("f4")
    f["cls"] = rng.integers(0, 3, size=96).astype("u1")
    f["reg"] = rng.normal(size=(96, 2)).astype("f4")
    f["one"] = rng.normal(size=(96, 1)).astype("f4")
    f["steps"] = rng.normal(size=(96, 7, 4)).astype("f4")
    # token ids, 0 the padding: at the end of most rows, in the middle of some, a whole row
    tok = rng.integers(1, 9, size=(96, 8))
    for i, n in enumerate(rng.integers(2, 9, size=96)):
        tok[i, n:] = 0
    tok[rng.random(size=(96, 8)) < 0.1] = 0
    tok[5] = 0
    f["tok"] = tok.astype("i4")
    f["tokcls"] = ((tok + np.arange(8)) % 3).astype("u1")
    tok2 = rng.integers(0, 9, size=(96, 8))
    tok2[:, 6:] = 0
    f["tok2"] = tok2.astype("i4")
    f["vol"] = rng.normal(size=(96, 4, 5, 4, 2)).astype("f4")
PY

cat >"$tmp/seq.yaml" <<'YAML'
data: {train: {path: d.h5, x: img, y: cls}}
model:
  input_shape: [8, 8, 1]
  layers:
    - {type: conv2d, filters: 4, kernel_size: 3, activation: relu}
    - {type: max_pooling2d}
    - {type: batch_normalization}
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 2, batch_size: 16}
YAML
cat >"$tmp/graph.yaml" <<'YAML'
data: {train: {path: d.h5, x: {left: a, right: b}, y: {cls: cls, reg: reg, sim: one}}}
model:
  inputs: {left: {shape: [6]}, right: {shape: [6]}}
  layers:
    - {name: enc, type: dense, units: 5, activation: tanh, inputs: left}
    - {name: enc_r, type: shared, layer: enc, inputs: right}
    - {name: diff, type: subtract, inputs: [enc, enc_r]}
    - {name: both, type: concatenate, inputs: [diff, enc, enc_r]}
    - {name: hidden, type: dense, units: 8, activation: relu}
    - {name: res, type: add, inputs: [hidden, hidden]}
    - {name: cls, type: dense, units: 3, activation: softmax}
    - {name: sim, type: dot, axes: 1, normalize: true, inputs: [enc, enc_r]}
    - {name: reg, type: dense, units: 2, inputs: [both]}
  outputs: [cls, reg, sim]
compile:
  optimizer: adam
  loss: {cls: sparse_categorical_crossentropy, reg: mse, sim: mse}
fit: {epochs: 2, batch_size: 16}
YAML

cat >"$tmp/rnn.yaml" <<'YAML'
data: {train: {path: d.h5, x: steps, y: cls}}
model:
  input_shape: [7, 4]
  layers:
    - {type: lstm, units: 5, return_sequences: true, go_backwards: true}
    - {type: gru, units: 4, return_sequences: true}
    - {type: gru, units: 4, return_sequences: true, reset_after: false, go_backwards: true}
    - {type: simple_rnn, units: 3, activation: relu}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 2, batch_size: 16}
YAML

cat >"$tmp/wrap.yaml" <<'YAML'
data: {train: {path: d.h5, x: steps, y: cls}}
model:
  input_shape: [7, 4]
  layers:
    - {type: bidirectional, layer: {type: lstm, units: 5, return_sequences: true}}
    - {type: bidirectional, merge_mode: ave, layer: {type: gru, units: 4,
       return_sequences: true}}
    - {type: time_distributed, layer: {type: dense, units: 3, activation: tanh}}
    - {type: bidirectional, merge_mode: mul, layer: {type: simple_rnn, units: 3}}
    - {type: bidirectional, merge_mode: sum, layer: {name: enc, type: gru, units: 2,
       reset_after: false}, inputs: time_distributed}
    - {type: concatenate, inputs: [bidirectional_2, bidirectional_3]}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 2, batch_size: 16}
YAML

# Masks: the first model's output is per position (masked), the second's per sample.
cat >"$tmp/mlstm.yaml" <<'YAML'
data: {train: {path: d.h5, x: tok, y: tokcls}}
model:
  input_shape: [8]
  layers:
    - {type: embedding, input_dim: 9, output_dim: 4, mask_zero: true}
    - {type: lstm, units: 5, return_sequences: true}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: {type: adam, learning_rate: 0.03}, loss: sparse_categorical_crossentropy,
          metrics: [accuracy]}
fit: {epochs: 4, batch_size: 16}
YAML
cat >"$tmp/mgru.yaml" <<'YAML'
data: {train: {path: d.h5, x: tok, y: cls}}
model:
  input_shape: [8]
  layers:
    - {type: embedding, input_dim: 9, output_dim: 4, mask_zero: true}
    - {type: bidirectional, layer: {type: gru, units: 4}}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: {type: adam, learning_rate: 0.03}, loss: sparse_categorical_crossentropy,
          metrics: [accuracy]}
fit: {epochs: 4, batch_size: 16}
YAML

# (Listed in the order of Keras's depth-first layer list, by which Keras's loader pairs a
# legacy file's weights with its layers.)
cat >"$tmp/mmerge.yaml" <<'YAML'
data: {train: {path: d.h5, x: {a: tok, b: tok2}, y: {seq: tokcls, last: cls}}}
model:
  inputs: {a: {shape: [8]}, b: {shape: [8]}}
  layers:
    - {name: ea, type: embedding, input_dim: 9, output_dim: 4, mask_zero: true, inputs: a}
    - {name: eu, type: embedding, input_dim: 9, output_dim: 4, inputs: b}
    - {name: eb, type: embedding, input_dim: 9, output_dim: 4, mask_zero: true, inputs: b}
    - {name: both, type: add, inputs: [ea, eb]}
    - {name: cat, type: concatenate, inputs: [ea, eu]}
    - {name: r, type: lstm, units: 4, return_sequences: true, inputs: both}
    - {name: g, type: gru, units: 3, inputs: cat}
    - {name: seq, type: dense, units: 3, activation: softmax, inputs: r}
    - {name: last, type: dense, units: 3, activation: softmax, inputs: g}
  outputs: [seq, last]
compile:
  optimizer: {type: adam, learning_rate: 0.03}
  loss: {seq: sparse_categorical_crossentropy, last: sparse_categorical_crossentropy}
fit: {epochs: 4, batch_size: 16}
YAML

# Attention over a masked sequence (Keras loads its causal flag as a call argument). At a
# padded query position, which may attend to nothing, Keras 3's MultiHeadAttention on
# TensorFlow spreads its weights evenly where ctrain gives zeros: only unmasked positions
# are compared, and the loss, which counts those only.
cat >"$tmp/mattn.yaml" <<'YAML'
data: {train: {path: d.h5, x: tok, y: tokcls}}
model:
  inputs: {t: {shape: [8]}}
  layers:
    - {name: e, type: embedding, input_dim: 9, output_dim: 8, mask_zero: true, inputs: t}
    - {name: n, type: layer_normalization}
    - {name: a, type: multi_head_attention, num_heads: 2, key_dim: 4, use_causal_mask: true,
       inputs: [n, n]}
    - {name: s, type: add, inputs: [a, e]}
    - {name: o, type: dense, units: 3, activation: softmax}
compile: {optimizer: {type: adam, learning_rate: 0.03}, loss: sparse_categorical_crossentropy,
          metrics: [accuracy]}
fit: {epochs: 4, batch_size: 16}
YAML

# States (return_state, initial_state): an encoder's h and c start a decoder over
# tokens, and a bidirectional encoder's final states feed a second output. Keras's loader
# gets the states as tensor indices of the layers' nodes and initial_state as a keyword.
# The layers are not listed in Keras's order (Keras's loader pairs a legacy file's layers
# with its own by that order): ctrain writes the file in it.
cat >"$tmp/mstate.yaml" <<'YAML'
data: {train: {path: d.h5, x: {src: steps, tgt: tok}, y: {out: tokcls, st: reg}}}
model:
  inputs: {src: {shape: [7, 4]}, tgt: {shape: [8]}}
  layers:
    - {name: enc, type: lstm, units: 4, return_state: true, inputs: src}
    - {name: benc, type: bidirectional, layer: {type: gru, units: 2, return_state: true},
       inputs: src}
    - {name: both, type: concatenate, inputs: ["benc:1", "benc:2"]}
    - {name: st, type: dense, units: 2, inputs: both}
    - {name: e, type: embedding, input_dim: 9, output_dim: 4, inputs: tgt}
    - {name: dec, type: lstm, units: 4, return_sequences: true, inputs: [e, enc:1, enc:2]}
    - {name: out, type: dense, units: 3, activation: softmax, inputs: dec}
  outputs: [out, st]
compile:
  optimizer: {type: adam, learning_rate: 0.03}
  loss: {out: sparse_categorical_crossentropy, st: mse}
fit: {epochs: 4, batch_size: 16}
YAML

# A decoder over masked tokens started from an encoder's state: Keras 3 passes no mask to
# a layer called with initial_state, so its steps ignore the padding (ctrain warns), and
# its output carries the mask on. (Masked: listed in Keras's layer order.)
cat >"$tmp/mdec.yaml" <<'YAML'
data: {train: {path: d.h5, x: {src: steps, tgt: tok}, y: tokcls}}
model:
  inputs: {src: {shape: [7, 4]}, tgt: {shape: [8]}}
  layers:
    - {name: e, type: embedding, input_dim: 9, output_dim: 4, mask_zero: true, inputs: tgt}
    - {name: enc, type: gru, units: 4, return_state: true, inputs: src}
    - {name: dec, type: gru, units: 4, return_sequences: true, inputs: [e, enc:1]}
    - {name: out, type: dense, units: 3, activation: softmax, inputs: dec}
compile: {optimizer: {type: adam, learning_rate: 0.03}, loss: sparse_categorical_crossentropy,
          metrics: [accuracy]}
fit: {epochs: 4, batch_size: 16}
YAML

# The 1-D transposed, depthwise and separable convolutions (Keras's 1-D weight shapes),
# unit normalization, the two dropouts (identities in predict and evaluate), and an
# activity penalty, which Keras's evaluate adds to the loss as ctrain's does.
cat >"$tmp/more.yaml" <<'YAML'
data: {train: {path: d.h5, x: steps, y: cls}}
model:
  input_shape: [7, 4]
  layers:
    - {type: conv1d_transpose, filters: 3, kernel_size: 3, strides: 2, activation: selu}
    - {type: alpha_dropout, rate: 0.1}
    - {type: depthwise_conv1d, kernel_size: 3, depth_multiplier: 2, padding: same}
    - {type: separable_conv1d, filters: 4, kernel_size: 2, dilation_rate: 2}
    - {type: unit_normalization}
    - {type: gaussian_dropout, rate: 0.2}
    - {type: activity_regularization, l1: 0.01, l2: 0.1}
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 2, batch_size: 16}
YAML

# Volumes: Conv3D's kernel (k_d, k_h, k_w, in, filters) and the 3-D pools.
cat >"$tmp/vol.yaml" <<'YAML'
data: {train: {path: d.h5, x: vol, y: cls}}
model:
  input_shape: [4, 5, 4, 2]
  layers:
    - {type: conv3d, filters: 3, kernel_size: [2, 3, 2], padding: same, activation: relu}
    - {type: max_pooling3d, pool_size: [2, 2, 1], padding: same}
    - {type: conv3d, filters: 4, kernel_size: 2, strides: [1, 2, 1]}
    - {type: average_pooling3d, pool_size: [1, 1, 2]}
    - {name: ga, type: global_average_pooling3d}
    - {name: gm, type: global_max_pooling3d, inputs: average_pooling3d}
    - {type: concatenate, inputs: [ga, gm]}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 2, batch_size: 16}
YAML

for m in seq graph rnn wrap mlstm mgru mmerge mattn mstate mdec more vol; do
    "$ctrain" fit -q "$tmp/$m.yaml" -o "$tmp/$m" 2>/dev/null || bad "$m: fit failed"
    "$ctrain" predict "$tmp/$m.yaml" --weights "$tmp/$m/weights.h5" --input "$tmp/d.h5" \
        -o "$tmp/$m.pred.h5" || bad "$m: predict failed"
done
for m in mlstm:tokcls mgru:cls mattn:tokcls mmerge: mdec: more:cls; do
    if [ "$m" = more:cls ]; then set -- --data "$tmp/d.h5" --x steps --y cls
    elif [ -n "${m#*:}" ]; then set -- --data "$tmp/d.h5" --x tok --y "${m#*:}"
    elif [ "$m" = mdec: ]; then
        set -- --set data.test.path=d.h5 --set data.test.x.src=steps --set data.test.x.tgt=tok \
            --set data.test.y=tokcls
    else
        set -- --set data.test.path=d.h5 --set data.test.x.a=tok --set data.test.x.b=tok2 \
            --set data.test.y.seq=tokcls --set data.test.y.last=cls; fi
    "$ctrain" evaluate "$tmp/${m%%:*}.yaml" --weights "$tmp/${m%%:*}/weights.h5" --json "$@" \
        >"$tmp/${m%%:*}.eval.json" || bad "${m%%:*}: evaluate failed"
done

"$py" - "$tmp" <<'PY' || bad "Keras did not read ctrain's files as ctrain does (above)"
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, h5py, keras
tmp = sys.argv[1]
with h5py.File(f"{tmp}/d.h5") as f:
    data = {k: f[k][:] for k in f}
failed = False
for name, inputs in (("seq", [data["img"]]), ("graph", [data["a"], data["b"]]),
                     ("rnn", [data["steps"]]), ("wrap", [data["steps"]]),
                     ("mlstm", [data["tok"]]), ("mgru", [data["tok"]]),
                     ("mmerge", [data["tok"], data["tok2"]]),
                     ("mstate", [data["steps"], data["tok"]]),
                     ("mdec", [data["steps"], data["tok"]]), ("more", [data["steps"]]),
                     ("vol", [data["vol"]])):
    path = f"{tmp}/{name}/weights.h5"
    with h5py.File(path) as f:
        cls = json.loads(f.attrs["model_config"])["class_name"]
    model = keras.saving.load_model(path, compile=False)
    got = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    got = got if isinstance(got, list) else [got]
    with h5py.File(f"{tmp}/{name}.pred.h5") as f:
        want = [f[k][:] for k in (["predictions"] if len(got) == 1 else
                                  {"graph": ["cls", "reg", "sim"], "mmerge": ["seq", "last"],
                                   "mstate": ["out", "st"]}[name])]
    for g, w in zip(got, want):
        err = float(np.max(np.abs(g.reshape(w.shape) - w)))
        ok = err <= 1e-4 * max(1.0, float(np.max(np.abs(w))))
        print(f"keras: {name} ({cls}, {len(model.layers)} layers, Keras {keras.__version__} "
              f"on {keras.backend.backend()}): largest difference {err:.2e}")
        failed |= not ok
model = keras.saving.load_model(f"{tmp}/mattn/weights.h5", compile=False)
got = model.predict(data["tok"], verbose=0)
with h5py.File(f"{tmp}/mattn.pred.h5") as f:
    want = f["predictions"][:].reshape(got.shape)
err = float(np.max(np.abs(got - want)[data["tok"] != 0]))
print(f"keras: mattn (attention, {len(model.layers)} layers): largest difference at unmasked "
      f"positions {err:.2e}")
failed |= err > 1e-4
sys.exit(1 if failed else 0)
PY
[ $? = 0 ] && ok

# Keras's loss of a masked output is the mean over its unmasked positions (and its
# accuracy counts those only): evaluate in the same batches gives ctrain's values.
"$py" - "$tmp" <<'PY' && ok || bad "Keras's evaluate of the masked models differs from ctrain's (above)"
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, h5py, keras
tmp = sys.argv[1]
with h5py.File(f"{tmp}/d.h5") as f:
    data = {k: f[k][:] for k in f}
failed = False
for name, x, y in (("mlstm", "tok", "tokcls"), ("mgru", "tok", "cls"), ("mattn", "tok", "tokcls"),
                   ("mmerge", ["tok", "tok2"], ["tokcls", "cls"]),
                   ("mdec", ["steps", "tok"], "tokcls"), ("more", "steps", "cls")):
    model = keras.saving.load_model(f"{tmp}/{name}/weights.h5", compile=False)
    multi = isinstance(y, list)
    model.compile(loss="sparse_categorical_crossentropy", metrics=None if multi else ["accuracy"])
    got = model.evaluate([data[k] for k in x] if isinstance(x, list) else data[x],
                         [data[k] for k in y] if multi else data[y], batch_size=16, verbose=0,
                         return_dict=True)
    with open(f"{tmp}/{name}.eval.json") as f:
        want = json.load(f)
    for key in ("loss",) if multi else ("loss", "accuracy"):
        err = abs(got[key] - want[key]) / max(abs(want[key]), 1e-12)
        print(f"keras: {name} evaluate {key}: Keras {got[key]:.7g}, ctrain {want[key]:.7g} "
              f"(relative difference {err:.1e})")
        failed |= not err <= 1e-4
    if name == "mlstm":  # the padding counts for nothing: a mean over every position differs
        pred = model.predict(data["tok"], verbose=0)
        p = np.take_along_axis(pred, data[y][..., None].astype(int), axis=-1)[..., 0]
        failed |= abs(float(np.mean(-np.log(p))) - want["loss"]) <= 1e-3 * want["loss"]
sys.exit(1 if failed else 0)
PY

# The other way: ctrain reads Keras's weights of wrapped layers (Keras nests a cell level
# in their names; they load in order) and predicts what Keras does.
"$py" - "$tmp" <<'PY' || bad "Keras could not write its wrapped model"
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, h5py, keras
tmp = sys.argv[1]
L = keras.layers
m = keras.Sequential([keras.Input((7, 4)),
                      L.Bidirectional(L.LSTM(3, return_sequences=True)),
                      L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode="mul"),
                      L.TimeDistributed(L.Dense(2, activation="tanh"))])
for i, w in enumerate(m.weights):  # biases too, so every weight counts
    w.assign(np.random.default_rng(i).normal(scale=0.4, size=w.shape))
keras.saving.save_model(m, f"{tmp}/k.h5")
with h5py.File(f"{tmp}/d.h5") as f:
    np.save(f"{tmp}/k.npy", m.predict(f["steps"][:], verbose=0))
PY
cat >"$tmp/k.yaml" <<'YAML'
model:
  input_shape: [7, 4]
  layers:
    - {type: bidirectional, layer: {type: lstm, units: 3, return_sequences: true}}
    - {type: bidirectional, merge_mode: mul, layer: {type: gru, units: 2,
       return_sequences: true}}
    - {type: time_distributed, layer: {type: dense, units: 2, activation: tanh}}
compile: {optimizer: adam, loss: mse}
YAML
if "$ctrain" predict "$tmp/k.yaml" --weights "$tmp/k.h5" --input "$tmp/d.h5" --x steps \
        -o "$tmp/k.pred.h5"; then
    "$py" - "$tmp" <<'PY' && ok || bad "ctrain did not predict what Keras does with its weights"
import sys, numpy as np, h5py
tmp = sys.argv[1]
want = np.load(f"{tmp}/k.npy")
with h5py.File(f"{tmp}/k.pred.h5") as f:
    got = f["predictions"][:]
err = float(np.max(np.abs(got - want.reshape(got.shape))))
print(f"keras: Keras's wrapped layers in ctrain: largest difference {err:.2e}")
sys.exit(0 if err <= 1e-4 else 1)
PY
else
    bad "ctrain did not load Keras's weights of wrapped layers"
fi
finish
