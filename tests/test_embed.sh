#!/bin/sh
# test_embed.sh - examples/embed.c built as a user builds it: against the installed
# library (make install into a temporary root) through pkg-config; it trains from an
# experiment in a string and classifies three samples from arrays in memory.
NAME=embed
. "${CT_SRCDIR:-.}/tests/shlib.sh"
src=${CT_SRCDIR:-.}
if [ "${CT_SANITIZERS:-no}" = yes ]; then
    echo "embed: SKIP: a sanitizer build's library needs the sanitizers' runtime in the program"
    exit 77
fi
root=$tmp/root
make -C "$top" install DESTDIR="$root" >"$tmp/install.log" 2>&1 || {
    bad "make install failed: $(tail -5 "$tmp/install.log")"
    finish
}
pc=$(find "$root" -name ctrain.pc | head -1)
[ -n "$pc" ] && ok || bad "no ctrain.pc installed"
flags=$(PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$root pkg-config --cflags --libs ctrain)
${CC:-cc} -std=c11 -Wall -Wextra "$src/examples/embed.c" $flags -o "$tmp/embed" 2>"$tmp/cc.log" &&
    ok || bad "examples/embed.c did not build with pkg-config's flags: $(cat "$tmp/cc.log")"
# three well separated classes: feature c is large for class c
awk 'BEGIN { srand(3); for (i = 0; i < 300; i++) { c = i % 3; line = "";
    for (j = 0; j < 4; j++) line = line sprintf("%.4f,", (j == c ? 2.5 : 0) + rand() - 0.5);
    print line c } }' >"$tmp/d.csv"
"$ctrain" data import-csv "$tmp/d.csv" -o "$tmp/d.h5" >/dev/null 2>&1 || bad "import failed"
h5=$tmp/d.h5
lib=$(dirname "$(find "$root" -name 'libctrain.so' | head -1)")
out=$(cd "$tmp" && LD_LIBRARY_PATH=$lib "$tmp/embed" "$h5" "$tmp/run" 2>&1)
printf '%s' "$out" | grep -q "^trained" && ok || bad "embed did not train: $out"
for c in 0 1 2; do
    printf '%s' "$out" | grep -q "^sample $c: class $c " && ok || bad "sample $c misclassified: $out"
done
[ "$(wc -l <"$tmp/run/history.csv")" = 21 ] && ok || bad "history.csv has not 20 epochs"
finish
