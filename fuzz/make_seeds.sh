#!/bin/bash
# make_seeds.sh - writes the seed inputs of the three fuzz targets.
#
#   fuzz/make_seeds.sh CTRAIN OUT
#
# CTRAIN is a built ctrain binary; OUT gets config/, dataset/ and weights/:
#   config   configs/*.yaml, tests/configs/**, fuzz/models/*.yaml, fuzz/seeds/config/*
#   dataset  HDF5 files with train/images and train/labels: from `ctrain data import-idx`
#            and `import-csv`, and (when python3 has h5py) variants in type, layout, chunking,
#            compression, links and file format
#   weights  weights.h5 and checkpoint.h5 of a one-epoch `ctrain fit` of each model in
#            fuzz/models, and (with h5py) files in Keras's other attribute layouts
set -eu

[ $# -eq 2 ] || { echo "usage: fuzz/make_seeds.sh CTRAIN OUT" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
ctrain=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
out=$2
mkdir -p "$out/config" "$out/dataset" "$out/weights"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ctrain-seeds-XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- config -------------------------------------------------------------------------
n=0
while IFS= read -r f; do
    n=$((n + 1))
    cp "$f" "$out/config/$(printf '%03d' $n)-$(basename "$f")"
done < <(find "$root/configs" "$root/tests/configs" "$root/fuzz/models" "$root/fuzz/seeds/config" \
              -type f 2>/dev/null | sort)

# ---- dataset ------------------------------------------------------------------------
# IDX: magic (0, 0, type 0x08 = uint8, rank), big-endian dims, then the bytes.
idx() {  # idx FILE RANK DIM... -- BYTES (count given by the dims)
    local file=$1 rank=$2
    shift 2
    {
        printf '\0\0\010'"\\$(printf '%03o' "$rank")"
        for ((i = 0; i < rank; i++)); do
            printf "\\$(printf '%03o' $(($1 >> 24 & 255)))\\$(printf '%03o' $(($1 >> 16 & 255)))"
            printf "\\$(printf '%03o' $(($1 >> 8 & 255)))\\$(printf '%03o' $(($1 & 255)))"
            shift
        done
        head -c "$1" /dev/urandom
    } > "$file"
}
idx "$work/img" 3 6 4 4 96
{ printf '\0\0\010\001\0\0\0\006'; printf '\000\001\002\003\004\005'; } > "$work/lab"
"$ctrain" data import-idx --images "$work/img" --labels "$work/lab" -o "$out/dataset/idx.h5" >/dev/null
gzip -c "$work/img" > "$work/img.gz"
gzip -c "$work/lab" > "$work/lab.gz"
"$ctrain" data import-idx --images "$work/img.gz" --labels "$work/lab.gz" --group test \
    -o "$out/dataset/idx.h5" >/dev/null
printf '0.5,1,2,3\n1.5,0,0,1\n2.5,1,1,0\n' > "$work/d.csv"
"$ctrain" data import-csv "$work/d.csv" -o "$out/dataset/csv.h5" >/dev/null

# ---- weights ------------------------------------------------------------------------
awk 'BEGIN { srand(1); for (i = 0; i < 24; i++) { for (j = 0; j < 36; j++) printf "%.3f,", rand();
             print i % 3 } }' > "$work/seed.csv"
"$ctrain" data import-csv "$work/seed.csv" -o "$work/seeddata.h5" >/dev/null
for m in mlp cnn; do
    cp "$root/fuzz/models/$m.yaml" "$work/"
    (cd "$work" && "$ctrain" fit "$m.yaml" -o "run-$m" -q)
    cp "$work/run-$m/weights.h5" "$out/weights/$m-weights.h5"
    cp "$work/run-$m/checkpoint.h5" "$out/weights/$m-checkpoint.h5"
done

# ---- variants through h5py ----------------------------------------------------------
py=""
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import h5py' 2>/dev/null; then py=$p; break; fi
done
if [ -z "$py" ]; then
    echo "make_seeds.sh: no python3 with h5py; only the ctrain-made seeds were written" >&2
else
    "$py" "$root/fuzz/make_seeds.py" "$out" "$out/weights/mlp-weights.h5"
fi
echo "make_seeds.sh: $(find "$out/config" -type f | wc -l) config, $(find "$out/dataset" -type f | wc -l) dataset, $(find "$out/weights" -type f | wc -l) weights seeds in $out"
