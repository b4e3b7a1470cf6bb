#!/bin/sh
# test_onnx.sh - ctrain export --format onnx: ONNX's checker accepts the file and ONNX
# Runtime's predictions equal ctrain's (1e-5 relative) for
#  - the MLP, CNN, BN CNN and ResNet examples and a functional model of the other image
#    translations (strided and "same" convolutions, pools, merges, the activation layers,
#    rescaling, reshape, a shared dense);
#  - the three text examples (text_char_lstm, text_transformer, text_classify_gru; one
#    epoch on a few random rows), whose token inputs ONNX takes as int64;
#  - models whose outputs are the sequence layers themselves: lstm, gru (reset_after both
#    ways) and simple_rnn with go_backwards, return_sequences, return_state, initial
#    states and other activations; bidirectional in every merge mode, with states;
#    time_distributed; conv1d ("same", causal, dilated, strided), the 1-D pools, batch and
#    layer normalization over steps; attention with and without the causal mask, with a
#    key and another value_dim, after token and position embeddings; masking; the masks
#    of mask_zero and masking (and their union) honoured by attention, the 1-D average
#    pool and recurrent layers (the GRU example with mask_zero too); recurrent layers
#    with activations ONNX's recurrent operators lack;
# and a layer without a translation is refused by name, nothing written.
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

$py - "$tmp" "$src" <<'EOF' || bad "writing the data failed"
import sys, numpy as np, h5py
rng = np.random.default_rng(5)
with h5py.File(sys.argv[1] + "/img.h5", "w") as f:
    for part, n in (("train", 256), ("test", 64)):
        f[part + "/images"] = rng.integers(0, 255, size=(n, 28, 28, 1)).astype("u1")
        f[part + "/labels"] = rng.integers(0, 10, size=n).astype("u1")
with h5py.File(sys.argv[1] + "/seq.h5", "w") as f:
    f["x"] = rng.normal(size=(64, 12, 3)).astype("f4")
    f["y"] = rng.integers(0, 2, size=64).astype("u1")
    f["ids"] = rng.integers(1, 20, size=(64, 12)).astype("i4")
    ids = f["ids"][:]
    for r in range(64):     # padded with 0 at the end (some rows not), a hole, only padding
        ids[r, rng.integers(3, 13):] = 0
    ids[5, :] = 0
    ids[6, 2] = 0
    f["idsp"] = ids
    f["q"] = rng.normal(size=(64, 7, 4)).astype("f4")
    xm = f["x"][:]
    xm[:, 3:5, :] = 0.5     # steps the masking layers below hide
    xm[:, 7, 1] = 0.5       # one value alone hides nothing
    f["xm"] = xm
    for k in (5, 8, 10):    # targets of the layers under test, which are the outputs
        f["t%d" % k] = rng.normal(size=(64, k)).astype("f4")
        f["ts%d" % k] = rng.normal(size=(64, 12, k)).astype("f4")
sys.path.insert(0, sys.argv[2] + "/tests")
from text_data import write_text_examples
write_text_examples(sys.argv[1], 16, rng)
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

# fit_seq NAME CONFIG [--set ...]: one epoch, then the run exported.
fit_seq() {
    name=$1 config=$2
    shift 2
    "$ctrain" fit "$config" -o "$tmp/$name" -q --no-report --set fit.epochs=1 "$@" \
        >"$tmp/$name.log" 2>&1 || { bad "$name: fit failed: $(cat "$tmp/$name.log")"; return 1; }
    "$ctrain" export "$tmp/$name" -o "$tmp/$name.onnx" >"$tmp/$name.log" 2>&1 ||
        { bad "$name: export failed: $(cat "$tmp/$name.log")"; return 1; }
    ok
}

# seq_compare NAME FILE X [OUTPUTS]: ONNX Runtime on FILE's dataset X (for a model of one
# input; or IN=DS,... for several, as the config's data.test gives them to ctrain) against
# ctrain predict, output by output (OUTPUTS: the model's outputs, comma-separated; default
# its one output). An input whose data are integers must be an int64 input of the ONNX
# graph, any other a float32 one.
seq_compare() {
    name=$1 file=$2 x=$3 outs=${4:-}
    case $x in *=*) one= ;; *) one=$x ;; esac
    "$ctrain" predict "$tmp/$name/config.yaml" --weights "$tmp/$name/weights.h5" --input "$file" \
        ${one:+--x "$one"} ${outs:+--outputs "$outs"} -o "$tmp/$name-pred.h5" >"$tmp/$name.log" 2>&1 ||
        { bad "$name: predict failed: $(cat "$tmp/$name.log")"; return; }
    out=$($py - "$tmp/$name.onnx" "$file" "$x" "$tmp/$name-pred.h5" <<'EOF' 2>&1
import sys, numpy as np, h5py, onnx, onnxruntime as ort
path, data, x, pred = sys.argv[1:]
onnx.checker.check_model(onnx.load(path), full_check=True)
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
f = h5py.File(data)
named = dict(p.split("=") for p in x.split(",")) if "=" in x else {}
feed = {}
for i in sess.get_inputs():
    v = f[named.get(i.name, x)][:]
    ints = np.issubdtype(v.dtype, np.integer)
    assert i.type == ("tensor(int64)" if ints else "tensor(float)"), (i.name, i.type, v.dtype)
    feed[i.name] = v.astype(np.int64 if ints else np.float32)
p = h5py.File(pred)
worst = 0.0
for o, got in zip(sess.get_outputs(), sess.run(None, feed)):
    want = p[o.name if o.name in p else "predictions"][:]
    assert got.shape[0] == want.shape[0] and got.size == want.size, (o.name, got.shape, want.shape)
    err = np.abs(got - want.reshape(got.shape)).max() / max(np.abs(want).max(), 1e-30)
    print("%s: relative error %.3g;" % (o.name, err), end=" ")
    worst = max(worst, err)
sys.exit(0 if worst <= 1e-5 else 1)
EOF
    ) && { ok; echo "$NAME: $name: $out"; } || bad "$name: ONNX Runtime differs from ctrain: $out"
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
    - {name: d1, type: dense, units: 16, activation: tanh, inputs: hs}
    - {name: d2, type: shared, layer: d1, inputs: bn}
    - {name: both2, type: add, inputs: [d1, d2]}
    - {name: out, type: dense, units: 10, inputs: both2}
    - {name: sm, type: softmax, inputs: out}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1, batch_size: 32}
EOF
fit_export mix "$tmp/mix.yaml" && compare mix

# The text examples, one epoch on a few rows of their shapes.
for c in text_char_lstm:char text_transformer:char text_classify_gru:topics; do
    d=${c#*:} c=${c%:*}
    fit_seq "$c" "$src/configs/$c.yaml" --set data.train.path="$tmp/$d.h5" \
        --set data.validation.path="$tmp/$d.h5" && seq_compare "$c" "$tmp/$d.h5" validation/x
done

# Recurrent layers, their outputs and states compared: an encoder's states start a
# decoder; go_backwards, return_sequences and the recurrent options both ways.
cat >"$tmp/rec.yaml" <<EOF
data:
  train: {path: $tmp/seq.h5, x: x, y: {enc: t5, "enc:1": t5, "enc:2": t5, dec: ts5, g1: ts5, g2: t5, s1: ts5, s2: t5}}
model:
  inputs: {x: {shape: [12, 3]}}
  layers:
    - {name: enc, type: lstm, units: 5, return_state: true, go_backwards: true, recurrent_activation: hard_sigmoid, inputs: x}
    - {name: dec, type: lstm, units: 5, return_sequences: true, activation: leaky_relu, inputs: [x, "enc:1", "enc:2"]}
    - {name: g1, type: gru, units: 5, return_sequences: true, go_backwards: true, inputs: x}
    - {name: g2, type: gru, units: 5, reset_after: false, activation: elu, recurrent_activation: softsign, inputs: g1}
    - {name: s1, type: simple_rnn, units: 5, return_sequences: true, activation: relu, use_bias: false, inputs: x}
    - {name: s2, type: simple_rnn, units: 5, go_backwards: true, activation: linear, inputs: s1}
  outputs: [enc, "enc:1", "enc:2", dec, g1, g2, s1, s2]
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq rec "$tmp/rec.yaml" && seq_compare rec "$tmp/seq.h5" x "enc,enc:1,enc:2,dec,g1,g2,s1,s2"

# Bidirectional in each merge mode, with states; time_distributed.
cat >"$tmp/bidi.yaml" <<EOF
data:
  train: {path: $tmp/seq.h5, x: x, y: {cat: ts10, sum: t5, mul: ts5, ave: t5, st: t5, "st:1": t5, "st:2": t5, td: ts5}}
model:
  inputs: {x: {shape: [12, 3]}}
  layers:
    - {name: cat, type: bidirectional, layer: {type: lstm, units: 5, return_sequences: true}, inputs: x}
    - {name: sum, type: bidirectional, merge_mode: sum, layer: {type: gru, units: 5, go_backwards: true}, inputs: x}
    - {name: mul, type: bidirectional, merge_mode: mul, layer: {type: simple_rnn, units: 5, return_sequences: true, go_backwards: true}, inputs: x}
    - {name: ave, type: bidirectional, merge_mode: ave, layer: {type: gru, units: 5, reset_after: false}, inputs: cat}
    - {name: st, type: bidirectional, merge_mode: sum, layer: {type: gru, units: 5, return_state: true}, inputs: mul}
    - {name: td, type: time_distributed, layer: {type: dense, units: 5, activation: tanh}, inputs: mul}
  outputs: [cat, sum, mul, ave, st, "st:1", "st:2", td]
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq bidi "$tmp/bidi.yaml" && seq_compare bidi "$tmp/seq.h5" x "cat,sum,mul,ave,st,st:1,st:2,td"

# Convolutions, pools and normalizations over steps.
cat >"$tmp/conv1d.yaml" <<EOF
data: {train: {path: $tmp/seq.h5, x: x, y: {c1: ts5, ln: ts5, gm: t5, ga: t5}}}
model:
  inputs: {x: {shape: [12, 3]}}
  layers:
    - {name: c1, type: conv1d, filters: 5, kernel_size: 3, padding: same, activation: relu, inputs: x}
    - {name: c2, type: conv1d, filters: 6, kernel_size: 2, padding: causal, dilation_rate: 2}
    - {name: bn, type: batch_normalization}
    - {name: p1, type: max_pooling1d, pool_size: 2, padding: same, strides: 1}
    - {name: p2, type: average_pooling1d, pool_size: 3, strides: 1, padding: same}
    - {name: c3, type: conv1d, filters: 5, kernel_size: 1}
    - {name: ln, type: layer_normalization}
    - {name: c4, type: conv1d, filters: 5, kernel_size: 3, strides: 2, inputs: c1}
    - {name: p3, type: average_pooling1d}
    - {name: gm, type: global_max_pooling1d}
    - {name: ga0, type: global_average_pooling1d, keepdims: true, inputs: ln}
    - {name: ga, type: flatten}
  outputs: [c1, ln, gm, ga]
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq conv1d "$tmp/conv1d.yaml" && seq_compare conv1d "$tmp/seq.h5" x "c1,ln,gm,ga"

# Attention: causal self-attention after token and position embeddings; attention with a
# key, another value_dim and output_shape; one without biases; position embeddings.
cat >"$tmp/attn.yaml" <<EOF
data:
  train: {path: $tmp/seq.h5, x: {ids: ids, q: q, x: x}, y: {self: ts8, head: t5}}
  test: {path: $tmp/seq.h5, x: {ids: ids, q: q, x: x}, y: {self: ts8, head: t5}}
model:
  inputs: {ids: {shape: [12]}, q: {shape: [7, 4]}, x: {shape: [12, 3]}}
  layers:
    - {name: tap, type: token_and_position_embedding, vocabulary_size: 20, sequence_length: 16, embedding_dim: 8, inputs: ids}
    - {name: ln, type: layer_normalization, epsilon: 1e-5}
    - {name: self, type: multi_head_attention, num_heads: 2, key_dim: 4, use_causal_mask: true, inputs: [ln, ln]}
    - {name: pe, type: position_embedding, sequence_length: 12, inputs: x}
    - {name: cross, type: multi_head_attention, num_heads: 3, key_dim: 2, value_dim: 5, output_shape: 6, inputs: [q, pe, self]}
    - {name: plain, type: multi_head_attention, num_heads: 1, key_dim: 3, use_bias: false, inputs: [cross, pe]}
    - {name: pool, type: global_average_pooling1d}
    - {name: head, type: dense, units: 5}
  outputs: [self, head]
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq attn "$tmp/attn.yaml" && seq_compare attn "$tmp/seq.h5" ids=ids,q=q,x=x "self,head"

# Masking: the steps whose features all equal mask_value become zeros.
cat >"$tmp/masking.yaml" <<EOF
data: {train: {path: $tmp/seq.h5, x: xm, y: ts5}}
model:
  input_shape: [12, 3]
  layers:
    - {type: masking, mask_value: 0.5}
    - {type: dense, units: 5}
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq masking "$tmp/masking.yaml" && seq_compare masking "$tmp/seq.h5" xm

# Masks that attention and the 1-D average pool honour: mask_zero (padding at the ends, a
# hole, a row of padding only) and masking's, and their union after an add.
cat >"$tmp/masks.yaml" <<EOF
data:
  train: {path: $tmp/seq.h5, x: {ids: idsp, xm: xm}, y: {pool: t8, att: ts8, head: t5}}
  test: {path: $tmp/seq.h5, x: {ids: idsp, xm: xm}, y: {pool: t8, att: ts8, head: t5}}
model:
  inputs: {ids: {shape: [12]}, xm: {shape: [12, 3]}}
  layers:
    - {name: tap, type: token_and_position_embedding, vocabulary_size: 20, sequence_length: 12, embedding_dim: 8, mask_zero: true, inputs: ids}
    - {name: ln, type: layer_normalization}
    - {name: att, type: multi_head_attention, num_heads: 2, key_dim: 4, use_causal_mask: true, inputs: [ln, ln]}
    - {name: d, type: dense, units: 8, activation: relu}
    - {name: pool, type: global_average_pooling1d}
    - {name: m, type: masking, mask_value: 0.5, inputs: xm}
    - {name: md, type: dense, units: 8}
    - {name: cross, type: multi_head_attention, num_heads: 2, key_dim: 3, inputs: [md, att]}
    - {name: both, type: add, inputs: [cross, att]}
    - {name: mp, type: global_average_pooling1d}
    - {name: head, type: dense, units: 5}
  outputs: [pool, att, head]
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq masks "$tmp/masks.yaml" && seq_compare masks "$tmp/seq.h5" ids=idsp,xm=xm "pool,att,head"

# Masked recurrent layers (ONNX's Scan, step by step): mask_zero's and masking's masks,
# go_backwards, reset_after both ways, states, zero_output_for_mask, bidirectional; and the
# GRU example with mask_zero.
cat >"$tmp/mrnn.yaml" <<EOF
data:
  train: {path: $tmp/seq.h5, x: {ids: idsp, xm: xm}, y: {g: t5, gb: ts5, l: ts5, "l:1": t5, "l:2": t5, s: t5, bi: ts10, bs: t5}}
  test: {path: $tmp/seq.h5, x: {ids: idsp, xm: xm}, y: {g: t5, gb: ts5, l: ts5, "l:1": t5, "l:2": t5, s: t5, bi: ts10, bs: t5}}
model:
  inputs: {ids: {shape: [12]}, xm: {shape: [12, 3]}}
  layers:
    - {name: emb, type: embedding, input_dim: 20, output_dim: 4, mask_zero: true, inputs: ids}
    - {name: drop, type: dropout, rate: 0.1}
    - {name: g, type: gru, units: 5}
    - {name: gb, type: gru, units: 5, reset_after: false, go_backwards: true, return_sequences: true, inputs: drop}
    - {name: l, type: lstm, units: 5, return_sequences: true, return_state: true, zero_output_for_mask: true, inputs: drop}
    - {name: m, type: masking, mask_value: 0.5, inputs: xm}
    - {name: s, type: simple_rnn, units: 5, go_backwards: true, inputs: m}
    - {name: bi, type: bidirectional, layer: {type: lstm, units: 5, return_sequences: true}, inputs: m}
    - {name: bs, type: bidirectional, merge_mode: ave, layer: {type: gru, units: 5, go_backwards: true}, inputs: emb}
  outputs: [g, gb, l, "l:1", "l:2", s, bi, bs]
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq mrnn "$tmp/mrnn.yaml" && seq_compare mrnn "$tmp/seq.h5" ids=idsp,xm=xm "g,gb,l,l:1,l:2,s,bi,bs"
fit_seq gru_masked "$src/configs/text_classify_gru.yaml" --set data.train.path="$tmp/topics.h5" \
    --set data.validation.path="$tmp/topics.h5" --set model.layers.0.mask_zero=true &&
    seq_compare gru_masked "$tmp/topics.h5" validation/x

# Activations ONNX's recurrent operators lack (ONNX's Scan too), with states and wrapped.
cat >"$tmp/acts.yaml" <<EOF
data: {train: {path: $tmp/seq.h5, x: x, y: {a: ts5, "a:1": t5, "a:2": t5, b: ts5, c: t5, d: ts10}}}
model:
  inputs: {x: {shape: [12, 3]}}
  layers:
    - {name: a, type: lstm, units: 5, activation: gelu, return_sequences: true, return_state: true, go_backwards: true, inputs: x}
    - {name: b, type: lstm, units: 5, recurrent_activation: silu, return_sequences: true, inputs: [x, "a:1", "a:2"]}
    - {name: c, type: gru, units: 5, activation: selu, reset_after: false, inputs: b}
    - {name: d, type: bidirectional, layer: {type: simple_rnn, units: 5, activation: swish, return_sequences: true}, inputs: x}
  outputs: [a, "a:1", "a:2", b, c, d]
compile: {optimizer: adam, loss: mse}
fit: {batch_size: 16}
EOF
fit_seq acts "$tmp/acts.yaml" && seq_compare acts "$tmp/seq.h5" x "a,a:1,a:2,b,c,d"

# What has no translation: refused by name, no file left.
# refused CONFIG-NAME MESSAGE: the config written below exports to nothing, saying MESSAGE.
refused() {
    out=$("$ctrain" export "$tmp/$1.yaml" -o "$tmp/$1.onnx" 2>&1) && bad "$1 was exported: $out"
    printf '%s' "$out" | grep -qF "$2" && ok || bad "$1's refusal: $out"
    [ ! -e "$tmp/$1.onnx" ] && ok || bad "the refused $1 left $tmp/$1.onnx"
}
cat >"$tmp/conv3d.yaml" <<EOF
model:
  input_shape: [4, 4, 4, 1]
  layers:
    - {name: c3, type: conv3d, filters: 2, kernel_size: 2}
compile: {optimizer: adam, loss: mse}
EOF
refused conv3d "layer 'c3' (Conv3D) has no ONNX translation here"
out=$("$ctrain" export "$tmp/mlp" -o "$tmp/none/m.onnx" 2>&1) && bad "an export into a missing folder succeeded"
printf '%s' "$out" | grep -qF "$tmp/none/m.onnx" && ok || bad "the unwritable output's error: $out"
out=$("$ctrain" export "$tmp/mlp" -o "$tmp/m.pb" --format onnnx 2>&1) && bad "an unknown format was taken"
printf '%s' "$out" | grep -qF "unknown --format 'onnnx' (keras or onnx)" && ok || bad "the unknown format's error: $out"
finish
