#!/bin/sh
# test_serve.sh - ctrain serve as TensorFlow Serving's REST clients use it: status and
# metadata; predictions in the row and columnar formats from 16 concurrent clients equal
# ctrain predict's, for a CNN and for a model of two inputs and two outputs; every kind
# of bad request gets its 4xx answer and leaves the server serving; SIGTERM answers the
# request in flight, then the server exits 0; changed weights take over between batches,
# and weights that do not load leave the old model serving.
NAME=serve
. "${CT_SRCDIR:-.}/tests/shlib.sh"
py=/usr/bin/python3
if ! $py -c 'import numpy, h5py' 2>/dev/null; then
    echo "serve: SKIP: /usr/bin/python3 lacks numpy or h5py (scripts/setup.sh --deps installs them)"
    exit 77
fi

$py - "$tmp" <<'EOF' || bad "writing the data failed"
import sys, numpy as np, h5py
rng = np.random.default_rng(11)
with h5py.File(sys.argv[1] + "/img.h5", "w") as f:
    f["x"] = rng.integers(0, 255, size=(300, 8, 8, 1)).astype("u1")
    f["y"] = rng.integers(0, 3, size=300).astype("u1")
with h5py.File(sys.argv[1] + "/two.h5", "w") as f:
    f["a"] = rng.normal(size=(200, 4)).astype("f4")
    f["b"] = rng.normal(size=(200, 3)).astype("f4")
    f["y1"] = rng.integers(0, 2, size=200).astype("u1")
    f["y2"] = rng.normal(size=(200, 2)).astype("f4")
EOF
cat >"$tmp/cnn.yaml" <<EOF
name: cnn
data: {train: {path: $tmp/img.h5}, scale: 0.00392156862745098}
model:
  input_shape: [8, 8, 1]
  layers:
    - {type: conv2d, filters: 4, kernel_size: 3, activation: relu}
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 1, batch_size: 16}
EOF
cat >"$tmp/two.yaml" <<EOF
name: two
data: {train: {path: $tmp/two.h5, x: {a: a, b: b}, y: {cls: y1, reg: y2}}}
model:
  inputs: {a: {shape: [4]}, b: {shape: [3]}}
  layers:
    - {name: ab, type: concatenate, inputs: [a, b]}
    - {name: h, type: dense, units: 8, activation: tanh}
    - {name: cls, type: dense, units: 2, activation: softmax, inputs: h}
    - {name: reg, type: dense, units: 2, inputs: h}
  outputs: [cls, reg]
compile: {optimizer: adam, loss: {cls: sparse_categorical_crossentropy, reg: mse}}
fit: {epochs: 1, batch_size: 16}
EOF
for m in cnn two; do
    "$ctrain" fit "$tmp/$m.yaml" -o "$tmp/$m" -q --no-report >"$tmp/$m.fit" 2>&1 || bad "$m: fit failed: $(cat "$tmp/$m.fit")"
done
"$ctrain" predict "$tmp/cnn.yaml" --weights "$tmp/cnn/weights.h5" --input "$tmp/img.h5" \
    -o "$tmp/cnn-pred.h5" >/dev/null 2>&1 || bad "cnn: predict failed"
"$ctrain" predict "$tmp/two.yaml" --weights "$tmp/two/weights.h5" --input "$tmp/two.h5" \
    -o "$tmp/two-pred.h5" >/dev/null 2>&1 || bad "two: predict failed"

# start RUN [OPTIONS]: a server on a free port; sets pid and port.
start() {
    run=$1
    shift
    : >"$tmp/$run.out" # emptied here: the server's own redirection may come after the read
    "$ctrain" serve "$tmp/$run" --port 0 "$@" >>"$tmp/$run.out" 2>"$tmp/$run.log" &
    pid=$!
    port=""
    for i in $(seq 100); do
        port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/$run.out")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { bad "$run: the server did not start: $(cat "$tmp/$run.log")"; return 1; }
}

start cnn --max-body 2000000 || finish
$py - "$tmp" "$port" <<'EOF' && ok || bad "the CNN's answers"
import sys, json, threading, urllib.request, urllib.error, numpy as np, h5py
d, port = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/v1/models/cnn"
x = h5py.File(d + "/img.h5")["x"][:]
want = h5py.File(d + "/cnn-pred.h5")["predictions"][:]

def call(path, body=None, method=None):
    req = urllib.request.Request(base + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

s, st = call("")
assert s == 200 and st["model_version_status"][0]["state"] == "AVAILABLE", (s, st)
s, md = call("/metadata")
sig = md["metadata"]["signature_def"]["signature_def"]["serving_default"]
assert [d["size"] for d in sig["inputs"]["input_layer"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"], sig

errors = []
def client(c):
    rng = np.random.default_rng(c)
    for i in range(8):
        rows = np.sort(rng.choice(len(x), size=int(rng.integers(1, 6)), replace=False))
        if i % 2:
            s, r = call(":predict", json.dumps({"inputs": x[rows].tolist()}).encode())
            got = np.array(r.get("outputs"))
        else:
            s, r = call(":predict", json.dumps({"instances": x[rows].tolist()}).encode())
            got = np.array(r.get("predictions"))
        if s != 200 or got.shape != want[rows].shape or np.abs(got - want[rows]).max() > 1e-5:
            errors.append((c, i, s, r))
threads = [threading.Thread(target=client, args=(c,)) for c in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
assert not errors, errors[:3]

bad = [  # (path, body, method, status, words in the error)
    (":predict", b"{bad", None, 400, "not JSON"),
    (":predict", b'{"instances": [[1, 2]]}', None, 400, "expected 8 values on axis 1, got 2"),
    (":predict", b'{"instances": []}', None, 400, "non-empty list"),
    (":predict", b'{"rows": 3}', None, 400, "\"instances\""),
    (":predict", json.dumps({"instances": [[[["a"]] * 8] * 8]}).encode(), None, 400, "expected a number"),
    (":predict", b'{"instances": [1], "inputs": [1]}', None, 400, "not both"),
    (":predict", b"[" + b"1," * 1100000 + b"1]", None, 413, "larger than the 2000000 bytes"),
    (":predict", None, "GET", 405, "takes POST"),
    ("/metadata", b"{}", None, 405, "takes GET"),
    (":classify", b"{}", None, 404, "no such path"),
]
for path, body, method, status, words in bad:
    s, r = call(path, body, method)
    assert s == status and words in r["error"], (path, s, r)
s, r = call("", None)
other = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/nope:predict", data=b"{}")
try:
    urllib.request.urlopen(other)
    raise AssertionError("an unknown model was answered")
except urllib.error.HTTPError as e:
    assert e.code == 404 and "no model 'nope'" in json.loads(e.read())["error"]
# still serving after all that
s, r = call(":predict", json.dumps({"instances": x[:2].tolist()}).encode())
assert s == 200 and np.abs(np.array(r["predictions"]) - want[:2]).max() <= 1e-5
EOF
grep -q "POST /v1/models/cnn:predict 200" "$tmp/cnn.log" && ok || bad "no request log line: $(head -3 "$tmp/cnn.log")"

# SIGTERM with a large request in flight: it is answered, then the server exits 0.
$py - "$port" "$tmp" "$pid" <<'EOF' && ok || bad "the shutdown"
import sys, json, os, signal, threading, time, urllib.request, numpy as np
port, d, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = json.dumps({"instances": np.zeros((3000, 8, 8, 1)).tolist()}).encode()
result = {}
def big():
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/cnn:predict", data=body)
    with urllib.request.urlopen(req, timeout=60) as r:
        result["status"] = r.status
        result["rows"] = len(json.loads(r.read())["predictions"])
t = threading.Thread(target=big)
t.start()
time.sleep(0.3)
os.kill(pid, signal.SIGTERM)
t.join()
assert result == {"status": 200, "rows": 3000}, result
EOF
for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    bad "the server still runs 15 s after SIGTERM"
    kill -9 "$pid"
else
    wait "$pid" && ok || bad "the server exited $? after SIGTERM"
fi
grep -q "^Stopped" "$tmp/cnn.out" && ok || bad "no 'Stopped': $(cat "$tmp/cnn.out")"

# Two inputs and two outputs, in both formats.
start two -q || finish
$py - "$tmp" "$port" <<'EOF' && ok || bad "the two-input model's answers"
import sys, json, urllib.request, numpy as np, h5py
d, port = sys.argv[1], sys.argv[2]
f, p = h5py.File(d + "/two.h5"), h5py.File(d + "/two-pred.h5")
a, b, cls, reg = f["a"][:5], f["b"][:5], p["cls"][:5], p["reg"][:5]
def call(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/two:predict",
                                 data=json.dumps(body).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())
rows = call({"instances": [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(5)]})
got_cls = np.array([r["cls"] for r in rows["predictions"]])
got_reg = np.array([r["reg"] for r in rows["predictions"]])
assert np.abs(got_cls - cls).max() <= 1e-5 and np.abs(got_reg - reg).max() <= 1e-5
cols = call({"inputs": {"a": a.tolist(), "b": b.tolist()}})["outputs"]
assert np.abs(np.array(cols["cls"]) - cls).max() <= 1e-5
assert np.abs(np.array(cols["reg"]) - reg).max() <= 1e-5
EOF
kill -TERM "$pid"
wait "$pid" && ok || bad "the second server exited $?"

# Reloading. A second fit's weights replace the served ones by a rename while 8 clients
# keep asking: every answer is the old model's or the new one's, whole; once the status
# shows version 2, the new one's. A damaged file, another model's weights and a file
# caught half written each leave version 2 serving and log one line naming the file; the
# finished write becomes version 3.
"$ctrain" fit "$tmp/cnn.yaml" -o "$tmp/cnn2" -q --no-report --set seed=2 >"$tmp/cnn2.fit" 2>&1 ||
    bad "cnn2: fit failed: $(cat "$tmp/cnn2.fit")"
"$ctrain" predict "$tmp/cnn.yaml" --weights "$tmp/cnn2/weights.h5" --input "$tmp/img.h5" \
    -o "$tmp/cnn2-pred.h5" >/dev/null 2>&1 || bad "cnn2: predict failed"
mkdir "$tmp/live"
cp "$tmp/cnn/config.yaml" "$tmp/cnn/weights.h5" "$tmp/live/"
start live || finish
$py - "$tmp" "$port" <<'EOF' && ok || bad "reloading: $(grep -v ' 200 ' "$tmp/live.log")"
import sys, json, os, threading, time, urllib.request, urllib.error, numpy as np, h5py
d, port = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/v1/models/cnn"
x = h5py.File(d + "/img.h5")["x"][:]
old = h5py.File(d + "/cnn-pred.h5")["predictions"][:]
new = h5py.File(d + "/cnn2-pred.h5")["predictions"][:]
live = d + "/live/weights.h5"
assert np.abs(old - new).max() > 1e-3, "the two fits predict alike: the test cannot tell them apart"

def get(path=""):
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())

def version():
    s, st = get()
    assert s == 200 and st["model_version_status"][0]["state"] == "AVAILABLE", (s, st)
    return st["model_version_status"][0]["version"]

def which(rows):  # whose predictions the server gives for these rows
    req = urllib.request.Request(base + ":predict",
                                 data=json.dumps({"instances": x[rows].tolist()}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        got = np.array(json.loads(r.read())["predictions"])
    for name, want in (("old", old), ("new", new)):
        if np.abs(got - want[rows]).max() <= 1e-5:
            return name
    return "neither"

def replace(src, nbytes=None):  # written aside, renamed into place
    with open(src, "rb") as f:
        data = f.read()
    with open(live + ".tmp", "wb") as f:
        f.write(data[:nbytes])
    os.rename(live + ".tmp", live)

def wait_for(cond, what):
    for _ in range(300):
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("no " + what + " after 30 s")

def refusals():
    return [l for l in open(d + "/live.log") if l.startswith("Not reloaded: ")]

assert version() == "1" and which(list(range(8))) == "old"
answers, stop = [], threading.Event()
def client(c):
    rng = np.random.default_rng(c)
    while not stop.is_set():
        try:
            answers.append(which(list(rng.choice(len(x), size=4, replace=False))))
        except Exception as e:
            answers.append(repr(e))
# daemons: a failed check ends the script, not waits for them
threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(8)]
[t.start() for t in threads]
time.sleep(0.5)
replace(d + "/cnn2/weights.h5")
wait_for(lambda: version() == "2", "version 2")
after = [which(list(range(i, i + 5))) for i in range(0, 50, 5)]
time.sleep(0.5)
stop.set()
[t.join() for t in threads]
assert set(answers) <= {"old", "new"} and "old" in answers and "new" in answers, set(answers)
assert set(after) == {"new"}, after
assert get("/versions/2")[0] == 200
s, r = get("/versions/1")
assert s == 404 and "version 1 of 'cnn' is not serving; version 2 is" in r["error"], (s, r)

# A damaged file and another model's weights: one line each; version 2 goes on.
for src, nbytes, words in ((d + "/cnn/weights.h5", 3000, "is not an HDF5 file or is damaged"),
                           (d + "/two/weights.h5", None, "layers with weights but the model has 2")):
    n = len(refusals())
    replace(src, nbytes)
    wait_for(lambda: len(refusals()) > n, "line for " + src)
    line = refusals()[-1]
    assert live in line and words in line and "(still serving version 2)" in line, line
    assert len(refusals()) == n + 1 and version() == "2" and which(list(range(20))) == "new"

# Half written in place: refused; the write finished: version 3, the first fit's weights.
with open(d + "/cnn/weights.h5", "rb") as f:
    data = f.read()
n = len(refusals())
with open(live, "wb") as f:
    f.write(data[:len(data) // 2])
    f.flush()
    wait_for(lambda: len(refusals()) > n, "line for the half-written file")
    assert version() == "2" and which(list(range(20))) == "new"
    f.write(data[len(data) // 2:])
wait_for(lambda: version() == "3", "version 3")
assert which(list(range(30))) == "old"
log = open(d + "/live.log").read()
assert log.count("Reloaded " + live + ": now serving version") == 2, log
EOF
kill -TERM "$pid"
wait "$pid" && ok || bad "the reloading server exited $?"

# --no-reload: the file changes, the model does not.
cp "$tmp/cnn/weights.h5" "$tmp/live/weights.h5"
start live --no-reload || finish
grep -q "^Reloading" "$tmp/live.out" && bad "--no-reload still says it reloads"
$py - "$tmp" "$port" <<'EOF' && ok || bad "--no-reload"
import sys, json, os, shutil, time, urllib.request, numpy as np, h5py
d, port = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/v1/models/cnn"
x = h5py.File(d + "/img.h5")["x"][:8]
old = h5py.File(d + "/cnn-pred.h5")["predictions"][:8]
shutil.copy(d + "/cnn2/weights.h5", d + "/live/w.tmp")
os.rename(d + "/live/w.tmp", d + "/live/weights.h5")
time.sleep(3)  # three looks of a server that reloads
with urllib.request.urlopen(base, timeout=30) as r:
    assert json.loads(r.read())["model_version_status"][0]["version"] == "1"
req = urllib.request.Request(base + ":predict", data=json.dumps({"instances": x.tolist()}).encode())
with urllib.request.urlopen(req, timeout=30) as r:
    assert np.abs(np.array(json.loads(r.read())["predictions"]) - old).max() <= 1e-5
EOF
kill -TERM "$pid"
wait "$pid"

# Start-up errors: a port in use, a bad host.
start cnn || finish
out=$(timeout 30 "$ctrain" serve "$tmp/cnn" --port "$port" 2>&1) && bad "a second server on port $port started"
printf '%s' "$out" | grep -qF "cannot listen on 127.0.0.1:$port" && ok || bad "the port in use: $out"
kill -TERM "$pid"
wait "$pid"
out=$(timeout 30 "$ctrain" serve "$tmp/cnn" --host 300.1.2.3 2>&1) && bad "a bad host was taken"
printf '%s' "$out" | grep -qF "not an IPv4 address" && ok || bad "the bad host: $out"
finish
