#!/bin/sh
# test_cli.sh - the ctrain command as a user runs it: help, errors and exit statuses,
# data import, fit output, evaluate, predict (and --outputs), show, summary, check, plot
# and diagrams.
set -u
top=${CT_BUILDDIR:-.}
src=${CT_SRCDIR:-.}
ctrain="$top/ctrain"
tmp=$(mktemp -d /tmp/ctrain-cli-XXXXXX)
passed=0 failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# expect STATUS PATTERN -- command...: exit status and a fixed string in stdout+stderr.
expect() {
    want=$1 pattern=$2
    shift 3
    out=$("$@" 2>&1)
    got=$?
    if [ "$got" != "$want" ]; then
        bad "$* exited $got, expected $want; output: $out"
    elif [ -n "$pattern" ] && ! printf '%s' "$out" | grep -qF -- "$pattern"; then
        bad "$*: expected '$pattern' in: $out"
    else
        ok
    fi
}

# Tiny IDX files written byte by byte: 12 images of 2x2 and 12 labels (0..2).
idx_images="$tmp/img.idx"
idx_labels="$tmp/lab.idx"
{
    printf '\000\000\010\003\000\000\000\014\000\000\000\002\000\000\000\002'
    i=0
    while [ $i -lt 12 ]; do
        c=$((i % 3))
        case $c in
            0) printf '\377\000\000\000' ;;
            1) printf '\000\377\000\000' ;;
            2) printf '\000\000\377\000' ;;
        esac
        i=$((i + 1))
    done
} >"$idx_images"
{
    printf '\000\000\010\001\000\000\000\014'
    i=0
    while [ $i -lt 12 ]; do printf "\\00$((i % 3))"; i=$((i + 1)); done
} >"$idx_labels"

expect 0 "ctrain " -- "$ctrain" --version
expect 0 "ctrain fit FILE" -- "$ctrain" help
expect 0 "--overwrite" -- "$ctrain" help fit
expect 0 "--json" -- "$ctrain" evaluate --help
expect 2 "unknown command 'fti' (did you mean 'fit'?)" -- "$ctrain" fti x.yaml
expect 2 "Usage:" -- "$ctrain"
expect 2 "fit takes one experiment file" -- "$ctrain" fit
expect 2 "evaluate needs --weights" -- "$ctrain" evaluate "$src/configs/fashion_mnist_mlp.yaml"
expect 1 "cannot read $tmp/none.yaml" -- "$ctrain" check "$tmp/none.yaml"

expect 0 "Wrote train/images and train/labels" -- "$ctrain" data import-idx --images "$idx_images" \
    --labels "$idx_labels" -o "$tmp/d.h5" --group train
expect 0 "Wrote test/images" -- "$ctrain" data import-idx --images "$idx_images" \
    --labels "$idx_labels" -o "$tmp/d.h5" --group test
head -c 30 "$idx_images" >"$tmp/short.idx"
expect 1 "$tmp/short.idx" -- "$ctrain" data import-idx --images "$tmp/short.idx" --labels "$idx_labels" -o "$tmp/e.h5"

cat >"$tmp/tiny.yaml" <<'YAML'
name: tiny
data:
  train: {path: d.h5, x: train/images, y: train/labels}
  test: {path: d.h5, x: test/images, y: test/labels}
  scale: 0.00392156862745098
model:
  input_shape: [2, 2, 1]
  layers:
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: {type: adam, learning_rate: 0.1}, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 30, batch_size: 4}
YAML

expect 0 "Total params: 15 (60.00 B)" -- "$ctrain" summary "$tmp/tiny.yaml"
expect 0 "tiny.yaml: OK" -- "$ctrain" check "$tmp/tiny.yaml"
# A transformer block (attention with a causal mask, residual adds) builds and checks.
block="$src/tests/configs/transformer_block_check.yaml"
expect 0 "Total params: 12,836 (50.14 KB)" -- "$ctrain" summary "$block"
expect 0 "transformer_block_check.yaml: OK (data files not checked)" -- "$ctrain" check --no-data "$block"
expect 0 "epochs: 3" -- "$ctrain" check --print --set fit.epochs=3 "$tmp/tiny.yaml"
expect 2 "--set:1:16: unknown key 'unit' in layer 'dense' (Dense) (did you mean 'units'?)" -- \
    "$ctrain" check --set model.layers.1.unit=3 "$tmp/tiny.yaml"

# A filepath placeholder's format is parsed, never handed to printf: check refuses it.
expect 2 "--set:1:51: filepath placeholder '{epoch:n%d}': 'n' is not understood here" -- \
    "$ctrain" check --set 'fit.callbacks=[{type: model_checkpoint, filepath: "w{epoch:n%d}.h5"}]' "$tmp/tiny.yaml"

# A --set value is one line: what follows a newline is not dropped silently.
expect 2 "ctrain: error: --set fit.epochs: the value holds a newline at column 13" -- \
    "$ctrain" check --set "$(printf 'fit.epochs=1\nname: x')" "$tmp/tiny.yaml"

# Not a terminal: one plain line per epoch, no carriage returns.
expect 0 "Epoch 30/30 - 3/3 - " -- "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/run"
out=$("$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/run2" 2>&1)
if printf '%s' "$out" | grep -q "$(printf '\r')"; then bad "log output holds carriage returns"; else ok; fi
if printf '%s' "$out" | grep -q "Test (12 samples): accuracy: 1.0000 - loss: "; then ok; else bad "fit test line: $out"; fi
if [ "$(head -1 "$tmp/run/history.csv")" = "epoch,accuracy,loss,learning_rate" ]; then ok; else bad "history.csv header"; fi
if [ "$(wc -l <"$tmp/run/history.csv")" = 31 ]; then ok; else bad "history.csv rows"; fi
expect 0 "  dense (Dense)  " -- "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/run3" --profile --set fit.epochs=2
expect 2 "already holds a finished run" -- "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/run"
out=$("$ctrain" fit -q "$tmp/tiny.yaml" -o "$tmp/run" --overwrite 2>&1)
if [ $? = 0 ] && [ -z "$out" ]; then ok; else bad "fit -q printed: $out"; fi
# The resolved config in the run directory is itself a usable experiment file.
expect 0 "accuracy: 1.0000 - loss: " -- "$ctrain" evaluate "$tmp/run/config.yaml" --weights "$tmp/run/weights.h5"

# Pictures: the run's learning curves (PNG by default, SVG by extension) and their errors.
# Under LeakSanitizer, the caches of fontconfig, glib and graphviz (which also loses its
# HTML labels' parse) that live until exit are not ctrain's (as in tests/test_report.c).
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    printf 'leak:libfontconfig.so\nleak:libglib-2.0.so\nleak:libgvc.so\nleak:libgvplugin_pango.so\n' \
        >"$tmp/pictures.supp"
    pictures() { LSAN_OPTIONS="suppressions=$tmp/pictures.supp:print_suppressions=0" "$@"; }
else
    pictures() { "$@"; }
fi
expect 0 "Wrote $tmp/run/history.png" -- pictures "$ctrain" plot "$tmp/run"
if [ "$(dd if="$tmp/run/history.png" bs=1 skip=1 count=3 2>/dev/null)" = PNG ]; then ok; else
    bad "plot wrote no PNG"; fi
expect 0 "Wrote $tmp/curves.svg" -- pictures "$ctrain" plot "$tmp/run" -o "$tmp/curves.svg" --metrics accuracy,loss
if [ "$(tail -1 "$tmp/curves.svg")" = "</svg>" ] && grep -q '<svg' "$tmp/curves.svg"; then ok; else
    bad "plot -o curves.svg: not an SVG"; fi
expect 2 "unknown metric 'val_acc'; $tmp/run/history.csv has: accuracy, loss, learning_rate" -- \
    pictures "$ctrain" plot "$tmp/run" --metrics val_acc
expect 2 "$tmp/curves.jpg: unknown picture format '.jpg' (use .png, .svg or .pdf)" -- \
    pictures "$ctrain" plot "$tmp/run" -o "$tmp/curves.jpg"
expect 1 "cannot read $tmp/norun/history.csv: No such file or directory" -- pictures "$ctrain" plot "$tmp/norun"
mkdir -p "$tmp/badrun"
printf 'epoch,loss,val_loss\n0,0.5,0.6\n1,0.4\n' >"$tmp/badrun/history.csv"
expect 1 "$tmp/badrun/history.csv:3:6: 2 values where the header names 3 columns" -- \
    pictures "$ctrain" plot "$tmp/badrun"
expect 2 "plot takes one run directory" -- pictures "$ctrain" plot
# The model as a diagram: graphviz's SVG with a box per input and layer, and DOT text.
expect 0 "Wrote $tmp/tiny.svg" -- pictures "$ctrain" summary "$tmp/tiny.yaml" --diagram "$tmp/tiny.svg"
if [ "$(grep -c 'class="node"' "$tmp/tiny.svg")" = 3 ] && [ "$(grep -c 'class="edge"' "$tmp/tiny.svg")" = 2 ]; then
    ok; else bad "summary --diagram tiny.svg: not 3 boxes and 2 arrows"; fi
expect 0 "Wrote $tmp/tiny.dot" -- pictures "$ctrain" summary "$tmp/tiny.yaml" --diagram "$tmp/tiny.dot"
if grep -q '<b>dense</b> (Dense)</td></tr><tr><td>Input shape: (None, 4)</td><td>Output shape: (None, 3)' "$tmp/tiny.dot" &&
    grep -q 'flatten -> dense;' "$tmp/tiny.dot"; then ok; else bad "tiny.dot: $(cat "$tmp/tiny.dot")"; fi
expect 1 "cannot write $tmp/nodir/m.png: cannot create a temporary file beside it" -- \
    pictures "$ctrain" summary "$tmp/tiny.yaml" --diagram "$tmp/nodir/m.png"
expect 2 "check takes no --diagram" -- "$ctrain" check "$tmp/tiny.yaml" --diagram "$tmp/m.svg"

expect 0 '{"loss": ' -- "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" --json
expect 0 '"accuracy": 1}' -- "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" --json
expect 0 "loss: " -- "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" \
    --data "$tmp/d.h5" --x train/images --y train/labels
expect 1 "tiny.yaml is not an HDF5 file" -- "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp/tiny.yaml"
expect 0 "units: 4" -- "$ctrain" check --print --set model.layers.1.units=4 "$tmp/tiny.yaml"
expect 1 "layer 'dense' (Dense): weight 'kernel' in $tmp/run/weights.h5 has shape (4, 3) but the model expects (4, 4)" -- "$ctrain" evaluate "$tmp/tiny.yaml" --set model.layers.1.units=4 --weights "$tmp/run/weights.h5"

expect 0 "" -- "$ctrain" predict "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" \
    --input "$tmp/d.h5" --x test/images -o "$tmp/p.csv"
if [ "$(wc -l <"$tmp/p.csv")" = 12 ]; then ok; else bad "predict wrote $(wc -l <"$tmp/p.csv") rows"; fi
expect 2 ".txt" -- "$ctrain" predict "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" \
    --input "$tmp/d.h5" --x test/images -o "$tmp/p.txt"

# predict --outputs: the named layers' outputs; CSV with their values side by side.
expect 0 "" -- "$ctrain" predict "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" \
    --input "$tmp/d.h5" --x test/images --outputs flatten --outputs dense -o "$tmp/l.csv"
if [ "$(awk -F, 'NF == 7' "$tmp/l.csv" | wc -l)" = 12 ]; then ok; else bad "predict --outputs wrote: $(cat "$tmp/l.csv")"; fi
expect 2 "the model has no layer 'dens'; the model's layers: flatten, dense" -- "$ctrain" predict \
    "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" --input "$tmp/d.h5" --x test/images \
    --outputs dens -o "$tmp/l.h5"
expect 2 "--outputs takes up to 64 layer names separated by commas, none empty" -- "$ctrain" \
    predict "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5" --input "$tmp/d.h5" \
    --outputs flatten,,dense -o "$tmp/l.h5"
if [ -e "$tmp/l.h5" ]; then bad "a failed predict --outputs wrote $tmp/l.h5"; else ok; fi

# show: a convolution's filters and feature maps for one test image, as a PNG.
sed -e 's/name: tiny/name: tinyconv/' \
    -e 's/    - {type: flatten}/    - {type: conv2d, filters: 3, kernel_size: 2, padding: same, activation: relu}\n    - {type: flatten}/' \
    "$tmp/tiny.yaml" >"$tmp/conv.yaml"
expect 0 "" -- "$ctrain" fit "$tmp/conv.yaml" -o "$tmp/convrun" -q --set fit.epochs=2
expect 0 "" -- "$ctrain" show "$tmp/conv.yaml" --weights "$tmp/convrun/weights.h5" --layer conv2d \
    --sample 11 -o "$tmp/maps.png"
if [ "$(head -c 8 "$tmp/maps.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then ok; else
    bad "show wrote no PNG"; fi
expect 2 "sample 12 is outside $tmp/d.h5, which has 12 rows (samples 0 to 11)" -- "$ctrain" show \
    "$tmp/conv.yaml" --weights "$tmp/convrun/weights.h5" --layer conv2d --sample 12 -o "$tmp/m2.png"
expect 2 "layer 'dense' is a Dense layer; show draws 2-D convolution layers" -- "$ctrain" show \
    "$tmp/conv.yaml" --weights "$tmp/convrun/weights.h5" --layer dense -o "$tmp/m2.png"
expect 2 "--sample takes a row number, 0 or more, not '-1'" -- "$ctrain" show "$tmp/conv.yaml" \
    --weights "$tmp/convrun/weights.h5" --layer conv2d --sample -1 -o "$tmp/m2.png"
expect 1 "$tmp/none.h5" -- "$ctrain" show "$tmp/conv.yaml" --weights "$tmp/none.h5" --layer conv2d \
    -o "$tmp/m2.png"
if [ -e "$tmp/m2.png" ]; then bad "a failed show wrote $tmp/m2.png"; else ok; fi
expect 0 "--layer L" -- "$ctrain" help show

# Checkpoints are written atomically: kill -9 at random moments of a run that writes one
# after every (very short) epoch; what is left must always load and resume.
killed=0
i=0
while [ $i -lt 8 ]; do
    rm -rf "$tmp/kill"
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/kill" -q --set fit.epochs=100000 >/dev/null 2>&1 &
    pid=$!
    sleep "$(awk -v s=$i 'BEGIN { srand(s * 7919 + 1); printf "%.3f", 0.3 + rand() * 0.5 }')"
    kill -9 $pid 2>/dev/null && killed=$((killed + 1))
    wait $pid 2>/dev/null
    if [ -f "$tmp/kill/checkpoint.h5" ]; then
        expect 0 '"loss": ' -- "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp/kill/checkpoint.h5" --json
    else
        bad "no checkpoint after kill $i"
    fi
    i=$((i + 1))
done
[ $killed -gt 0 ] && ok || bad "no run was killed"
# What a killed save leaves (<file>.tmp-XXXXXX, as mkstemp names it) goes when the run
# starts again; files that only look alike stay.
for f in checkpoint.h5.tmp-Ab12Cd weights.h5.tmp-zzzzzz checkpoint.h5.tmp-short notes.tmp-Ab12Cd; do
    : >"$tmp/kill/$f"
done
mkdir "$tmp/kill/checkpoint.h5.tmp-DIRxyz"
expect 0 "Resuming from $tmp/kill/checkpoint.h5" -- "$ctrain" fit "$tmp/tiny.yaml" --resume "$tmp/kill" \
    -v 2 --set fit.epochs=1
left=$(cd "$tmp/kill" && ls -A | grep tmp- | tr '\n' ' ')
if [ "$left" = "checkpoint.h5.tmp-DIRxyz checkpoint.h5.tmp-short notes.tmp-Ab12Cd " ]; then ok; else bad "temporaries left after resume: $left"; fi
: >"$tmp/kill/checkpoint.h5.tmp-QQ11qq"
expect 0 "" -- "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/kill" --overwrite -q --set fit.epochs=1
if [ -e "$tmp/kill/checkpoint.h5.tmp-QQ11qq" ]; then bad "a stale temporary survived a new run"; else ok; fi

# One fit at a time in a run directory (and in a backup_dir): a second one, plain or
# --resume, is refused with the folder and the first one's pid, and changes nothing.
rm -rf "$tmp/busy"
"$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/busy" -q --set fit.epochs=100000 >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 100 ] && ! [ -s "$tmp/busy/checkpoint.h5" ]; do sleep 0.05; i=$((i + 1)); done
expect 1 "ctrain: error: $tmp/busy is in use by another ctrain fit (pid $pid); wait for it to end or choose another directory" -- \
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/busy" --overwrite -q --set fit.epochs=1
expect 1 "ctrain: error: $tmp/busy is in use by another ctrain fit (pid $pid)" -- \
    "$ctrain" fit "$tmp/tiny.yaml" --resume "$tmp/busy" -q --set fit.epochs=1
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ -e "$tmp/busy/weights.h5" ]; then bad "a refused second run wrote weights.h5"; else ok; fi
expect 0 "" -- "$ctrain" fit "$tmp/tiny.yaml" --resume "$tmp/busy" -q --set fit.epochs=1
bk='fit.callbacks=[{type: backup_and_restore, backup_dir: sharedbk}]'
rm -rf "$tmp/sharedbk"
"$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/busy1" -q --set fit.epochs=100000 --set "$bk" >/dev/null 2>&1 &
pid=$!
i=0
while [ $i -lt 100 ] && ! [ -s "$tmp/sharedbk/checkpoint.h5" ]; do sleep 0.05; i=$((i + 1)); done
expect 1 "ctrain: error: $tmp/sharedbk is in use by another ctrain fit (pid $pid)" -- \
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/busy2" -q --set fit.epochs=1 --set "$bk"
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null

# backup_dir may not be the run directory: its checkpoint would go at the end.
expect 2 "ctrain: error: --set:1:55: backup_dir $tmp/same is the run directory, whose checkpoint the backup would delete at the end; choose another folder" -- \
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/same" -q --set 'fit.callbacks=[{type: backup_and_restore, backup_dir: same}]'

# The run's own files are never written through a symbolic link planted in a reused
# folder, nor over something that is not a regular file.
mkdir -p "$tmp/planted"
echo precious >"$tmp/target"
ln -s "$tmp/target" "$tmp/planted/config.yaml"
expect 1 "ctrain: error: cannot write $tmp/planted/config.yaml: it is a symbolic link, not a regular file; refusing to replace it" -- \
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/planted" -q --set fit.epochs=1
rm "$tmp/planted/config.yaml"
ln -s "$tmp/target" "$tmp/planted/history.csv"
expect 1 "ctrain: error: cannot write $tmp/planted/history.csv: it is a symbolic link, not a regular file; refusing to replace it" -- \
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/planted" -q --set fit.epochs=1
rm "$tmp/planted/history.csv"
mkfifo "$tmp/planted/history.csv"
expect 1 "ctrain: error: cannot write $tmp/planted/history.csv: it is a FIFO, not a regular file; refusing to replace it" -- \
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/planted" -q --set fit.epochs=1
if [ "$(cat "$tmp/target")" = precious ]; then ok; else bad "a planted link's target was overwritten"; fi
# A stop by SIGINT writes a checkpoint, says how to resume and exits 130; resuming
# finishes the run.
rm -rf "$tmp/int"
"$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/int" -v 2 --set fit.epochs=100000 >"$tmp/int.log" 2>&1 &
pid=$!
sleep 0.5
kill -INT $pid
wait $pid
status=$?
if [ $status = 130 ] && grep -q -- "--resume $tmp/int" "$tmp/int.log"; then ok; else bad "SIGINT: status $status, $(tail -1 "$tmp/int.log")"; fi

# The default thread count is the cores the process may run on, not the machine's.
if command -v taskset >/dev/null && [ "$(nproc --all)" -gt 1 ]; then
    got=$(taskset -c 0 "$ctrain" check "$tmp/tiny.yaml" --no-data --print | sed -n 's/^  threads: //p')
    [ "$got" = 1 ] && ok || bad "under taskset -c 0 the default threads is '$got', not 1"
else
    echo "cli: taskset missing or one core: the affinity check is skipped"
fi

# CSV import.
printf 'a,b,label\n0.5,1,0\n1.5,2,1\n' >"$tmp/t.csv"
expect 0 "Wrote train/x and train/y" -- "$ctrain" data import-csv "$tmp/t.csv" --header -o "$tmp/c.h5"
printf '0.5,1,0\n1.5,x,1\n' >"$tmp/u.csv"
expect 1 "u.csv:2:5: 'x' is not a number" -- "$ctrain" data import-csv "$tmp/u.csv" -o "$tmp/u.h5"
# The datasets import-csv writes are those a source reads when it names none: train/x and
# train/y for data.train, test/x and test/y for data.test (the file has no plain x or y).
expect 0 "Wrote test/x and test/y" -- \
    "$ctrain" data import-csv "$tmp/t.csv" --header --group test -o "$tmp/c.h5"
cat >"$tmp/csv.yaml" <<'YAML'
data: {train: {path: c.h5}, test: {path: c.h5}}
model: {input_shape: [2], layers: [{type: dense, units: 2, activation: softmax}]}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 1, batch_size: 2}
YAML
expect 0 "csv.yaml: OK" -- "$ctrain" check "$tmp/csv.yaml"
expect 0 "" -- "$ctrain" fit -q "$tmp/csv.yaml" -o "$tmp/csv-run"
expect 0 " - loss: " -- "$ctrain" evaluate "$tmp/csv.yaml" --weights "$tmp/csv-run/weights.h5"
expect 2 "--categorical takes integer or onehot, not 'yes'" -- \
    "$ctrain" data import-csv "$tmp/t.csv" --categorical yes -o "$tmp/c.h5"
# A file with neither: the error names what the file holds.
expect 1 "no dataset 'x' (datasets in the file: test/x, test/y, train/x, train/y)" -- \
    "$ctrain" check "$tmp/csv.yaml" --set data.validation.path=c.h5

# Text import: the summary line, usage errors (status 2) and a text too short (status 1).
printf 'abracadabra' >"$tmp/t.txt"
expect 0 "Wrote train (3 rows), vocab (7 ids) to $tmp/t.h5" -- \
    "$ctrain" data import-text "$tmp/t.txt" --seq-len 3 --split 1 -o "$tmp/t.h5"
expect 0 "Wrote lm/train (2 rows), lm/validation (2 rows), lm/vocab (7 ids) to $tmp/t.h5" -- \
    "$ctrain" data import-text "$tmp/t.txt" --seq-len 2 --split 0.6 --group lm -o "$tmp/t.h5"
expect 2 "import-text needs one FILE and -o OUT.h5" -- "$ctrain" data import-text "$tmp/t.txt"
expect 2 "--level takes char or word, not 'byte'" -- \
    "$ctrain" data import-text "$tmp/t.txt" --level byte -o "$tmp/t.h5"
expect 2 "--seq-len takes a number from 1 to 1000000, not '0'" -- \
    "$ctrain" data import-text "$tmp/t.txt" --seq-len 0 -o "$tmp/t.h5"
expect 2 "--vocab-size takes a number from 3 to 2147483647, not '2'" -- \
    "$ctrain" data import-text "$tmp/t.txt" --vocab-size 2 -o "$tmp/t.h5"
expect 2 "--split takes a share in (0, 1], not '1.5'" -- \
    "$ctrain" data import-text "$tmp/t.txt" --split 1.5 -o "$tmp/t.h5"
expect 2 "--header applies to --labels only" -- \
    "$ctrain" data import-text "$tmp/t.txt" --header -o "$tmp/t.h5"
expect 1 "t.txt holds 11 tokens; --seq-len 100 needs at least 101" -- \
    "$ctrain" data import-text "$tmp/t.txt" -o "$tmp/t.h5"
# generate: a character model trained briefly on a short text. The same seed gives the
# same text; the sample has the prompt and then --length characters of the vocabulary.
i=0
while [ $i -lt 40 ]; do printf 'the cat sat on the mat. '; i=$((i + 1)); done >"$tmp/lm.txt"
"$ctrain" data import-text "$tmp/lm.txt" --seq-len 8 -o "$tmp/lm.h5" >/dev/null || bad "import-text lm"
cat >"$tmp/lm.yaml" <<'YAML'
name: lm
seed: 2
data:
  train: {path: lm.h5, x: train/x, y: train/y}
model:
  input_shape: [8]
  layers:
    - {type: embedding, input_dim: 13, output_dim: 8}
    - {type: gru, units: 16, return_sequences: true}
    - {type: dense, units: 13, activation: softmax}
compile: {optimizer: {type: adam, learning_rate: 0.02}, loss: sparse_categorical_crossentropy}
fit: {epochs: 3, batch_size: 16}
YAML
"$ctrain" fit "$tmp/lm.yaml" -o "$tmp/lmrun" -q || bad "fit lm"
gen() { "$ctrain" generate "$tmp/lm.yaml" --weights "$tmp/lmrun/weights.h5" "$@"; }
a=$(gen --prompt "the " --length 30 --seed 7)
b=$(gen --prompt "the " --length 30 --seed 7)
c=$(gen --prompt "the " --length 30 --seed 8 --temperature 2)
[ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "generate with one seed gave '$a' and '$b'"
[ "$a" != "$c" ] && ok || bad "generate gave '$a' with another seed and temperature"
case $a in "the "*) ok ;; *) bad "generate does not start with its prompt: '$a'" ;; esac
[ "${#a}" = 34 ] && ok || bad "generate wrote ${#a} characters, not 4 + 30: '$a'"
printf '%s' "${a#the }" | grep -q '^[the casonm.]*$' && ok || bad "generate wrote characters outside the vocabulary: '$a'"
g0=$(gen --prompt "the c" --length 12 --temperature 0 --seed 1)
g1=$(gen --prompt "the c" --length 12 --temperature 0 --seed 2)
[ "$g0" = "$g1" ] && ok || bad "temperature 0 depends on the seed: '$g0', '$g1'"
expect 2 "generate needs --weights FILE" -- "$ctrain" generate "$tmp/lm.yaml"
expect 2 "--temperature takes a number from 0 to 1e6, not '-1'" -- gen --temperature -1
expect 2 "--length takes 0 to 1000000 tokens, not 'x'" -- gen --length x
expect 2 "the prompt is not valid UTF-8 (byte 2)" -- gen --prompt "$(printf 'a\377')"
expect 2 "$tmp/tiny.yaml: generate needs a language model: one input of token ids (T) and one output of scores over the vocabulary, (T, V) or (V); this model takes (2, 2, 1) and gives (3,)" -- \
    "$ctrain" generate "$tmp/tiny.yaml" --weights "$tmp/run/weights.h5"
expect 1 "$tmp/t.txt: cannot read the vocabulary 'vocab'" -- gen --vocab "$tmp/t.txt"

printf 'good film,pos\nbad film,neg\n' >"$tmp/l.csv"
expect 0 "Wrote train (2 rows), vocab (5 ids), classes (2) to $tmp/l.h5" -- \
    "$ctrain" data import-text "$tmp/l.csv" --labels --level word --seq-len 4 --split 1 -o "$tmp/l.h5"

# Absurd sizes fail in summary and check before anything is allocated, naming the layer.
# (The address space is capped so that a check that let one through could not exhaust
# the machine.)
# (AddressSanitizer reserves terabytes of address space, so under it the cap is left off.)
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    capped() { "$@"; }
else
    capped() { (ulimit -v 8000000 && "$@"); }
fi
expect 1 "tiny.yaml:10:7: layer 'dense' (Dense): needs 48.4 GiB: 5,000,000,000 parameters take 37.3 GiB with their gradients and optimizer state, and its activations for batches of 1 row take 11.2 GiB; the model needs 48.4 GiB in all, more than backend.memory_limit_mb (1024 MiB)" -- \
    capped "$ctrain" summary "$tmp/tiny.yaml" --set model.layers.1.units=1000000000 --set backend.memory_limit_mb=1024
expect 1 "its activations for batches of 10000000 rows take 11.2 GiB; the model needs 11.3 GiB in all" -- \
    capped "$ctrain" check --no-data "$tmp/tiny.yaml" --set fit.batch_size=10000000 --set model.layers.1.units=100 \
    --set backend.memory_limit_mb=1024
# 15 pairs of dense layers need 2.1 TiB: more than any machine this runs on.
layers="{type: flatten}"
i=0
while [ $i -lt 15 ]; do layers="$layers, {type: dense, units: 1073741824}, {type: dense, units: 8}"; i=$((i + 1)); done
expect 1 "the model needs 2.1 TiB in all, more than the physical memory (" -- \
    capped "$ctrain" check --no-data "$tmp/tiny.yaml" --set 'model.input_shape=[2, 4]' --set "model.layers=[$layers]"

# backup_and_restore's backup_dir is taken relative to the experiment file, not the
# current directory; -o stays relative to the current directory. A backup_dir outside the
# run directory needs --allow-outside (below).
mkdir -p "$tmp/cfg" "$tmp/elsewhere"
sed -e 's|path: d.h5|path: ../d.h5|' \
    -e 's|^fit: {epochs: 30, batch_size: 4}|fit: {epochs: 2, batch_size: 4, callbacks: [{type: backup_and_restore, backup_dir: bk, delete_checkpoint: false}]}|' \
    "$tmp/tiny.yaml" >"$tmp/cfg/bk.yaml"
expect 0 "backup_dir: $tmp/cfg/bk" -- "$ctrain" check --print "$tmp/cfg/bk.yaml"
out=$(cd "$tmp/elsewhere" && "$ctrain" fit ../cfg/bk.yaml -o run -q --allow-outside ../cfg 2>&1)
if [ $? = 0 ] && [ -f "$tmp/cfg/bk/checkpoint.h5" ] && [ ! -e "$tmp/elsewhere/bk" ] &&
    [ -f "$tmp/elsewhere/run/weights.h5" ]; then ok; else bad "backup_dir not beside the config: $out"; fi

# Paths from the experiment file stay inside the run directory: "..", an absolute path, a
# symbolic link to a folder outside, for model_checkpoint, csv_logger and backup_and_restore,
# unless --allow-outside names the folder or the value came from --set. Nothing is written.
cbcfg() { # NAME CALLBACK: a copy of tiny.yaml with one epoch and that callback
    sed -e "s|^fit: {epochs: 30, batch_size: 4}|fit: {epochs: 1, batch_size: 4, callbacks: [$2]}|" \
        "$tmp/tiny.yaml" >"$tmp/$1.yaml"
}
hint="allow the folder with \`ctrain fit --allow-outside DIR\`, or give the value on the command line with --set"
cbcfg esc '{type: model_checkpoint, filepath: ../escape.h5}'
expect 2 "ctrain: error: $tmp/esc.yaml:12:80: model_checkpoint: filepath '../escape.h5' leaves the run directory; an experiment file may only write inside the run directory; $hint" -- \
    "$ctrain" check "$tmp/esc.yaml"
expect 2 "filepath '../escape.h5' leaves the run directory" -- "$ctrain" fit "$tmp/esc.yaml" -o "$tmp/pr/run" -q
cbcfg esc2 '{type: model_checkpoint, filepath: a/../../escape.h5}'
expect 2 "filepath 'a/../../escape.h5' leaves the run directory" -- "$ctrain" fit "$tmp/esc2.yaml" -o "$tmp/pr/run" -q
if [ -e "$tmp/pr/escape.h5" ] || [ -e "$tmp/pr/run" ]; then bad "a refused path was written"; else ok; fi
expect 0 "" -- "$ctrain" fit "$tmp/esc.yaml" -o "$tmp/pr/run" -q --allow-outside "$tmp/pr"
if [ -f "$tmp/pr/escape.h5" ]; then ok; else bad "--allow-outside: no $tmp/pr/escape.h5"; fi
expect 2 "outside the run directory $tmp/pr/run2" -- \
    "$ctrain" fit "$tmp/esc.yaml" -o "$tmp/pr/run2" -q --allow-outside "$tmp/elsewhere"
expect 0 "" -- "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/pr/run3" -q --set fit.epochs=1 \
    --set 'fit.callbacks=[{type: model_checkpoint, filepath: ../escape-set.h5}]'
if [ -f "$tmp/pr/escape-set.h5" ]; then ok; else bad "--set: no $tmp/pr/escape-set.h5"; fi
cbcfg abs "{type: model_checkpoint, filepath: $tmp/pr/abs.h5}"
expect 2 "model_checkpoint: filepath '$tmp/pr/abs.h5' writes to $tmp/pr/abs.h5, outside the run directory $tmp/pr/run4; an experiment file may only write inside the run directory; $hint" -- \
    "$ctrain" fit "$tmp/abs.yaml" -o "$tmp/pr/run4" -q
if [ -e "$tmp/pr/abs.h5" ] || [ -e "$tmp/pr/run4" ]; then bad "an absolute path outside was written"; else ok; fi
expect 0 "" -- "$ctrain" fit "$tmp/abs.yaml" -o "$tmp/pr/run4" -q --allow-outside "$tmp/pr"
if [ -f "$tmp/pr/abs.h5" ]; then ok; else bad "--allow-outside: no $tmp/pr/abs.h5"; fi
mkdir -p "$tmp/pr/run5" "$tmp/outdir"
ln -s "$tmp/outdir" "$tmp/pr/run5/sub"
cbcfg link '{type: model_checkpoint, filepath: sub/w.h5}'
expect 2 "filepath 'sub/w.h5' writes to $tmp/outdir/w.h5, outside the run directory $tmp/pr/run5" -- \
    "$ctrain" fit "$tmp/link.yaml" -o "$tmp/pr/run5" -q
if [ -e "$tmp/outdir/w.h5" ]; then bad "written through a symlinked folder"; else ok; fi
expect 0 "" -- "$ctrain" fit "$tmp/link.yaml" -o "$tmp/pr/run5" -q --allow-outside "$tmp/outdir"
if [ -f "$tmp/outdir/w.h5" ]; then ok; else bad "--allow-outside: no $tmp/outdir/w.h5"; fi
cbcfg csv "{type: csv_logger, filename: $tmp/pr/log.csv}"
expect 2 "csv_logger: filename '$tmp/pr/log.csv' writes to $tmp/pr/log.csv, outside the run directory $tmp/pr/run6" -- \
    "$ctrain" fit "$tmp/csv.yaml" -o "$tmp/pr/run6" -q
if [ -e "$tmp/pr/log.csv" ]; then bad "csv_logger wrote outside"; else ok; fi
expect 0 "" -- "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/pr/run6" -q --set fit.epochs=1 \
    --set "fit.callbacks=[{type: csv_logger, filename: $tmp/pr/log.csv}]"
if [ -f "$tmp/pr/log.csv" ]; then ok; else bad "--set: no $tmp/pr/log.csv"; fi
cbcfg bko '{type: backup_and_restore, backup_dir: pr/bk}'
expect 2 "backup_and_restore: backup_dir '$tmp/pr/bk' writes to $tmp/pr/bk, outside the run directory $tmp/pr/run7" -- \
    "$ctrain" fit "$tmp/bko.yaml" -o "$tmp/pr/run7" -q
if [ -e "$tmp/pr/bk" ]; then bad "backup_dir outside was created"; else ok; fi
expect 0 "" -- "$ctrain" fit "$tmp/bko.yaml" -o "$tmp/pr/run7" -q --allow-outside "$tmp/pr/bk"
expect 0 "" -- "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/pr/run8" -q --set fit.epochs=1 \
    --set "fit.callbacks=[{type: backup_and_restore, backup_dir: $tmp/pr/bk2}]"
if [ -d "$tmp/pr/bk" ] && [ -d "$tmp/pr/bk2" ]; then ok; else bad "allowed backup_dir not used"; fi
# A callback's target that is a symbolic link or a FIFO is not replaced (nor blocked on).
mkdir -p "$tmp/pr/run9"
echo precious >"$tmp/pr/victim"
ln -s "$tmp/pr/victim" "$tmp/pr/run9/w.h5"
cbcfg tgt '{type: model_checkpoint, filepath: w.h5}'
expect 1 "cannot write $tmp/pr/run9/w.h5: it is a symbolic link, not a regular file; refusing to replace it" -- \
    "$ctrain" fit "$tmp/tgt.yaml" -o "$tmp/pr/run9" -q
if [ -L "$tmp/pr/run9/w.h5" ] && [ "$(cat "$tmp/pr/victim")" = precious ]; then ok; else bad "a symlinked checkpoint target was replaced"; fi
rm "$tmp/pr/run9/w.h5"
mkfifo "$tmp/pr/run9/w.h5"
expect 1 "cannot write $tmp/pr/run9/w.h5: it is a FIFO, not a regular file; refusing to replace it" -- \
    "$ctrain" fit "$tmp/tgt.yaml" -o "$tmp/pr/run9" -q --overwrite
if [ -p "$tmp/pr/run9/w.h5" ]; then ok; else bad "a FIFO checkpoint target was replaced"; fi
cbcfg ctgt '{type: csv_logger, filename: log.csv}'
ln -s "$tmp/pr/victim" "$tmp/pr/run9/log.csv"
expect 1 "csv_logger: cannot write $tmp/pr/run9/log.csv: it is a symbolic link, not a regular file; refusing to replace it" -- \
    "$ctrain" fit "$tmp/ctgt.yaml" -o "$tmp/pr/run9" -q --overwrite
rm "$tmp/pr/run9/log.csv"
mkfifo "$tmp/pr/run9/log.csv"
expect 1 "csv_logger: cannot write $tmp/pr/run9/log.csv: it is a FIFO, not a regular file; refusing to replace it" -- \
    timeout 60 "$ctrain" fit "$tmp/ctgt.yaml" -o "$tmp/pr/run9" -q --overwrite
if [ "$(cat "$tmp/pr/victim")" = precious ]; then ok; else bad "a symlinked csv_logger target was written"; fi

# --resume into another -o folder that holds a finished run needs --overwrite too.
expect 2 "$tmp/run already holds a finished run; choose another -o directory or pass --overwrite" -- \
    "$ctrain" fit "$tmp/tiny.yaml" --resume "$tmp/kill" -o "$tmp/run" --set fit.epochs=1
if [ -f "$tmp/run/weights.h5" ]; then ok; else bad "a refused resume removed $tmp/run/weights.h5"; fi
expect 0 "Resuming from $tmp/kill/checkpoint.h5" -- \
    "$ctrain" fit "$tmp/tiny.yaml" --resume "$tmp/kill" -o "$tmp/run" --overwrite --set fit.epochs=1 -v 2

# An output folder that cannot be written: the error comes before any training. As root
# permissions do not stop writes, the shim makes the folder refuse them (EACCES), and a
# path below a regular file fails on its own.
shim="$top/tests/.libs/enospc_shim.so"
preload=$shim
# Under AddressSanitizer its runtime must be the first library loaded.
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    preload="$(${CC:-cc} -print-file-name=libasan.so) $shim"
fi
touch "$tmp/afile"
expect 1 "ctrain: error: cannot create $tmp/afile/run: Not a directory" -- \
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/afile/run" -v 2
if [ ! -f "$shim" ]; then
    bad "the test library $shim was not built"
else
    mkdir -p "$tmp/ro"
    out=$(LD_PRELOAD="$preload" CT_SHIM_MODE=readonly CT_SHIM_DIR="$tmp/ro" \
        "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/ro" -v 2 2>&1)
    status=$?
    if [ $status = 1 ] && [ "$(printf '%s\n' "$out" | tail -1)" = "ctrain: error: cannot create the lock file $tmp/ro/.ctrain.lock: Permission denied" ] &&
        ! printf '%s' "$out" | grep -q "Epoch"; then ok; else bad "read-only run directory: status $status: $out"; fi
    expect 1 "ctrain: error: cannot create $tmp/ro/sub: Permission denied" -- \
        env LD_PRELOAD="$preload" CT_SHIM_MODE=readonly CT_SHIM_DIR="$tmp/ro" \
        "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/ro/sub/run" -v 2

    # Disk full while writing the checkpoint of epoch 3: a clear error naming the file,
    # exit status 1, no temporary file left, and epoch 2's checkpoint intact: it
    # evaluates and resumes. The budget is two and a half checkpoints of this run.
    mkdir -p "$tmp/full"
    "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/probe" -q --set fit.epochs=1 >/dev/null 2>&1
    size=$(wc -c <"$tmp/probe/checkpoint.h5")
    LD_PRELOAD="$preload" CT_SHIM_DIR="$tmp/full" CT_SHIM_BYTES=$((size * 5 / 2)) \
        "$ctrain" fit "$tmp/tiny.yaml" -o "$tmp/full/run" -v 2 >"$tmp/full.log" 2>&1
    status=$?
    err=$(grep "^ctrain: error: " "$tmp/full.log")
    case $err in
        "ctrain: error: saving weights to $tmp/full/run/checkpoint.h5: "*": No space left on device") ok ;;
        *) bad "disk full: $err" ;;
    esac
    if [ $status = 1 ] && grep -q "^Epoch 3/30 " "$tmp/full.log" && ! grep -q "^Epoch 4/30 " "$tmp/full.log"; then
        ok; else bad "disk full: status $status, log: $(cat "$tmp/full.log")"; fi
    if ls "$tmp/full/run" | grep -q "tmp-\|weights.h5"; then bad "left behind: $(ls "$tmp/full/run")"; else ok; fi
    expect 0 '"accuracy": ' -- "$ctrain" evaluate "$tmp/tiny.yaml" --weights "$tmp/full/run/checkpoint.h5" --json
    expect 0 "Resuming from $tmp/full/run/checkpoint.h5: 2 epochs and 0 batches done, step 6" -- \
        "$ctrain" fit "$tmp/tiny.yaml" --resume "$tmp/full/run" -v 2 --set fit.epochs=4
    if [ "$(wc -l <"$tmp/full/run/history.csv")" = 5 ] && [ -f "$tmp/full/run/weights.h5" ]; then ok; else
        bad "resumed after disk full: $(cat "$tmp/full/run/history.csv")"; fi
fi

rm -rf "$tmp"
echo "cli: $passed passed, $failed failed"
[ "$failed" = 0 ]
