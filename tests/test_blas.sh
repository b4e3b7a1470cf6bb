#!/bin/sh
# test_blas.sh - OpenBLAS's generic-kernel fallback. Debian's OpenBLAS 0.3.21 reports a
# generic core ("Prescott") on CPUs newer than it knows; ctrain then switches OpenBLAS, in
# place, to the kernels the CPU supports. CTRAIN_ASSUME_BLAS_CORE makes ctrain believe OpenBLAS
# reported that core, so the path runs on any machine.
set -u
NAME=blas
. "${CT_SRCDIR:-.}/tests/shlib.sh"

if ! "$ctrain" --version | grep -q "OpenBLAS"; then
    echo "blas: not built against OpenBLAS; nothing to test"
    exit 77
fi
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo &&
   grep -qw avx512dq /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
    better=SkylakeX
elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
    better=Haswell
else
    echo "blas: this CPU has neither AVX2 nor AVX-512: no better kernels to choose"
    exit 77
fi

# Where the environment already names the kernels (some machines set OPENBLAS_CORETYPE
# because OpenBLAS miscomputes on their CPU with its own choice), ctrain keeps them: no
# switch, no note. The fallback itself cannot be tried there without overriding that.
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    out=$(CTRAIN_ASSUME_BLAS_CORE=Prescott "$ctrain" --version 2>"$tmp/err")
    if printf '%s' "$out" | grep -qi "kernels $OPENBLAS_CORETYPE" && [ ! -s "$tmp/err" ]
    then ok; else bad "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE from the environment not kept: $out $(cat "$tmp/err")"; fi
    echo "blas: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE is set here; the fallback checks are skipped"
    finish
fi

# The switch happens, is said once on stderr, and the new kernels are in use.
out=$(CTRAIN_ASSUME_BLAS_CORE=Prescott "$ctrain" --version 2>"$tmp/err")
if grep -q "kernels $better" <<EOT
$out
EOT
then ok; else bad "fallback did not switch to $better: $out"; fi
if [ "$(grep -c "chose its generic Prescott kernels; using its $better kernels" "$tmp/err")" = 1 ]
then ok; else bad "fallback note: $(cat "$tmp/err")"; fi
# Opting out: no switch, no note.
CTRAIN_KEEP_BLAS_CORE=1 CTRAIN_ASSUME_BLAS_CORE=Prescott "$ctrain" --version >/dev/null 2>"$tmp/err"
if [ ! -s "$tmp/err" ]; then ok; else bad "opt-out still printed: $(cat "$tmp/err")"; fi
out=$(OPENBLAS_CORETYPE=Prescott "$ctrain" --version 2>&1)
if printf '%s' "$out" | grep -q "kernels Prescott" && ! printf '%s' "$out" | grep -q "using its"
then ok; else bad "an explicit OPENBLAS_CORETYPE must be kept: $out"; fi

# Results do not change with the kernels: the same small fit with OpenBLAS's generic
# kernels and with the ones the fallback picks ends at the same loss (to rounding).
awk 'BEGIN { srand(7); for (i = 0; i < 96; i++) { c = i % 3; line = "";
       for (j = 0; j < 24; j++) line = line sprintf("%.4f,", rand() + (j % 3 == c ? 1 : 0));
       print line c } }' >"$tmp/d.csv"
"$ctrain" data import-csv "$tmp/d.csv" -o "$tmp/d.h5" >/dev/null || bad "import-csv failed"
cat >"$tmp/m.yaml" <<'YAML'
name: blas
seed: 3
data: {train: {path: d.h5, x: train/x, y: train/y}}
model:
  input_shape: [24]
  layers:
    - {type: dense, units: 64, activation: relu}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 5, batch_size: 16}
YAML
OPENBLAS_CORETYPE=Prescott "$ctrain" fit -q "$tmp/m.yaml" -o "$tmp/generic" || bad "generic fit failed"
CTRAIN_ASSUME_BLAS_CORE=Prescott "$ctrain" fit -q "$tmp/m.yaml" -o "$tmp/fast" 2>/dev/null ||
    bad "fallback fit failed"
a=$(tail -1 "$tmp/generic/history.csv" | cut -d, -f2)
b=$(tail -1 "$tmp/fast/history.csv" | cut -d, -f2)
if awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-4 * a) }'
then ok; else bad "final loss with generic kernels $a, with $better $b"; fi

finish
