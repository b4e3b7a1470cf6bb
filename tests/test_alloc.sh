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

# A graph: fan-out into a residual add, a shared layer, a merge, two outputs.
cat >"$tmp/g.yaml" <<'YAML'
name: alloc_graph
seed: 1
data: {train: {path: d160.h5, x: train/x, y: {cls: train/y, aux: train/y}}, validation_split: 0}
model:
  input_shape: [64]
  layers:
    - {name: a, type: dense, units: 16, activation: relu}
    - {name: b, type: dense, units: 16, activation: relu}
    - {name: res, type: add, inputs: [a, b]}
    - {name: again, type: shared, layer: b, inputs: res}
    - {name: both, type: concatenate, inputs: [again, a]}
    - {name: cls, type: dense, units: 4, activation: softmax}
    - {name: aux, type: dense, units: 4, activation: softmax, inputs: res}
  outputs: [cls, aux]
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, loss_weights: {aux: 0.5}}
fit: {epochs: 2, batch_size: 16}
YAML

count() { # CONFIG ROWS
    CT_MALLOC_COUNT_OUT="$tmp/count" LD_PRELOAD="$shim" "$ctrain" fit -q "$tmp/$1.yaml" \
        -o "$tmp/run$1$2" --set "data.train.path=d$2.h5" >/dev/null 2>&1 || bad "$1: fit on $2 rows failed"
    cat "$tmp/count"
}
report=""
for m in m g; do
    set -- $(count $m 160)
    small=${1:-0} small_all=${2:-0}
    set -- $(count $m 1600)
    large=${1:-0} large_all=${2:-0}
    if [ "$small" -gt 0 ] 2>/dev/null; then ok; else bad "$m: the shim counted nothing ($small)"; fi
    extra=$((large - small))
    if [ "$extra" -lt 10 ]; then ok; else
        bad "$m: 180 more steps made $extra more allocations ($small for 20 steps, $large for 200)"
    fi
    report="$report${report:+; }$m.yaml: $small for 20 steps, $large for 200 (all, libraries included: $small_all and $large_all)"
done
finish "ctrain's own allocations: $report"
