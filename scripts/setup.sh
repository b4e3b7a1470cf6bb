#!/bin/sh
# setup.sh - the one place that knows what ctrain needs on Debian 12, and how to build it,
# prepare the example data, train the example and run the tests.
#
#   scripts/setup.sh            install, build, prepare data, train configs/fashion_mnist_mlp.yaml
#   scripts/setup.sh --test     install, build, run the whole test suite (make check); the
#                               Keras round trip (tests/test_keras.sh) and the TensorBoard
#                               reader (tests/test_tensorboard.sh) use tests/.venv, made
#                               here from PyPI (Keras on JAX's CPU build, TensorBoard), and
#                               are skipped, saying so, where PyPI cannot be reached
#   scripts/setup.sh --sanitize install, then build a copy of the sources in build-sanitize/
#                               with AddressSanitizer and UBSan and run the suite there
#   scripts/setup.sh --bench [ARGS]  install (with what the benchmark needs), build, prepare
#                               data, then bench/run.sh ARGS: ctrain against PyTorch and Keras
#   scripts/setup.sh --deps     only install the Debian packages
#   scripts/setup.sh --build    only (re)build
#   scripts/setup.sh --data     only prepare data/fashion-mnist.h5 (Fashion-MNIST, plus the
#                               datasets scripts/fashion_extras.py derives from it), and
#                               data/fortunes.txt and data/fortunes-char.h5 (Debian's
#                               fortunes: English text for sequence models), and
#                               data/fortunes-topics.h5 (fortunes labelled by topic)
set -eu

PACKAGES="build-essential autoconf automake libtool pkg-config \
libyaml-dev libcjson-dev libopenblas-dev libhdf5-dev zlib1g-dev libpng-dev libjpeg-dev check \
libprotobuf-c-dev protobuf-c-compiler libcairo2-dev libgraphviz-dev libmicrohttpd-dev \
hdf5-tools dataset-fashion-mnist fortunes fortunes-min valgrind python3-numpy python3-h5py \
python3-venv python3-pip"

# What bench/run.sh needs besides: a virtual environment for the peers (from PyPI), and
# /usr/bin/time for peak memory; bench/serve.sh asks its servers with curl.
BENCH_PACKAGES="python3 python3-venv python3-pip time curl"

# What the test suite needs besides: a headless browser that renders the run report, and
# Open MPI, which the build then uses for fit on several processes (tests/test_mpi.sh).
TEST_PACKAGES="chromium openmpi-bin libopenmpi-dev"

cd "$(dirname "$0")/.."
JOBS=$(nproc 2>/dev/null || echo 2)

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

deps() {
    missing=""
    for p in $PACKAGES ${EXTRA_PACKAGES:-}; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "Installing:$missing"
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
    fi
}

build() {
    [ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi
    [ -f Makefile ] && [ Makefile -nt Makefile.am ] && [ Makefile -nt configure ] || ./configure
    # Open MPI installed since the last configure (--test adds it): configure again, with the
    # options it was given, so the suite's build trains on several processes.
    if [ -f autoconfig.h ] && ! grep -q "define CT_HAVE_MPI 1" autoconfig.h &&
        pkg-config --exists ompi-c 2>/dev/null && ! grep -q "without-mpi" config.status; then
        ./config.status --recheck && ./config.status
    fi
    make -j"$JOBS"
}

# A small virtual environment for tests/test_keras.sh (Keras reads ctrain's weights files)
# and tests/test_tensorboard.sh (TensorBoard reads its event files).
peers() {
    # Keras on JAX: without KERAS_BACKEND, keras.json (made by any earlier Keras, such as
    # the benchmark's on TensorFlow) may name a backend this environment lacks.
    if [ -x tests/.venv/bin/python ] && KERAS_BACKEND=jax tests/.venv/bin/python -c "import keras, jax, h5py, tensorboard, onnx, onnxruntime" 2>/dev/null; then
        hub
        return 0
    fi
    echo "Installing keras, jax, h5py, tensorboard, onnx and onnxruntime from PyPI into tests/.venv (for tests/test_keras.sh, test_tensorboard.sh and test_onnx.sh)"
    if ! { /usr/bin/python3 -m venv tests/.venv && tests/.venv/bin/pip install --quiet keras jax h5py tensorboard onnx onnxruntime; }; then
        echo "setup.sh: tests/.venv could not be made from PyPI; tests/test_keras.sh, test_tensorboard.sh and test_onnx.sh will be skipped" >&2
    fi
    hub
}

# keras_hub, whose TokenAndPositionEmbedding and PositionEmbedding Keras loads the exported
# transformer with (tests/test_keras_io.sh). Without its declared dependencies: one of them,
# tensorflow-text, brings TensorFlow, and importing its layers needs only tokenizers and
# regex.
hub() {
    [ -x tests/.venv/bin/python ] || return 0
    KERAS_BACKEND=jax tests/.venv/bin/python -c "import keras_hub" 2>/dev/null && return 0
    echo "Installing keras-hub (without its dependencies), tokenizers and regex from PyPI into tests/.venv (for tests/test_keras_io.sh)"
    tests/.venv/bin/pip install --quiet --no-deps keras-hub tokenizers regex ||
        echo "setup.sh: keras-hub could not be installed; tests/test_keras_io.sh skips loading the transformer in Keras" >&2
}

data() {
    src=/usr/share/datasets/fashion-mnist
    mkdir -p data
    if [ ! -f data/fashion-mnist.h5 ]; then
        # written under a temporary name (a stopped run leaves no half file); the name
        # reported is the file's own
        ./ctrain data import-idx --images $src/train-images-idx3-ubyte.gz \
            --labels $src/train-labels-idx1-ubyte.gz --group train \
            -o data/fashion-mnist.h5.part >/dev/null
        ./ctrain data import-idx --images $src/t10k-images-idx3-ubyte.gz \
            --labels $src/t10k-labels-idx1-ubyte.gz --group test \
            -o data/fashion-mnist.h5.part >/dev/null
        mv data/fashion-mnist.h5.part data/fashion-mnist.h5
        echo "Wrote train/images, train/labels, test/images and test/labels to data/fashion-mnist.h5"
    fi
    # The multi-input and multi-output examples' data (image features, a footwear label,
    # image pairs) and the transfer-learning example's (classes 0-4 and 5-9 apart), added
    # once; Debian's python3 has the numpy and h5py installed above.
    for d in train/meta train/shoe test/meta test/shoe pairs_train/left pairs_train/right \
             pairs_train/same pairs_test/left pairs_test/right pairs_test/same \
             classes_0_4/train/labels classes_0_4/test/labels classes_5_9/train/labels \
             classes_5_9/test/labels train/classes test/classes classes_0_4/test/classes \
             classes_5_9/test/classes; do
        if ! h5ls "data/fashion-mnist.h5/$d" >/dev/null 2>&1; then
            /usr/bin/python3 scripts/fashion_extras.py data/fashion-mnist.h5
            break
        fi
    done
    fortunes_data
}

# The fortune files (text only: not the .dat indexes or the .u8 links to the same text)
# in a fixed order, with the "%" line between two fortunes made a blank line; then its
# characters as windows of 100 with their next characters (ctrain data import-text).
# And four of the files' fortunes, one a line labelled with its file's name
# (scripts/fortune_topics.py), as rows of 100 word ids with a label each.
fortunes_data() {
    src=/usr/share/games/fortunes
    if { [ ! -f data/fortunes.txt ] || [ ! -f data/fortunes-topics.h5 ]; } && [ ! -d "$src" ]; then
        echo "setup.sh: $src is missing: install the fortunes packages (scripts/setup.sh --deps)" >&2
        return 1
    fi
    if [ ! -f data/fortunes.txt ]; then
        find "$src" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' -print0 \
            | LC_ALL=C sort -z | xargs -0 cat | sed 's/^%$//' >data/fortunes.txt.part
        mv data/fortunes.txt.part data/fortunes.txt
    fi
    if [ ! -f data/fortunes-char.h5 ]; then
        ./ctrain data import-text data/fortunes.txt --level char --seq-len 100 \
            -o data/fortunes-char.h5
    fi
    if [ ! -f data/fortunes-topics.h5 ]; then
        /usr/bin/python3 scripts/fortune_topics.py data/fortunes-topics.csv "$src"
        rm -f data/fortunes-topics.h5.part
        said=$(./ctrain data import-text data/fortunes-topics.csv --labels --level word \
            --seq-len 100 --vocab-size 10000 -o data/fortunes-topics.h5.part)
        mv data/fortunes-topics.h5.part data/fortunes-topics.h5
        printf '%s\n' "$said" | sed 's|fortunes-topics\.h5\.part|fortunes-topics.h5|g'
    fi
}

# The sanitizer build gets its own copy of the sources (the top folder is configured in
# place, which rules out a second build beside it). Any report fails the run.
sanitize() {
    rm -rf build-sanitize
    mkdir build-sanitize
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -C build-sanitize -xf -
    else
        tar --exclude=./build-sanitize --exclude=./data -cf - . | tar -C build-sanitize -xf -
        (cd build-sanitize && make distclean >/dev/null 2>&1 || true)
    fi
    cd build-sanitize
    autoreconf -fi
    # The CUDA runtime's own start-up allocations would read as leaks; the GPU module is
    # left out of this build (tests/test_cuda skips).
    ./configure --enable-sanitizers --without-cuda
    make -j"$JOBS"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 make -j"$JOBS" check
}

case "${1:-all}" in
    all) deps; build; data; ./ctrain fit configs/fashion_mnist_mlp.yaml ;;
    --test) EXTRA_PACKAGES=$TEST_PACKAGES; deps; build; peers; make -j"$JOBS" check ;;
    --sanitize) EXTRA_PACKAGES=$TEST_PACKAGES; deps; sanitize ;;
    --bench) shift; EXTRA_PACKAGES=$BENCH_PACKAGES; deps; build; data; exec bench/run.sh "$@" ;;
    --deps) deps ;;
    --build) build ;;
    --data) data ;;
    *) echo "usage: scripts/setup.sh [--test | --sanitize | --bench [ARGS] | --deps | --build | --data]" >&2; exit 2 ;;
esac
