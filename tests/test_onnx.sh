#!/bin/sh
# test_onnx.sh - ctrain export --format onnx: ONNX's checker accepts the file and ONNX
# Runtime's predictions equal ctrain's (1e-5 relative) for the MLP, CNN, BN CNN and ResNet
# examples and for a functional model of the other layers that translate (strided and
# "same" convolutions, pools, merges, the activation layers, rescaling, reshape); a layer
# without a translation is refused by name and nothing is written.
#
# Needs a Python with onnx, onnxruntime, numpy and h5py: CT_ONNX_PYTHON, else
# tests/.venv (scripts/setup.sh --test makes it from PyPI). Without one the test says so
# and is skipped.
NAME=onnx
. "${CT_SRCDIR:-.}/tests/shlib.sh"
src=${CT_SRCDIR:-.}
py=${CT_ONNX_PYTHON:-}
[ -z "$py" ] && [ -x "$src/tests/.venv/bin/python" ] && py=$src/tests/.venv/bin/python
if [ -z "$py" ] || ! "$py" -c 'import onnx, onnxruntime, numpy, h5py' 2>/dev/null; then
    echo "onnx: SKIP: no Python with onnx and onnxruntime (scripts/setup.sh --test makes tests/.venv from PyPI, or set CT_ONNX_PYTHON)"
    exit 77
fi

$py - "$tmp" <<'EOF' || bad "writing the data failed"
import sys, numpy as np, h5py
rng = np.random.default_rng(5)
with h5py.File(sys.argv[1] + "/img.h5", "w") as f:
    for part, n in (("train", 256), ("test", 64)):
        f[part + "/images"] = rng.integers(0, 255, size=(n, 28, 28, 1)).astype("u1")
        f[part + "/labels"] = rng.integers(0, 10, size=n).astype("u1")
with h5py.File(sys.argv[1] + "/seq.h5", "w") as f:
    f["x"] = rng.normal(size=(64, 5, 3)).astype("f4")
    f["y"] = rng.integers(0, 2, size=64).astype("u1")
EOF

# compare NAME: ONNX Runtime on the test images against ctrain predict.
compare() {
    "$ctrain" predict "$tmp/$1/config.yaml" --weights "$tmp/$1/weights.h5" --input "$tmp/img.h5" \
        --x test/images -o "$tmp/$1-pred.h5" >/dev/null 2>&1 || { bad "$1: predict failed"; return; }
    out=$($py - "$tmp" "$1" <<'EOF' 2>&1
import sys, numpy as np, h5py, onnx, onnxruntime as ort
d, name = sys.argv[1], sys.argv[2]
onnx.checker.check_model(onnx.load(f"{d}/{name}.onnx"), full_check=True)
x = h5py.File(f"{d}/img.h5")["test/images"][:].astype(np.float32) / np.float32(255)
sess = ort.InferenceSession(f"{d}/{name}.onnx", providers=["CPUExecutionProvider"])
got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
want = h5py.File(f"{d}/{name}-pred.h5")["predictions"][:]
assert got.shape == want.shape, (got.shape, want.shape)
err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
print("relative error %.3g" % err)
sys.exit(0 if err <= 1e-5 else 1)
EOF
    ) && ok || bad "$1: ONNX Runtime differs from ctrain: $out"
}

# fit_export NAME CONFIG [--set ...]: one epoch on the small images, then the run exported.
fit_export() {
    name=$1 config=$2
    shift 2
    "$ctrain" fit "$config" -o "$tmp/$name" -q --no-report --set data.train.path="$tmp/img.h5" \
        --set data.test.path="$tmp/img.h5" --set fit.epochs=1 "$@" >"$tmp/$name.log" 2>&1 ||
        { bad "$name: fit failed: $(cat "$tmp/$name.log")"; return 1; }
    "$ctrain" export "$tmp/$name" -o "$tmp/$name.onnx" >"$tmp/$name.log" 2>&1 ||
        { bad "$name: export failed: $(cat "$tmp/$name.log")"; return 1; }
    ok
}

for m in mlp cnn cnn_bn resnet; do
    fit_export "$m" "$src/configs/fashion_mnist_$m.yaml" && compare "$m"
done

# The other translations in one functional model.
cat >"$tmp/mix.yaml" <<EOF
name: mix
data:
  train: {path: $tmp/img.h5, x: train/images, y: train/labels}
  test: {path: $tmp/img.h5, x: test/images, y: test/labels}
  scale: 0.00392156862745098
model:
  inputs: {image: {shape: [28, 28, 1]}}
  layers:
    - {name: rs, type: rescaling, scale: 2.0, offset: -1.0, inputs: image}
    - {name: a, type: conv2d, filters: 4, kernel_size: 3, strides: 2, padding: same, activation: gelu, inputs: rs}
    - {name: b, type: conv2d, filters: 4, kernel_size: [5, 3], padding: same, activation: silu, inputs: rs}
    - {name: bp, type: average_pooling2d, pool_size: 3, strides: 2, padding: same, inputs: b}
    - {name: cat, type: concatenate, inputs: [a, bp]}
    - {name: lr, type: leaky_relu, negative_slope: 0.1, inputs: cat}
    - {name: avg, type: average, inputs: [a, bp]}
    - {name: el, type: elu, alpha: 0.5, inputs: avg}
    - {name: mx, type: maximum, inputs: [el, a]}
    - {name: r6, type: relu, max_value: 6, inputs: mx}
    - {name: mp, type: max_pooling2d, pool_size: 2, padding: same, inputs: r6}
    - {name: gm, type: global_max_pooling2d, inputs: lr}
    - {name: fl, type: flatten, inputs: mp}
    - {name: rh, type: reshape, target_shape: [4, 49], inputs: fl}
    - {name: fl2, type: flatten, inputs: rh}
    - {name: both, type: concatenate, inputs: [fl2, gm]}
    - {name: bn, type: batch_normalization, inputs: both}
    - {name: hs, type: activation, activation: hard_sigmoid, inputs: bn}
    - {name: out, type: dense, units: 10, inputs: hs}
    - {name: sm, type: softmax, inputs: out}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1, batch_size: 32}
EOF
fit_export mix "$tmp/mix.yaml" && compare mix

# A layer without a translation: refused by name, no file left.
cat >"$tmp/rnn.yaml" <<EOF
name: rnn
data: {train: {path: $tmp/seq.h5}}
model:
  input_shape: [5, 3]
  layers:
    - {type: lstm, units: 4}
    - {type: dense, units: 2, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1}
EOF
"$ctrain" fit "$tmp/rnn.yaml" -o "$tmp/rnn" -q --no-report >/dev/null 2>&1 || bad "rnn: fit failed"
out=$("$ctrain" export "$tmp/rnn" -o "$tmp/rnn.onnx" 2>&1) && bad "an LSTM was exported: $out"
printf '%s' "$out" | grep -qF "layer 'lstm' (LSTM) has no ONNX translation here" && ok ||
    bad "the LSTM's refusal: $out"
[ ! -e "$tmp/rnn.onnx" ] && ok || bad "a refused export left $tmp/rnn.onnx"
out=$("$ctrain" export "$tmp/mlp" -o "$tmp/none/m.onnx" 2>&1) && bad "an export into a missing folder succeeded"
printf '%s' "$out" | grep -qF "$tmp/none/m.onnx" && ok || bad "the unwritable output's error: $out"
out=$("$ctrain" export "$tmp/mlp" -o "$tmp/m.pb" --format onnnx 2>&1) && bad "an unknown format was taken"
printf '%s' "$out" | grep -qF "unknown --format 'onnnx' (keras or onnx)" && ok || bad "the unknown format's error: $out"
finish
