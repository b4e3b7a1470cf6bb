#!/usr/bin/env bash
# bench/builds.sh - two builds of ctrain on the same experiments, run in turn, so a change
# can be judged by its speed and memory on this machine.
#
#   bench/builds.sh OLD_CTRAIN NEW_CTRAIN [--runs N] [--epochs N] [CONFIG...]
#
# Each config (default: the MLP and CNN examples) is trained --runs times (default 3) by
# each build, alternating, for --epochs epochs (default 2). Prints per build and config the
# median time per training step over all epochs but the first (the first warms caches
# and pages), the median peak RSS, and NEW/OLD ratios. Needs /usr/bin/time and the data
# (scripts/setup.sh --data).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 2 ] || { sed -n '4p' "$0" | sed 's/^#   /usage: /'; exit 2; }
old=$1 new=$2
shift 2
runs=3 epochs=2 configs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift ;;
        --epochs) epochs=$2; shift ;;
        *) configs+=("$1") ;;
    esac
    shift
done
[ ${#configs[@]} -gt 0 ] || configs=("$top/configs/fashion_mnist_mlp.yaml" "$top/configs/fashion_mnist_cnn.yaml")
[ -x /usr/bin/time ] || { echo "builds.sh: /usr/bin/time is missing (Debian: time)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Seconds per step of every epoch after the first, one per line, from lines-mode progress.
step_times() {
    sed -n 's/^Epoch \([0-9]*\)\/[0-9]* - [0-9]*\/[0-9]* - [^ ]* \([0-9.]*\)\(us\|ms\|s\)\/step.*/\1 \2 \3/p' "$1" |
        awk '$1 > 1 { v = $2; if ($3 == "us") v /= 1e6; else if ($3 == "ms") v /= 1e3; print v }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

printf '%-28s %-5s %14s %12s\n' config build "ms/step" "peak MiB"
for cfg in "${configs[@]}"; do
    name=$(basename "$cfg" .yaml)
    for r in $(seq "$runs"); do
        for b in old new; do
            bin=$old
            [ "$b" = new ] && bin=$new
            /usr/bin/time -f "%M" -o "$tmp/$name.$b.$r.rss" "$bin" fit "$cfg" --verbose 2 \
                --set fit.epochs="$epochs" -o "$tmp/run" --overwrite >"$tmp/$name.$b.$r.log"
            step_times "$tmp/$name.$b.$r.log" >>"$tmp/$name.$b.steps"
            tail -1 "$tmp/$name.$b.$r.rss" >>"$tmp/$name.$b.mem"
        done
    done
    for b in old new; do
        s=$(median <"$tmp/$name.$b.steps")
        m=$(median <"$tmp/$name.$b.mem")
        printf '%-28s %-5s %14.3f %12.1f\n' "$name" "$b" "$(awk -v s="$s" 'BEGIN { print s * 1e3 }')" \
            "$(awk -v m="$m" 'BEGIN { print m / 1024 }')"
        eval "${b}_s=$s ${b}_m=$m"
    done
    awk -v a="$old_s" -v b="$new_s" -v c="$old_m" -v d="$new_m" -v n="$name" \
        'BEGIN { printf "%-28s new/old: step time %.3f, peak RSS %.3f\n", n, b / a, d / c }'
done
