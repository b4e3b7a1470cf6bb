# shlib.sh - sourced by the shell tests (test_blas.sh, test_alloc.sh, test_valgrind.sh):
# counters, a temporary folder removed at exit, the program to run, and small data.
# The caller sets NAME (its prefix in messages) before sourcing.
top=${CT_BUILDDIR:-.}
ctrain="$top/ctrain"
tmp=$(mktemp -d "/tmp/ctrain-$NAME-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# Runs the program itself rather than libtool's wrapper script, whose shell would be
# counted by an allocation counter or checked by valgrind too.
use_program() {
    if [ -x "$top/.libs/ctrain" ]; then
        ctrain="$top/.libs/ctrain"
        LD_LIBRARY_PATH="$top/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export LD_LIBRARY_PATH
    fi
}

# random_data ROWS COLS SEED OUT.h5: uniform features plus a label column (row mod 4)
# imported as train/x and train/y.
random_data() {
    awk -v n="$1" -v m="$2" -v seed="$3" 'BEGIN { srand(seed); for (i = 0; i < n; i++) {
        line = ""; for (j = 0; j < m; j++) line = line sprintf("%.4f,", rand());
        print line (i % 4) } }' >"$4.csv"
    "$ctrain" data import-csv "$4.csv" -o "$4" >/dev/null || bad "importing $4.csv failed"
}

# Sets py to a Python with Keras, h5py and numpy (CT_KERAS_PYTHON, else tests/.venv, else
# bench/.venv) and exports the Keras backend it has (chosen before Keras is imported); with
# none, says so and skips the test (exit 77).
keras_python() {
    py=${CT_KERAS_PYTHON:-}
    for p in "${CT_SRCDIR:-.}/tests/.venv/bin/python" "${CT_SRCDIR:-.}/bench/.venv/bin/python"; do
        [ -z "$py" ] && [ -x "$p" ] && py=$p
    done
    [ -n "$py" ] && KERAS_BACKEND=${KERAS_BACKEND:-$("$py" -c "import importlib.util as u
print(next(b for b in ('tensorflow', 'jax', 'torch') if u.find_spec(b)))" 2>/dev/null)}
    export KERAS_BACKEND TF_CPP_MIN_LOG_LEVEL=3
    if [ -z "$py" ] || ! "$py" -c "import keras, h5py, numpy" >/dev/null 2>&1; then
        echo "$NAME: no Python with Keras (tests/.venv, made by scripts/setup.sh --test, or CT_KERAS_PYTHON); skipped"
        exit 77
    fi
}

# Prints the counters and exits with the suite's status.
finish() {
    echo "$NAME: $passed passed, $failed failed${1:+ ($1)}"
    [ "$failed" = 0 ]
    exit
}
