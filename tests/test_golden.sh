#!/bin/sh
# test_golden.sh - Sequential experiments give the same bits as the outputs kept in
# tests/golden/: the MLP example for two epochs and the CNN example for one, on the full
# Fashion-MNIST training set, must end with an identical history.csv and identical weights
# (h5diff of /model_weights, no tolerance). A change that moves a single bit of a
# Sequential run fails here. The MLP's outputs date from before the model became a graph;
# the CNN's were recorded again when its convolutions moved to the direct and Winograd
# algorithms (with backend.conv_algorithm: im2col it still gives the bits recorded before).
#
# Bits depend on the CPU's kernels (ctrain's AVX2 / AVX-512 loops, OpenBLAS's core), so
# tests/golden/machine records what they came from; elsewhere the test says so and skips.
# OpenBLAS's core is named here (Haswell's kernels, on any CPU with AVX2), so that whether
# the environment names one does not decide if the test runs.
# CT_GOLDEN_RECORD=1 records them anew (only when a change is meant to move the bits).
set -u
NAME=golden
. "${CT_SRCDIR:-.}/tests/shlib.sh"
golden="${CT_SRCDIR:-.}/tests/golden"
src=/usr/share/datasets/fashion-mnist

if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
    echo "golden: $src is missing (Debian package dataset-fashion-mnist); nothing to compare"
    exit 77
fi
command -v h5diff >/dev/null || { echo "golden: h5diff (hdf5-tools) is missing"; exit 77; }

if grep -qw avx2 /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=Haswell
fi

signature() {
    "$ctrain" --version | sed -n 2p | sed 's/.*kernels/kernels/'
    for f in avx2 fma avx512f avx512bw avx512vl; do
        grep -qw "$f" /proc/cpuinfo && printf '%s ' "$f"
    done
    echo
}
signature >"$tmp/machine"
if [ "${CT_GOLDEN_RECORD:-0}" != 1 ] && ! cmp -s "$tmp/machine" "$golden/machine"; then
    echo "golden: the outputs were recorded with"
    sed 's/^/  /' "$golden/machine"
    echo "golden: this machine has"
    sed 's/^/  /' "$tmp/machine"
    echo "golden: other kernels round differently; skipped"
    exit 77
fi

"$ctrain" data import-idx --images $src/train-images-idx3-ubyte.gz \
    --labels $src/train-labels-idx1-ubyte.gz --group train -o "$tmp/fm.h5" >/dev/null ||
    bad "import-idx failed"
"$ctrain" data import-idx --images $src/t10k-images-idx3-ubyte.gz \
    --labels $src/t10k-labels-idx1-ubyte.gz --group test -o "$tmp/fm.h5" >/dev/null ||
    bad "import-idx failed"

run() { # NAME CONFIG EPOCHS
    "$ctrain" fit -q "${CT_SRCDIR:-.}/configs/$2" -o "$tmp/$1" --set fit.epochs="$3" \
        --set data.train.path="$tmp/fm.h5" --set data.test.path="$tmp/fm.h5" \
        --set backend.threads=2 || bad "$1: fit failed"
    if [ "${CT_GOLDEN_RECORD:-0}" = 1 ]; then
        cp "$tmp/$1/history.csv" "$golden/$1.history.csv"
        cp "$tmp/$1/weights.h5" "$golden/$1.weights.h5"
        return
    fi
    if cmp -s "$tmp/$1/history.csv" "$golden/$1.history.csv"; then ok; else
        bad "$1: history.csv differs from the recorded one:"
        diff "$golden/$1.history.csv" "$tmp/$1/history.csv"
    fi
    if h5diff -q "$golden/$1.weights.h5" "$tmp/$1/weights.h5" /model_weights /model_weights
    then ok; else
        bad "$1: the weights differ from the recorded ones:"
        h5diff -r "$golden/$1.weights.h5" "$tmp/$1/weights.h5" /model_weights /model_weights | head -20
    fi
}
run mlp fashion_mnist_mlp.yaml 2
run cnn fashion_mnist_cnn.yaml 1
[ "${CT_GOLDEN_RECORD:-0}" = 1 ] && cp "$tmp/machine" "$golden/machine"
finish
