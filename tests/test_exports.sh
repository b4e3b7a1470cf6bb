#!/bin/sh
# test_exports.sh - libctrain.so exports exactly the functions src/ctrain.h declares:
# nothing internal (those are reached through the libctrain_core convenience library by
# the tests and fuzzers) and nothing public missing. Where the CUDA and MPI modules are built, every
# libctrain function it calls must be among them, or dlopen would fail at run time.
set -u
top=${CT_BUILDDIR:-.}
src=${CT_SRCDIR:-.}
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

dlname=$(sed -n "s/^dlname='\(.*\)'$/\1/p" "$top/libctrain.la" 2>/dev/null)
lib=$top/.libs/$dlname
if [ -z "$dlname" ] || [ ! -f "$lib" ]; then
    echo "SKIP: no shared libctrain in $top (configured with --disable-shared?)"
    exit 77
fi
command -v nm >/dev/null || { echo "SKIP: nm not found"; exit 77; }

# The header's function names, read the way the build's export list is.
want=$(${CC:-cc} -E -P "$src/src/ctrain.h" | grep -oE '\<ct_[A-Za-z0-9_]+ *\(' \
    | sed 's/ *($//' | sort -u)
[ -n "$want" ] && ok || bad "no function names found in $src/src/ctrain.h"
have=$(nm -D --defined-only "$lib" | awk '{ print $NF }' | sort -u)

extra=$(printf '%s\n' "$have" | grep -vxF -e "$want")
[ -z "$extra" ] && ok || bad "$lib exports symbols src/ctrain.h does not declare:" $extra
missing=$(printf '%s\n' "$want" | grep -vxF -e "$have")
[ -z "$missing" ] && ok || bad "$lib does not export:" $missing

# The modules libctrain loads (module.h): each has its entry point and calls only what
# libctrain exports.
for pair in ctrain-cuda.so:ct_cuda_module_backend ctrain-mpi.so:ct_mpi_module_ops; do
    module=$top/.libs/${pair%%:*}
    entry=${pair#*:}
    [ -f "$module" ] || continue
    nm -D --defined-only "$module" | grep -q " $entry\$" && ok \
        || bad "$module lacks its entry point $entry"
    needs=$(nm -D --undefined-only "$module" | awk '$NF ~ /^ct_/ { print $NF }' | sort -u)
    unmet=$(printf '%s\n' "$needs" | grep -vxF -e "$want" | grep .)
    [ -z "$unmet" ] && ok || bad "$module calls libctrain functions it does not export:" $unmet
done

echo "test_exports: $passed passed, $failed failed"
[ "$failed" = 0 ]
