#!/bin/sh
# test_alloc.sh - the training loop allocates no memory per step: workspaces are planned
# when the model is built. Counts the heap allocations ctrain's code makes
# (tests/malloc_count.c, preloaded) in the same fit on 10 and on 100 steps per epoch; an
# allocation per step would add 180 over two epochs. (Libraries may allocate on their own:
# OpenBLAS's small-matrix kernels take a buffer per call; those are reported, not tested.)
set -u
top=${CT_BUILDDIR:-.}
ctrain="$top/ctrain"
shim="$top/tests/.libs/malloc_count.so"
tmp=$(mktemp -d /tmp/ctrain-alloc-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

[ -f "$shim" ] || { echo "alloc: $shim was not built"; exit 99; }
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    echo "alloc: AddressSanitizer replaces the allocator; counting allocations needs a plain build"
    exit 77
fi
# The program itself, not libtool's wrapper script (whose shell would be counted too).
if [ -x "$top/.libs/ctrain" ]; then
    ctrain="$top/.libs/ctrain"
    LD_LIBRARY_PATH="$top/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
fi

# rows: a small CNN (conv, pool, dropout, dense, softmax) on random images.
make_data() {
    awk -v n="$1" 'BEGIN { srand(5); for (i = 0; i < n; i++) { line = "";
        for (j = 0; j < 64; j++) line = line sprintf("%.3f,", rand());
        print line (i % 4) } }' >"$tmp/d$1.csv"
    "$ctrain" data import-csv "$tmp/d$1.csv" -o "$tmp/d$1.h5" >/dev/null || bad "import $1"
}
make_data 160
make_data 1600
cat >"$tmp/m.yaml" <<'YAML'
name: alloc
seed: 1
data: {train: {path: d160.h5, x: train/x, y: train/y}, validation_split: 0}
model:
  input_shape: [64]
  layers:
    - {type: reshape, target_shape: [8, 8, 1]}
    - {type: conv2d, filters: 4, kernel_size: 3, activation: relu}
    - {type: max_pooling2d}
    - {type: batch_normalization}
    - {type: flatten}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 4, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 2, batch_size: 16}
YAML

count() {
    CT_MALLOC_COUNT_OUT="$tmp/count" LD_PRELOAD="$shim" "$ctrain" fit -q "$tmp/m.yaml" \
        -o "$tmp/run$1" --set "data.train.path=d$1.h5" >/dev/null 2>&1 || bad "fit on $1 rows failed"
    cat "$tmp/count"
}
set -- $(count 160)
small=${1:-0} small_all=${2:-0}
set -- $(count 1600)
large=${1:-0} large_all=${2:-0}
if [ "$small" -gt 0 ] 2>/dev/null; then ok; else bad "the shim counted nothing ($small)"; fi
extra=$((large - small))
if [ "$extra" -lt 10 ]; then ok; else
    bad "180 more steps made $extra more allocations ($small for 20 steps, $large for 200)"
fi
echo "alloc: $passed passed, $failed failed (ctrain's own allocations: $small for 20 steps," \
     "$large for 200; all, libraries included: $small_all and $large_all)"
[ "$failed" = 0 ]
