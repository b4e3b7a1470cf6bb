#!/bin/sh
# test_valgrind.sh - fit, evaluate and predict of a small CNN under valgrind's memcheck:
# no invalid read or write, no use of uninitialised values, no memory definitely lost.
set -u
NAME=valgrind
. "${CT_SRCDIR:-.}/tests/shlib.sh"

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind: not installed (Debian package valgrind)"
    exit 77
fi
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    echo "valgrind: does not run AddressSanitizer builds"
    exit 77
fi
use_program
random_data 96 64 9 "$tmp/d.h5"
cat >"$tmp/m.yaml" <<'YAML'
name: memcheck
seed: 2
data: {train: {path: d.h5, x: train/x, y: train/y}, validation_split: 0.25}
model:
  input_shape: [64]
  layers:
    - {type: reshape, target_shape: [8, 8, 1]}
    - {type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
    - {type: max_pooling2d}
    - {type: batch_normalization}
    - {type: flatten}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 4, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 2, batch_size: 16}
YAML

memcheck() {
    what=$1
    shift
    valgrind --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
        --suppressions="${CT_SRCDIR:-.}/tests/valgrind.supp" --log-file="$tmp/$what.vg" "$ctrain" "$@" >"$tmp/$what.out" 2>&1
    status=$?
    if [ "$status" = 0 ]; then ok; else
        bad "$what under valgrind exited $status: $(grep -E 'ERROR SUMMARY|definitely' "$tmp/$what.vg")"
        tail -n 30 "$tmp/$what.vg"
    fi
}
memcheck fit fit -q "$tmp/m.yaml" -o "$tmp/run"
memcheck evaluate evaluate "$tmp/m.yaml" --weights "$tmp/run/weights.h5" --data "$tmp/d.h5" \
    --x train/x --y train/y
memcheck predict predict "$tmp/m.yaml" --weights "$tmp/run/weights.h5" --input "$tmp/d.h5" \
    --x train/x -o "$tmp/p.csv"
finish
