#!/bin/sh
# test_alloc.sh - the training loop allocates no memory per step: workspaces are planned
# when the model is built. Counts the heap allocations ctrain's code makes
# (tests/malloc_count.c, preloaded) in the same fit on 10 and on 100 steps per epoch; an
# allocation per step would add 180 over two epochs. (Libraries may allocate on their own:
# OpenBLAS's small-matrix kernels take a buffer per call; those are reported, not tested.)
set -u
NAME=alloc
. "${CT_SRCDIR:-.}/tests/shlib.sh"
shim="$top/tests/.libs/malloc_count.so"

[ -f "$shim" ] || { echo "alloc: $shim was not built"; exit 99; }
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    echo "alloc: AddressSanitizer replaces the allocator; counting allocations needs a plain build"
    exit 77
fi
use_program

# A small CNN (conv, pool, batch norm, dropout, dense, softmax) on random images.
random_data 160 64 5 "$tmp/d160.h5"
random_data 1600 64 5 "$tmp/d1600.h5"
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
finish "ctrain's own allocations: $small for 20 steps, $large for 200; all, libraries included: $small_all and $large_all"
