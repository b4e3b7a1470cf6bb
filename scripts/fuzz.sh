#!/bin/bash
# fuzz.sh - builds ctrain's libFuzzer targets with clang (ASan + UBSan) and runs them.
#
#   scripts/fuzz.sh [--time SECONDS] [--jobs N] [--build DIR] [--build-only] [TARGET...]
#
# TARGET is config, dataset or weights (default: all three). Each runs for SECONDS of
# wall time (default 60); --jobs N runs N targets at once (default 1). Everything runs
# under nice -n 19. A crash does not end a target's time: the fuzzer is restarted on the
# grown corpus until the time is used up.
#
# Folders (generated, ignored by git):
#   fuzz/seeds-gen/TARGET  seed inputs from fuzz/make_seeds.sh (made on first use)
#   fuzz/corpus-TARGET     the corpus each run grows
#   fuzz/crashes-TARGET    crash-*, leak-*, timeout-*, oom-* inputs
#   fuzz/logs-TARGET       libFuzzer's output of each run
# Objects and binaries go to --build DIR (default ${TMPDIR:-/tmp}/ctrain-fuzz-build).
# Environment: CC (default clang-14), FUZZ_FLAGS (extra libFuzzer flags).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
time_per=60
jobs=1
build=${TMPDIR:-/tmp}/ctrain-fuzz-build
build_only=0
targets=()
CC=${CC:-clang-14}

usage() {
    sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//'
    exit "$1"
}

while [ $# -gt 0 ]; do
    case $1 in
    --time) time_per=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) usage 0 ;;
    config|dataset|weights) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1'" >&2; usage 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(config dataset weights)
case $time_per$jobs in *[!0-9]*) echo "fuzz.sh: --time and --jobs take whole numbers" >&2; exit 2 ;; esac
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (Debian: clang-14 libclang-rt-14-dev)" >&2; exit 2; }

PKGS="yaml-0.1 libcjson zlib openblas libpng libjpeg cairo libgvc libprotobuf-c"
if pkg-config --exists hdf5; then PKGS="$PKGS hdf5"; else PKGS="$PKGS hdf5-serial"; fi
DEP_CFLAGS=$(pkg-config --cflags $PKGS)
DEP_LIBS="$(pkg-config --libs $PKGS) -lm -lpthread"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -g -O1 -Wall -Wextra -D_GNU_SOURCE -fno-math-errno $SAN -include autoconfig.h -I$build -I$root/src -I$root/src/backend -I$root/src/model -I$root/src/io -I$root/src/train -I$root/src/report $DEP_CFLAGS"

# Source lists as the Makefile has them, so new library files are picked up.
sources() {
    sed -n "/^$1 *=/,/[^\\\\]\$/p" "$root/Makefile.am" | tr ' \\\t' '\n\n\n' | grep '\.c$'
}

# The two macros the library takes from configure's autoconfig.h.
write_autoconfig() {
    local version
    version=$(sed -n 's/^AC_INIT(\[ctrain\], \[\([^]]*\)\].*/\1/p' "$root/configure.ac")
    {
        echo "/* written by scripts/fuzz.sh */"
        echo "#define PACKAGE_VERSION \"$version\""
        echo "#define CT_HAVE_OPENBLAS 1"
    } > "$build/autoconfig.h.new"
    cmp -s "$build/autoconfig.h.new" "$build/autoconfig.h" 2>/dev/null \
        && rm "$build/autoconfig.h.new" || mv "$build/autoconfig.h.new" "$build/autoconfig.h"
}

# Compiles $1 (relative to the root) to an object unless it is up to date.
compile() {
    local src=$1 obj=$build/obj/${1%.c}.o extra=$2
    mkdir -p "$(dirname "$obj")"
    if [ ! -f "$obj" ] || [ "$root/$src" -nt "$obj" ] || [ "$build/autoconfig.h" -nt "$obj" ] \
        || [ -n "$(find "$root/src" "$root/layers" "$root/optimizers" -name '*.h' -newer "$obj" 2>/dev/null | head -1)" ]; then
        nice -n 19 "$CC" $CFLAGS $extra -c "$root/$src" -o "$obj" || return 1
    fi
}

do_build() {
    mkdir -p "$build/obj"
    write_autoconfig
    local lib cli f
    lib=$(sources libctrain_core_la_SOURCES)
    # The CLI builds its own copy of some library files (text.c); link them once.
    cli=$(sources ctrain_SOURCES | grep -vxF -e "$lib")
    echo "fuzz.sh: compiling the library with $CC into $build"
    export -f compile
    export CC CFLAGS build root
    printf '%s\n' $lib | xargs -P 2 -I{} bash -c 'compile {} -fsanitize=fuzzer-no-link'
    printf '%s\n' $cli | xargs -P 2 -I{} bash -c 'compile {} ""'
    local libobjs="" cliobjs=""
    for f in $lib; do libobjs="$libobjs $build/obj/${f%.c}.o"; done
    for f in $cli; do cliobjs="$cliobjs $build/obj/${f%.c}.o"; done
    # A sanitized CLI for fuzz/make_seeds.sh.
    nice -n 19 "$CC" $SAN $cliobjs $libobjs $DEP_LIBS -o "$build/ctrain"
    for t in config dataset weights; do
        nice -n 19 "$CC" $CFLAGS -fsanitize=fuzzer -DFZ_MODEL_DIR="\"$root/fuzz/models\"" \
            "$root/fuzz/fuzz_$t.c" $libobjs $DEP_LIBS -o "$build/fuzz_$t"
    done
    echo "fuzz.sh: built $build/fuzz_config, fuzz_dataset, fuzz_weights"
}

# An HDF5 target's input may hang HDF5 in several of ctrain's child processes (a file
# opened with and without y, weights and a checkpoint), each given up after ctrain's own
# limit (5 to 10 s), so those targets get 60 s per input before libFuzzer calls it a hang.
flags_for() {
    case $1 in
    config) echo "-dict=$root/fuzz/config.dict -max_len=8192 -timeout=25" ;;
    *) echo "-dict=$root/fuzz/hdf5.dict -max_len=20000 -timeout=60" ;;
    esac
}

# Runs one target for time_per seconds, restarting after each crash; prints a summary.
run_target() {
    local t=$1 corpus=$root/fuzz/corpus-$1 crashes=$root/fuzz/crashes-$1 logs=$root/fuzz/logs-$1
    mkdir -p "$corpus" "$crashes" "$logs"
    local start end now left execs=0 runs=0 cov=0 ft=0 log n
    start=$(date +%s)
    end=$((start + time_per))
    while now=$(date +%s); [ "$now" -lt "$end" ]; do
        left=$((end - now))
        runs=$((runs + 1))
        log=$logs/run-$(date +%Y%m%d-%H%M%S)-$runs.log
        # shellcheck disable=SC2046
        nice -n 19 "$build/fuzz_$t" "$corpus" "$root/fuzz/seeds-gen/$t" $(flags_for "$t") \
            -max_total_time="$left" -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$crashes/" ${FUZZ_FLAGS:-} 2>&1 \
            | grep -av --line-buffered 'AddressSanitizer failed to allocate' > "$log" || true
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        execs=$((execs + ${n:-0}))
        n=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
        [ -n "$n" ] && [ "$n" -gt "$cov" ] && cov=$n
        n=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
        [ -n "$n" ] && [ "$n" -gt "$ft" ] && ft=$n
        # A run that ends early without writing an artifact is broken, not a finding.
        if ! grep -q 'Test unit written to' "$log" && [ "$(date +%s)" -lt "$((end - 5))" ]; then
            echo "fuzz.sh: $t stopped early; see $log" >&2
            tail -5 "$log" >&2
            break
        fi
    done
    # slow-unit-* files only report an input that took over 10 s once; they are not failures.
    local found slow
    found=$(find "$crashes" -type f ! -name 'slow-unit-*' | wc -l)
    slow=$(find "$crashes" -type f -name 'slow-unit-*' | wc -l)
    printf 'fuzz.sh: %-8s %6ds  executions %-10d cov: %-6d ft: %-6d corpus %-6d runs %d  crashes %d, slow %d (in %s)\n' \
        "$t" "$(( $(date +%s) - start ))" "$execs" "$cov" "$ft" "$(find "$corpus" -type f | wc -l)" \
        "$runs" "$found" "$slow" "$crashes"
}

do_build
[ "$build_only" = 1 ] && exit 0
if [ ! -d "$root/fuzz/seeds-gen" ]; then
    "$root/fuzz/make_seeds.sh" "$build/ctrain" "$root/fuzz/seeds-gen.part"
    mv "$root/fuzz/seeds-gen.part" "$root/fuzz/seeds-gen"
fi

export -f run_target flags_for
export time_per
running=0
for t in "${targets[@]}"; do
    run_target "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
