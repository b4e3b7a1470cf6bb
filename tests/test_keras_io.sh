#!/bin/sh
# test_keras_io.sh - Keras interchange, against Keras itself:
#  - ctrain export writes .keras archives that keras.saving.load_model opens and
#    .weights.h5 files that model.load_weights reads, whose predictions equal ctrain's
#    (1e-5 relative), for the MLP, CNN, batch-normalized CNN and ResNet example models (one
#    epoch on a few hundred random rows), two attentions (causal; with a key, no biases), a
#    recurrent model (lstm, bidirectional gru,
#    time_distributed dense) and one with the other convolutions, normalizations (an
#    adapted one too) and both spatial dropouts (whose legacy weights.h5 load_model reads
#    too), each exported twice over the same file;
#  - .keras and legacy .h5 files Keras writes (a Sequential model with flatten, pooling
#    and dropout layers, whose weight_names Keras writes as an empty float64 array, a
#    Functional one, a recurrent one, an embedding of token ids, and an attention called
#    with use_causal_mask feeding an lstm called with initial_state, whose two inputs
#    Keras lists in another order than its config's, and a shared encoder) load with
#    --weights and
#    import with ctrain import, and ctrain predicts what Keras does; Keras 3 .weights.h5
#    files load with --weights, and with fit --initial-weights (a new head skipped);
#  - the three text examples (text_char_lstm, text_transformer, text_classify_gru; one
#    epoch on a few random rows of their shapes) too, and ctrain import takes each .keras
#    back with bit-for-bit predictions; Keras loads the transformer, whose
#    TokenAndPositionEmbedding is keras_hub's, where keras_hub is installed (else that
#    check says it skips);
#  - errors: a truncated archive, a zip without config.json, a Keras layer and option
#    ctrain has not (listed by name and class, nothing written), a .keras archive given
#    where an HDF5 weights file is expected, a layer export cannot write (named).
#
# Needs a Python with Keras (and h5py and numpy), found as tests/test_keras.sh finds it:
# CT_KERAS_PYTHON, else tests/.venv, else bench/.venv. Without one the test is skipped.
set -u
NAME=keras_io
. "${CT_SRCDIR:-.}/tests/shlib.sh"
src=${CT_SRCDIR:-.}
keras_python

# ---- Keras writes: data, models in both of its formats, their predictions ----
"$py" - "$tmp" "$src" <<'PY' >"$tmp/gen.log" 2>&1 || { cat "$tmp/gen.log"; bad "Keras could not write its files"; finish; }
import sys, json, zipfile, numpy as np, h5py, keras
t = sys.argv[1]
L = keras.layers
rng = np.random.default_rng(5)
with h5py.File(f"{t}/d.h5", "w") as f:
    f["train/images"] = rng.integers(0, 256, size=(300, 28, 28, 1)).astype("u1")
    f["train/labels"] = rng.integers(0, 10, size=300).astype("u1")
    f["x"] = rng.random(size=(16, 28, 28, 1)).astype("f4")
    f["img"] = rng.random(size=(16, 8, 8, 3)).astype("f4")
    f["tab"] = rng.normal(size=(16, 6)).astype("f4")
    f["steps"] = rng.normal(size=(16, 6, 4)).astype("f4")
    f["cls"] = rng.integers(0, 3, size=16).astype("u1")
    f["seqcls"] = rng.integers(0, 3, size=(16, 6)).astype("u1")
    f["tok"] = rng.integers(0, 10, size=(16, 6)).astype("i4")
    f["q"] = rng.normal(size=(16, 4, 8)).astype("f4")
    f["q2"] = rng.normal(size=(16, 4, 8)).astype("f4")
    f["s"] = rng.normal(size=(16, 5, 3)).astype("f4")
    f["reg3"] = rng.normal(size=(16, 3)).astype("f4")

sys.path.insert(0, sys.argv[2] + "/tests")
from text_data import write_text_examples
write_text_examples(t, 8, rng)

def randomize(m):
    for w in m.weights:   # weights that are not the initializer's (BN statistics too)
        w.assign(rng.normal(scale=0.3, size=w.shape).astype("f4") + (1.5 if "variance" in w.path else 0))

# A Sequential model with the weightless layers whose weight_names Keras writes as an empty
# float64 array (flatten, pooling, dropout), compiled.
s = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu"),
                      L.BatchNormalization(), L.MaxPooling2D(), L.Dropout(0.3), L.Flatten(),
                      L.Dense(5, activation="tanh"), L.Dense(3, activation="softmax")],
                     name="kseq")
randomize(s)
s.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
# A Functional one: two branches, an add, a concatenation, two outputs.
i = keras.Input((6,), name="tab")
a = L.Dense(4, activation="relu", name="a",
            kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02))(i)
b = L.Dense(4, name="b")(i)
ab = L.Add(name="ab")([a, b])
n = L.LayerNormalization(name="ln")(ab)
c = L.Concatenate(name="cat")([n, i])
o1 = L.Dense(2, activation="sigmoid", name="o1")(c)
o2 = L.Dense(1, name="o2")(n)
f = keras.Model(i, [o1, o2], name="kfun")
randomize(f)
# A recurrent one (weights in cells and wrapped layers).
r = keras.Sequential([keras.Input((6, 4)), L.LSTM(5, return_sequences=True),
                      L.Bidirectional(L.GRU(3, return_sequences=True)),
                      L.TimeDistributed(L.Dense(2)), L.SimpleRNN(3)], name="krnn")
randomize(r)
# Token ids into an embedding.
e = keras.Sequential([keras.Input((6,), dtype="int32"), L.Embedding(10, 4), L.GRU(3),
                      L.Dense(3, activation="softmax")], name="kemb")
randomize(e)
# Attention called with a causal mask, a recurrent layer started from a state: call
# arguments that become ctrain inputs and options; two inputs, not in config order.
q = keras.Input((4, 8), name="q")
st = keras.Input((5, 3), name="s")
att = L.MultiHeadAttention(2, 4, name="att")(q, q, use_causal_mask=True)
h = L.Dense(6, name="h0")(L.Flatten(name="fl")(st))
ra = L.LSTM(6, name="r")(att, initial_state=[h, h])
k = keras.Model([q, st], L.Dense(2, name="o")(ra), name="katt")
randomize(k)
# A shared encoder (flatten and dense applied to two inputs).
li, ri = keras.Input((4, 8), name="l"), keras.Input((4, 8), name="r")
fl, enc = L.Flatten(name="fl"), L.Dense(5, activation="tanh", name="enc")
sh = keras.Model([li, ri], L.Dense(2, name="o")(L.Subtract(name="dif")([enc(fl(li)), enc(fl(ri))])),
                 name="kshr")
randomize(sh)
d = h5py.File(f"{t}/d.h5", "r")
for name, m, x in (("kseq", s, d["img"][:]), ("kfun", f, d["tab"][:]), ("krnn", r, d["steps"][:]),
                   ("kemb", e, d["tok"][:]), ("katt", k, [d["q"][:], d["s"][:]]),
                   ("kshr", sh, [d["q"][:], d["q2"][:]])):
    m.save(f"{t}/{name}.keras")
    m.save(f"{t}/{name}.h5")
    m.save_weights(f"{t}/{name}.weights.h5")
    p = m.predict(x, verbose=0)
    for k, v in enumerate(p if isinstance(p, list) else [p]):
        np.savetxt(f"{t}/{name}_keras{k}.csv", v.reshape(len(v), -1), delimiter=",", fmt="%.9g")
# Layers and options ctrain has not: PReLU, a kernel constraint.
u = keras.Sequential([keras.Input((6,)), L.Dense(4, kernel_constraint="non_neg"), L.PReLU(),
                      L.Dense(2)], name="kbad")
u.save(f"{t}/kbad.keras")
# A zip that is not a .keras archive.
with zipfile.ZipFile(f"{t}/noconfig.keras", "w") as z:
    z.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    z.writestr("model.weights.h5", b"")
PY
ok

# ---- ctrain writes: four example models and two of more kinds, one epoch each ----
for c in mlp cnn cnn_bn resnet; do
    sed -e 's#\.\./data/fashion-mnist\.h5#d.h5#' -e 's/epochs: [0-9]*/epochs: 1/' \
        -e '/^ *test: /d' "$src/configs/fashion_mnist_$c.yaml" >"$tmp/$c.yaml"
done
cat >"$tmp/rnn.yaml" <<'YAML'
data: {train: {path: d.h5, x: steps, y: seqcls}}
model:
  input_shape: [6, 4]
  layers:
    - {type: lstm, units: 5, return_sequences: true}
    - {type: spatial_dropout1d, rate: 0.2}
    - {type: bidirectional, layer: {type: gru, units: 3, return_sequences: true}}
    - {type: time_distributed, layer: {type: dense, units: 3, activation: softmax}}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1, batch_size: 8}
YAML
cat >"$tmp/kinds.yaml" <<'YAML'
data: {train: {path: d.h5, x: img, y: cls}}
model:
  input_shape: [8, 8, 3]
  layers:
    - {type: normalization}
    - {type: conv2d, filters: 4, kernel_size: 3, padding: same}
    - {type: relu}
    - {type: spatial_dropout2d, rate: 0.2}
    - {type: depthwise_conv2d, kernel_size: 3, depth_multiplier: 2}
    - {type: separable_conv2d, filters: 4, kernel_size: 2, activation: elu}
    - {type: group_normalization, groups: 2}
    - {type: conv2d_transpose, filters: 2, kernel_size: 2, strides: 2}
    - {type: layer_normalization}
    - {type: global_max_pooling2d}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1, batch_size: 8}
YAML
cat >"$tmp/attn.yaml" <<'YAML'
data: {train: {path: d.h5, x: q, y: reg3}}
model:
  inputs: {t: {shape: [4, 8]}}
  layers:
    - {name: att, type: multi_head_attention, num_heads: 2, key_dim: 4, use_causal_mask: true,
       inputs: [t, t]}
    # value_dim as key_dim: Keras 3.15 on JAX cannot run a MultiHeadAttention whose
    # value_dim differs from its key_dim (a model built in Keras itself fails the same way)
    - {name: att2, type: multi_head_attention, num_heads: 2, key_dim: 3, value_dim: 3,
       use_bias: false, inputs: [att, t, t]}
    - {name: f, type: flatten}
    - {name: o, type: dense, units: 3}
compile: {optimizer: adam, loss: mse}
fit: {epochs: 1, batch_size: 8}
YAML
for c in mlp cnn cnn_bn resnet rnn kinds attn; do
    case $c in rnn) x=steps ;; kinds) x=img ;; attn) x=q ;; *) x=x ;; esac
    if "$ctrain" fit "$tmp/$c.yaml" -o "$tmp/run_$c" -q --no-report >"$tmp/fit_$c.log" 2>&1 &&
       "$ctrain" predict "$tmp/$c.yaml" --weights "$tmp/run_$c/weights.h5" --input "$tmp/d.h5" \
           --x $x -o "$tmp/${c}_ctrain.csv" >/dev/null &&
       "$ctrain" export "$tmp/run_$c" --format keras -o "$tmp/$c.keras" >/dev/null &&
       "$ctrain" export "$tmp/run_$c" --format keras -o "$tmp/$c.keras" >/dev/null &&
       "$ctrain" export "$tmp/run_$c" -o "$tmp/$c.weights.h5" >/dev/null; then ok
    else cat "$tmp/fit_$c.log"; bad "$c: fit, predict or export failed"; fi
done
# the text examples, one epoch on a few rows of their shapes
for c in text_char_lstm:char text_transformer:char text_classify_gru:topics; do
    d=${c#*:} c=${c%:*}
    if "$ctrain" fit "$src/configs/$c.yaml" -o "$tmp/run_$c" -q --no-report --set fit.epochs=1 \
           --set data.train.path="$tmp/$d.h5" --set data.validation.path="$tmp/$d.h5" \
           >"$tmp/fit_$c.log" 2>&1 &&
       "$ctrain" predict "$tmp/run_$c/config.yaml" --weights "$tmp/run_$c/weights.h5" \
           --input "$tmp/$d.h5" --x validation/x -o "$tmp/${c}_ctrain.csv" >/dev/null &&
       "$ctrain" export "$tmp/run_$c" --format keras -o "$tmp/$c.keras" >/dev/null &&
       "$ctrain" export "$tmp/run_$c" -o "$tmp/$c.weights.h5" >/dev/null; then ok
    else cat "$tmp/fit_$c.log"; bad "$c: fit, predict or export failed"; fi
done

# ---- ctrain reads what Keras wrote ----
for m in kseq kfun krnn kemb katt kshr; do
    case $m in kseq) x=img ;; kfun) x=tab ;; krnn) x=steps ;; kemb) x=tok ;; *) x= ;; esac
    # the legacy file as weights (kseq's flatten, pooling and dropout: empty float64 names)
    if "$ctrain" import "$tmp/$m.keras" -o "$tmp/imp_$m" >"$tmp/imp.log" 2>&1 &&
       "$ctrain" import "$tmp/$m.h5" -o "$tmp/imph5_$m" >>"$tmp/imp.log" 2>&1; then ok
    else cat "$tmp/imp.log"; bad "$m: ctrain import failed"; continue; fi
    # two inputs: their datasets named in the data section the user fills in
    yaml="$tmp/imp_$m/experiment.yaml"
    if [ -z "$x" ]; then
        yaml="$tmp/imp_$m/with_data.yaml"
        { cat "$tmp/imp_$m/experiment.yaml"
          case $m in
          katt) echo "data: {test: {path: ../d.h5, x: {q: q, s: s}, y: reg3}}" ;;
          kshr) echo "data: {test: {path: ../d.h5, x: {l: q, r: q2}, y: reg3}}" ;;
          esac; } >"$yaml"
    fi
    for w in "imp_$m/weights.h5" "$m.h5" "$m.weights.h5" "imph5_$m/weights.h5"; do
        tag=$(echo "$w" | tr '/.' '__')
        if "$ctrain" predict "$yaml" --weights "$tmp/$w" --input "$tmp/d.h5" ${x:+--x $x} \
               -o "$tmp/${m}_$tag.h5" >"$tmp/pred.log" 2>&1; then ok
        else cat "$tmp/pred.log"; bad "$m: predict with --weights $w failed"; fi
    done
done
# ctrain -> .keras -> ctrain: each exported example imported back predicts what it did,
# bit for bit (data.scale belongs to the data, not the model: it is given again)
for c in mlp cnn cnn_bn resnet; do
    if "$ctrain" import "$tmp/$c.keras" -o "$tmp/back_$c" >"$tmp/back.log" 2>&1 &&
       "$ctrain" predict "$tmp/back_$c/experiment.yaml" --weights "$tmp/back_$c/weights.h5" \
           --input "$tmp/d.h5" --x x -o "$tmp/back_$c.csv" \
           --set data.scale=0.00392156862745098 >>"$tmp/back.log" 2>&1 &&
       cmp -s "$tmp/back_$c.csv" "$tmp/${c}_ctrain.csv"; then ok
    else cat "$tmp/back.log"; bad "$c: the round trip through .keras changed its predictions"; fi
done
for c in text_char_lstm:char text_transformer:char text_classify_gru:topics; do
    d=${c#*:} c=${c%:*}
    if "$ctrain" import "$tmp/$c.keras" -o "$tmp/back_$c" >"$tmp/back.log" 2>&1 &&
       "$ctrain" predict "$tmp/back_$c/experiment.yaml" --weights "$tmp/back_$c/weights.h5" \
           --input "$tmp/$d.h5" --x validation/x -o "$tmp/back_$c.csv" >>"$tmp/back.log" 2>&1 &&
       cmp -s "$tmp/back_$c.csv" "$tmp/${c}_ctrain.csv"; then ok
    else cat "$tmp/back.log"; bad "$c: the round trip through .keras changed its predictions"; fi
done
# fine-tuning from a Keras 3 .weights.h5: the base loads, a head of another shape does not
sed -e '/^#/d' -e 's/loss: mean_squared_error/loss: sparse_categorical_crossentropy/' \
    -e 's/units: 3, activation: softmax/units: 4, activation: softmax/' \
    "$tmp/imp_kseq/experiment.yaml" >"$tmp/ft.yaml"
printf 'data: {train: {path: d.h5, x: img, y: cls}}\nfit: {epochs: 1, batch_size: 8}\n' >>"$tmp/ft.yaml"
if "$ctrain" fit "$tmp/ft.yaml" --initial-weights "$tmp/kseq.weights.h5" -o "$tmp/ft" -v 2 \
       --no-report >"$tmp/ft.log" 2>&1 &&
   grep -q "conv2d  *loaded from layers/conv2d$" "$tmp/ft.log" &&
   grep -q "dense  *loaded from layers/dense$" "$tmp/ft.log" &&
   grep -q "dense_1  *skipped, keeps its initial values: layers/dense_1/vars/0 is not of kernel's shape (5, 4)" "$tmp/ft.log"; then ok
else cat "$tmp/ft.log"; bad "fine-tuning from a Keras 3 .weights.h5 does not load the base alone"; fi
grep -q "^  input_shape: \[8, 8, 3\]" "$tmp/imp_kseq/experiment.yaml" &&
    grep -q "loss: sparse_categorical_crossentropy" "$tmp/imp_kseq/experiment.yaml" &&
    grep -q "optimizer: {type: adam, learning_rate: 0.001}" "$tmp/imph5_kseq/experiment.yaml" &&
    grep -q "loss: sparse_categorical_crossentropy" "$tmp/imph5_kseq/experiment.yaml" &&
    grep -q "outputs: \[o1, o2\]" "$tmp/imp_kfun/experiment.yaml" &&
    grep -q "kernel_regularizer: {type: l1_l2, l1: 0.01, l2: 0.02}" "$tmp/imp_kfun/experiment.yaml" &&
    grep -q "kernel_regularizer: {type: l1_l2, l1: 0.01, l2: 0.02}" "$tmp/imph5_kfun/experiment.yaml" && ok ||
    bad "the imported experiments lack the input shape, compile's settings, the outputs or a regularizer"

# ---- Keras reads what ctrain wrote, and both sides' predictions are compared ----
"$py" - "$tmp" <<'PY' >"$tmp/cmp.log" 2>&1 || { cat "$tmp/cmp.log"; bad "the Keras comparison did not run"; }
import sys, glob, numpy as np, h5py, keras
t = sys.argv[1]
d = h5py.File(f"{t}/d.h5", "r")
inputs = {"mlp": d["x"][:] / 255, "cnn": d["x"][:] / 255, "cnn_bn": d["x"][:] / 255,
          "resnet": d["x"][:] / 255, "rnn": d["steps"][:], "kinds": d["img"][:],
          "attn": d["q"][:]}
for c, f in (("text_char_lstm", "char"), ("text_transformer", "char"),
             ("text_classify_gru", "topics")):
    inputs[c] = h5py.File(f"{t}/{f}.h5", "r")["validation/x"][:]
def same(a, b):
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-6)
try:   # its TokenAndPositionEmbedding is keras_hub's, which Keras imports where it can
    import keras_hub
except ImportError:
    print("SKIP text_transformer: Keras cannot load it without keras_hub (scripts/setup.sh --test installs it)")
    del inputs["text_transformer"]
for c, x in inputs.items():
    want = np.loadtxt(f"{t}/{c}_ctrain.csv", delimiter=",", ndmin=2)
    try:
        m = keras.saving.load_model(f"{t}/{c}.keras")
        got = m.predict(x, verbose=0).reshape(len(x), -1)
        print("OK" if same(got, want) else "FAIL", c, ".keras", np.max(np.abs(got - want)))
        m2 = keras.models.clone_model(m)
        m2.load_weights(f"{t}/{c}.weights.h5")
        got = m2.predict(x, verbose=0).reshape(len(x), -1)
        print("OK" if same(got, want) else "FAIL", c, ".weights.h5", np.max(np.abs(got - want)))
        if c in ("rnn", "kinds"):   # spatial dropouts: the legacy file loads too
            m3 = keras.models.load_model(f"{t}/run_{c}/weights.h5")
            got = m3.predict(x, verbose=0).reshape(len(x), -1)
            print("OK" if same(got, want) else "FAIL", c, "legacy", np.max(np.abs(got - want)))
    except Exception as e:
        print("FAIL", c, "Keras could not load it:", repr(e)[:600])
for m, nout in (("kseq", 1), ("kfun", 2), ("krnn", 1), ("kemb", 1), ("katt", 1), ("kshr", 1)):
    want = [np.loadtxt(f"{t}/{m}_keras{k}.csv", delimiter=",", ndmin=2) for k in range(nout)]
    for f in sorted(glob.glob(f"{t}/{m}_*_h5.h5")):
        with h5py.File(f, "r") as h:
            got = [h["predictions"][:]] if "predictions" in h else [h[f"predictions_{k}"][:] for k in range(nout)] if f"predictions_0" in h else [h[k][:] for k in sorted(h.keys())]
        got = [g.reshape(len(g), -1) for g in got]
        good = len(got) == nout and all(same(g, w) for g, w in zip(got, want))
        print("OK" if good else "FAIL", m, f.rsplit("/", 1)[1], [g.shape for g in got])
PY
grep -q . "$tmp/cmp.log" || bad "the comparison printed nothing"
while read -r status rest; do
    case $status in
        OK) ok ;;
        FAIL) bad "$rest" ;;
        SKIP) echo "$NAME: SKIP: $rest" ;;
    esac
done <"$tmp/cmp.log"

# ---- errors ----
head -c 2000 "$tmp/cnn.keras" >"$tmp/cut.keras"
"$ctrain" import "$tmp/cut.keras" -o "$tmp/cut" >"$tmp/err.log" 2>&1
[ $? -ne 0 ] && grep -q "cut.keras: damaged zip archive" "$tmp/err.log" && [ ! -e "$tmp/cut/experiment.yaml" ] &&
    ok || { cat "$tmp/err.log"; bad "a truncated archive is not named damaged"; }
"$ctrain" import "$tmp/noconfig.keras" -o "$tmp/nc" >"$tmp/err.log" 2>&1
[ $? -ne 0 ] && grep -q "without config.json" "$tmp/err.log" && ok ||
    { cat "$tmp/err.log"; bad "a zip without config.json is not refused as such"; }
"$ctrain" import "$tmp/kbad.keras" -o "$tmp/kbad" >"$tmp/err.log" 2>&1
[ $? -ne 0 ] && grep -q "layer 'p_re_lu' (PReLU): ctrain has no layer of this class" "$tmp/err.log" &&
    grep -q "layer 'dense[_0-9]*' (Dense): option kernel_constraint (NonNeg) is not supported" "$tmp/err.log" &&
    [ ! -e "$tmp/kbad/experiment.yaml" ] && [ ! -e "$tmp/kbad/weights.h5" ] && ok ||
    { cat "$tmp/err.log"; bad "unsupported layers and options are not listed by name and class"; }
"$ctrain" predict "$tmp/cnn.yaml" --weights "$tmp/cnn.keras" --input "$tmp/d.h5" --x x \
    -o "$tmp/no.csv" >"$tmp/err.log" 2>&1
[ $? -ne 0 ] && grep -q "cnn.keras is a zip archive (a Keras 3 .keras file?), not an HDF5 file; import a .keras model with \`ctrain import" "$tmp/err.log" &&
    ok || { cat "$tmp/err.log"; bad "a .keras archive given as weights is not named so"; }
"$ctrain" export "$tmp/run_cnn" -o "$tmp/cnn.pb" >"$tmp/err.log" 2>&1
[ $? -eq 2 ] && grep -q "must end in .keras" "$tmp/err.log" && ok ||
    { cat "$tmp/err.log"; bad "export to an unknown suffix is not a usage error"; }
cat >"$tmp/pos.yaml" <<'YAML'
model:
  input_shape: [3, 4]
  layers:
    - {name: td, type: time_distributed,
       layer: {type: token_and_position_embedding, vocabulary_size: 10, sequence_length: 4, embedding_dim: 2}}
compile: {optimizer: adam, loss: mse}
YAML
"$ctrain" export "$tmp/pos.yaml" -o "$tmp/pos.keras" >"$tmp/err.log" 2>&1
[ $? -ne 0 ] && grep -q "layer 'td' (TimeDistributed)" "$tmp/err.log" && [ ! -e "$tmp/pos.keras" ] &&
    ok || { cat "$tmp/err.log"; bad "a layer Keras export cannot write is not refused by name"; }
finish
