#!/bin/sh
# test_hostile.sh - hostile files given to the ctrain command: FIFOs and devices as config,
# data, weights or CSV input; a CSV without line ends; a full disk while importing into an
# existing file and while writing checkpoints (HDF5 must not be left half open).
set -u
top=${CT_BUILDDIR:-.}
src=${CT_SRCDIR:-.}
ctrain="$top/ctrain"
tmp=$(mktemp -d /tmp/ctrain-hostile-XXXXXX)
passed=0 failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# expect STATUS LAST-LINE -- command...: exit status and the exact last line of the output,
# within 20 seconds (a FIFO that blocks fails here instead of hanging the suite).
expect() {
    want=$1 line=$2
    shift 3
    out=$(timeout 20 "$@" 2>&1)
    got=$?
    last=$(printf '%s\n' "$out" | tail -1)
    if [ "$got" != "$want" ]; then
        bad "$* exited $got, expected $want; output: $out"
    elif [ "$last" != "$line" ]; then
        bad "$*: expected '$line', got: $out"
    else
        ok
    fi
}

# The tiny IDX data and experiment of test_cli.sh.
{
    printf '\000\000\010\003\000\000\000\014\000\000\000\002\000\000\000\002'
    i=0
    while [ $i -lt 12 ]; do
        case $((i % 3)) in
            0) printf '\377\000\000\000' ;;
            1) printf '\000\377\000\000' ;;
            2) printf '\000\000\377\000' ;;
        esac
        i=$((i + 1))
    done
} >"$tmp/img.idx"
{
    printf '\000\000\010\001\000\000\000\014'
    i=0
    while [ $i -lt 12 ]; do printf "\\00$((i % 3))"; i=$((i + 1)); done
} >"$tmp/lab.idx"
"$ctrain" data import-idx --images "$tmp/img.idx" --labels "$tmp/lab.idx" -o "$tmp/d.h5" \
    --group train >/dev/null || bad "import-idx"
cat >"$tmp/tiny.yaml" <<'YAML'
name: tiny
data:
  train: {path: d.h5, x: train/images, y: train/labels}
  scale: 0.00392156862745098
model:
  input_shape: [2, 2, 1]
  layers:
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: {type: adam, learning_rate: 0.1}, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 2, batch_size: 4}
YAML
"$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/run" -q || bad "fit"

# FIFOs (nothing ever writes to them: an open would block) and devices.
mkfifo "$tmp/fifo.yaml" "$tmp/fifo.h5" "$tmp/fifo.csv"
fifo="it is a FIFO, not a regular file"
expect 1 "ctrain: error: cannot read $tmp/fifo.yaml: $fifo" -- "$ctrain" check "$tmp/fifo.yaml"
expect 1 "ctrain: error: cannot read $tmp/fifo.yaml: $fifo" -- "$ctrain" fit "$tmp/fifo.yaml" -o "$tmp/r2"
sed "s|path: d.h5|path: fifo.h5|" "$tmp/tiny.yaml" >"$tmp/fifo_data.yaml"
expect 1 "ctrain: error: data.train: cannot open $tmp/fifo.h5: $fifo" -- \
    "$ctrain" fit "$tmp/fifo_data.yaml" -o "$tmp/r3"
expect 1 "ctrain: error: cannot open $tmp/fifo.h5: $fifo" -- \
    "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp/fifo.h5"
expect 1 "ctrain: error: cannot open $tmp/fifo.h5: $fifo" -- \
    "$ctrain" fit "$tmp/tiny.yaml" --resume "$tmp/fifo.h5" -o "$tmp/r4"
expect 1 "ctrain: error: cannot open $tmp/fifo.csv: $fifo" -- \
    "$ctrain" data import-csv "$tmp/fifo.csv" -o "$tmp/c.h5"
expect 1 "ctrain: error: cannot open /dev/zero: it is a character device, not a regular file" -- \
    "$ctrain" data import-csv /dev/zero -o "$tmp/c.h5"
expect 1 "ctrain: error: cannot open /dev/zero: it is a character device, not a regular file" -- \
    "$ctrain" data import-idx --images /dev/zero --labels "$tmp/lab.idx" -o "$tmp/c.h5"
expect 1 "ctrain: error: cannot open $tmp: it is a directory" -- \
    "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp"

# A CSV file whose first line never ends (2 MiB of digits).
head -c 2097152 /dev/zero | tr '\0' '1' >"$tmp/long.csv"
expect 1 "ctrain: error: $tmp/long.csv:1: the line is longer than 1048576 bytes; is this a CSV file?" -- \
    "$ctrain" data import-csv "$tmp/long.csv" -o "$tmp/c.h5"

shim="$top/tests/.libs/enospc_shim.so"
preload=$shim
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    preload="$(${CC:-cc} -print-file-name=libasan.so) $shim"
    # The preload reaches the sed that libtool's wrapper script runs, and LeakSanitizer
    # reports its buffers on exit: not ctrain's, so not counted here.
    printf 'leak:/usr/bin/sed\n' >"$tmp/lsan.supp"
    export LSAN_OPTIONS="suppressions=$tmp/lsan.supp:print_suppressions=0"
fi
if [ ! -f "$shim" ]; then
    bad "the test library $shim was not built"
else
    # A full disk while import-csv adds to an existing file: the file keeps its old
    # contents, no temporary is left.
    mkdir -p "$tmp/imp"
    printf '1,2,0\n3,4,1\n5,6,0\n' >"$tmp/small.csv"
    "$ctrain" data import-csv "$tmp/small.csv" -o "$tmp/imp/out.h5" --group g >/dev/null || bad "import-csv"
    "$ctrain" data import-idx --images "$tmp/img.idx" --labels "$tmp/lab.idx" -o "$tmp/imp/out.h5" \
        --group train >/dev/null || bad "import-idx into out.h5"
    cp "$tmp/imp/out.h5" "$tmp/before.h5"
    i=0
    while [ $i -lt 300 ]; do echo "$i,$((i * 2)),$((i % 3))"; i=$((i + 1)); done >"$tmp/big.csv"
    size=$(wc -c <"$tmp/imp/out.h5")
    for extra in 0 100 2000; do
        out=$(LD_PRELOAD="$preload" CT_SHIM_DIR="$tmp/imp" CT_SHIM_BYTES=$((size + extra)) \
            timeout 20 "$ctrain" data import-csv "$tmp/big.csv" -o "$tmp/imp/out.h5" --group g 2>&1)
        status=$?
        case $(printf '%s\n' "$out" | tail -1) in
            "ctrain: error: "*"No space left on device") ok ;;
            *) bad "import-csv on a full disk (+$extra): status $status: $out" ;;
        esac
        if [ $status = 1 ] && cmp -s "$tmp/before.h5" "$tmp/imp/out.h5" &&
            [ "$(ls "$tmp/imp")" = out.h5 ]; then ok; else
            bad "import-csv on a full disk (+$extra): status $status, files $(ls "$tmp/imp")"; fi
    done
    expect 0 "Wrote g/x and g/y to $tmp/imp/out.h5" -- \
        "$ctrain" data import-csv "$tmp/big.csv" -o "$tmp/imp/out.h5" --group g

    # A full disk at every point of the first checkpoints: exit status 1 with the message,
    # and nothing from HDF5's exit handler (it used to report an infinite loop or crash).
    for budget in 0 1 600 1500 2500 3500 5000 7000 9000; do
        rm -rf "$tmp/full"
        mkdir -p "$tmp/full"
        out=$(LD_PRELOAD="$preload" CT_SHIM_DIR="$tmp/full" CT_SHIM_BYTES=$budget \
            timeout 60 "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/full/run" -q 2>&1)
        status=$?
        if [ $status = 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] &&
            printf '%s' "$out" | grep -q "^ctrain: error: .*No space left on device$"; then ok; else
            bad "checkpoint on a full disk ($budget bytes): status $status: $out"; fi
    done
fi

rm -rf "$tmp"
echo "hostile: $passed passed, $failed failed"
[ "$failed" = 0 ]
