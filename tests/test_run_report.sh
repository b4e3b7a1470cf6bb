#!/bin/sh
# test_run_report.sh - the run report: fit writes report.html; its confusion matrix agrees with
# the predictions `ctrain predict` writes; `ctrain report` refuses what is not a finished
# run; and the page renders in a real headless browser (chromium) without console errors.
NAME=report
. "${CT_SRCDIR:-.}/tests/shlib.sh"
py=/usr/bin/python3

if ! $py -c 'import numpy, h5py' 2>/dev/null; then
    echo "report: SKIP: /usr/bin/python3 lacks numpy or h5py (scripts/setup.sh --deps installs them)"
    exit 77
fi

# 8x8 grey images of three patterns (top rows, left columns, the diagonal) with noise, and
# the classes' names beside the test labels; a tenth of the test labels are wrong on
# purpose, so some test images are misclassified.
$py - "$tmp/img.h5" <<'EOF' || bad "writing the images failed"
import sys, numpy as np, h5py
rng = np.random.default_rng(3)
def make(n):
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 8, 8, 1))
    for i, c in enumerate(y):
        if c == 0: x[i, :3, :, 0] += 180
        elif c == 1: x[i, :, :3, 0] += 180
        else: x[i, np.arange(8), np.arange(8), 0] += 180
    return x.astype(np.uint8), y.astype(np.uint8)
with h5py.File(sys.argv[1], "w") as f:
    f["train/images"], f["train/labels"] = make(300)
    x, y = make(90)
    y[::10] = (y[::10] + 1) % 3
    f["test/images"], f["test/labels"] = x, y
    f["test/classes"] = np.array([b"top", b"left", b"diagonal"])
EOF
cat >"$tmp/exp.yaml" <<EOF
name: patterns
seed: 2
data:
  train: {path: $tmp/img.h5, x: train/images, y: train/labels}
  test: {path: $tmp/img.h5, x: test/images, y: test/labels}
  scale: 0.00392156862745098
model:
  input_shape: [8, 8, 1]
  layers:
    - {type: flatten}
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 5, batch_size: 30}
EOF

run="$tmp/run"
"$ctrain" fit "$tmp/exp.yaml" -o "$run" -v 2 >"$tmp/fit.out" 2>&1 || bad "fit failed: $(cat "$tmp/fit.out")"
grep -qF "Report: $run/report.html" "$tmp/fit.out" && ok || bad "fit did not say it wrote the report"
page="$run/report.html"
[ -s "$page" ] && ok || bad "fit wrote no $page"
for part in "<h2>Training history</h2>" "<h2>Test set</h2>" "Confusion matrix" "Per class" \
    "Misclassified test images" "<h2>Model</h2>" "<h2>Experiment</h2>" "name: patterns" \
    "<th>2 diagonal</th>" 'alt="learning curves" src="data:image/svg+xml;base64,' \
    "alt=\"the model's layers and connections\" src=\"data:image/svg+xml;base64,"; do
    grep -qF "$part" "$page" && ok || bad "the report lacks '$part'"
done

# The matrix in the page against one counted here from predict's output.
"$ctrain" predict "$tmp/exp.yaml" --weights "$run/weights.h5" --input "$tmp/img.h5" \
    --x test/images -o "$tmp/pred.h5" >/dev/null 2>&1 || bad "predict failed"
want=$($py - "$tmp/pred.h5" "$tmp/img.h5" <<'EOF'
import sys, numpy as np, h5py
p = h5py.File(sys.argv[1])["predictions"][:].argmax(1)
t = h5py.File(sys.argv[2])["test/labels"][:]
m = np.zeros((3, 3), int)
for a, b in zip(t, p): m[a, b] += 1
print(" ".join(str(v) for v in m.flatten()), int((p != t).sum()))
EOF
)
got=$($py - "$page" <<'EOF'
import sys, re
html = open(sys.argv[1]).read()
table = html.split('class="cm"')[1].split("</table>")[0]
cells = re.findall(r"<td[^>]*>(\d+)</td>", table)
print(" ".join(cells), html.count("<figure>"))
EOF
)
wrong=${want##* }
[ "$wrong" -gt 0 ] && ok || bad "no test image is misclassified, so the grid goes untested"
[ "$wrong" -gt 40 ] && want="${want% *} 40"
[ "$got" = "$want" ] && ok || bad "the report's matrix and pictures '$got', counted from predict '$want'"

# ctrain report writes the same page again, to -o as well.
"$ctrain" report "$run" -o "$tmp/again.html" >/dev/null 2>&1 && [ -s "$tmp/again.html" ] && ok ||
    bad "ctrain report -o failed"

# Not a finished run: clear errors, nothing written.
expect_fail() {
    pattern=$1
    shift
    out=$("$@" 2>&1) && bad "$* succeeded" && return
    printf '%s' "$out" | grep -qF -- "$pattern" && ok || bad "$*: expected '$pattern' in: $out"
}
mkdir -p "$tmp/empty"
expect_fail "has no config.yaml: not a run directory" "$ctrain" report "$tmp/empty"
expect_fail "is not a run directory" "$ctrain" report "$tmp/none"
cp -r "$run" "$tmp/unfinished" && rm "$tmp/unfinished/weights.h5"
expect_fail "has no weights.h5: the run has not finished" "$ctrain" report "$tmp/unfinished"
cp -r "$run" "$tmp/cut" && printf '5,0.5\n' >>"$tmp/cut/history.csv"
expect_fail "history.csv:7:6: 2 values where the header names 4 columns" "$ctrain" report "$tmp/cut"
[ ! -e "$tmp/cut/report.html.part" ] && ok || bad "a failed report left report.html.part"
rm "$tmp/cut/history.csv"
expect_fail "cannot read $tmp/cut/history.csv" "$ctrain" report "$tmp/cut"
expect_fail "cannot write $tmp/nodir/r.html" "$ctrain" report "$run" -o "$tmp/nodir/r.html"

# The page in a headless browser: it renders (a screenshot of the window's size, with
# more than a blank page's bytes) and its console stays free of errors. REPORT_SHOT=FILE keeps the screenshot.
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    finish "the browser check was skipped: chromium is not installed (scripts/setup.sh --test installs it)"
fi
shot=${REPORT_SHOT:-$tmp/shot.png}
timeout 120 "$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --enable-logging=stderr --v=0 --user-data-dir="$tmp/chromium" --window-size=1200,2400 \
    --screenshot="$shot" "file://$page" >"$tmp/browser.log" 2>&1 || bad "chromium failed: $(tail -5 "$tmp/browser.log")"
if grep -E "CONSOLE|Uncaught|Failed to load|ERR_" "$tmp/browser.log" | grep -v "dbus\|Fontconfig\|gpu\|GPU" >"$tmp/console.log"; then
    bad "the browser reported: $(cat "$tmp/console.log")"
else
    ok
fi
size=$($py - "$shot" <<'EOF'
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
w, h = struct.unpack(">II", data[16:24])
print(w, h)
EOF
)
[ "$size" = "1200 2400" ] && ok || bad "the screenshot is '$size', expected a 1200x2400 PNG"
[ "$(wc -c <"$shot")" -gt 20000 ] && ok || bad "the screenshot is nearly empty"
finish
