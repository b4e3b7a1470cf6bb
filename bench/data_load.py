#!/usr/bin/env python3
"""data_load.py - how fast ctrain reads HDF5 data, against h5py reading the same datasets.

    bench/data_load.py [--ctrain PATH] [--repeat N] [--keep DIR]

Writes Fashion-MNIST's training set (data/fashion-mnist.h5, from scripts/setup.sh --data)
the ways users write it: contiguous uint8, uint8 in chunks of 1000 images with gzip (as
h5py users often do), uint8 with h5py's automatic chunks and gzip, and the same as float32
(contiguous and gzip chunks). For each file it prints medians of N runs (default 3):

  h5py     h5py reading train/images and train/labels whole (f[...][:]), in this process
  check    `ctrain check` on an experiment using the file, less `ctrain check --no-data`
           (the process and model set-up): opening, and checking every value once
  open     in `ctrain fit --profile`: opening data.train and checking it before training
  load     in `ctrain fit --profile`: reading data.train into memory

and each ctrain figure as a ratio to h5py's. Needs Python with h5py and numpy (bench/.venv
from bench/run.sh, PEERS_PYTHON, or Debian's python3-h5py).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """name: data_load
seed: 1
data:
  train: {{path: {path}, x: train/images, y: train/labels}}
  validation_split: 0.1
  scale: {scale}
model:
  input_shape: [28, 28, 1]
  layers:
    - {{type: flatten}}
    - {{type: dense, units: 10, activation: softmax}}
compile: {{optimizer: adam, loss: sparse_categorical_crossentropy}}
fit: {{epochs: 1, batch_size: 128}}
"""


def variants(src, out):
    """Writes the test files; returns [(name, path, scale)]."""
    with h5py.File(src, "r") as f:
        x = f["train/images"][:]
        y = f["train/labels"][:]
    xf = (x.astype(np.float32) / 255.0).astype(np.float32)
    made = []
    specs = [
        ("uint8 contiguous", x, {}),
        ("uint8 gzip, chunks of 1000", x, {"chunks": (1000, 28, 28, 1), "compression": "gzip"}),
        ("uint8 gzip, h5py's chunks", x, {"chunks": True, "compression": "gzip"}),
        ("float32 contiguous", xf, {}),
        ("float32 gzip, chunks of 1000", xf, {"chunks": (1000, 28, 28, 1), "compression": "gzip"}),
    ]
    for i, (name, data, kw) in enumerate(specs):
        path = os.path.join(out, "v%d.h5" % i)
        with h5py.File(path, "w") as f:
            f.create_dataset("train/images", data=data, **kw)
            ykw = {"chunks": (1000,), "compression": "gzip"} if "compression" in kw else {}
            f.create_dataset("train/labels", data=y, **ykw)
        made.append((name, path, 1 / 255.0 if data.dtype == np.uint8 else 1.0))
    return made


def h5py_read(path):
    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        f["train/images"][:]
        f["train/labels"][:]
    return time.perf_counter() - t


def run_time(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def fit_phases(ctrain, cfg, run):
    out = subprocess.run([ctrain, "fit", cfg, "-o", run, "--overwrite", "-q", "--profile"],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"took ([0-9.]+) s to open and check and ([0-9.]+) s to load", out)
    if not m:
        sys.exit("data_load.py: no data timing in ctrain's profile:\n" + out)
    return float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ctrain", default=os.environ.get("CTRAIN", os.path.join(TOP, "ctrain")))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="write the files here and keep them")
    a = ap.parse_args()
    src = os.path.join(TOP, "data", "fashion-mnist.h5")
    if not os.path.exists(src):
        sys.exit("data_load.py: %s is missing (scripts/setup.sh --data)" % src)
    work = a.keep or tempfile.mkdtemp(prefix="ctrain-data-load-")
    os.makedirs(work, exist_ok=True)
    rows = []
    for name, path, scale in variants(src, work):
        cfg = path[:-3] + ".yaml"
        with open(cfg, "w") as f:
            f.write(CONFIG.format(path=path, scale=scale))
        run = path[:-3] + "-run"
        h, c, o, l = [], [], [], []
        for _ in range(a.repeat):
            h.append(h5py_read(path))
            base = run_time([a.ctrain, "check", cfg, "--no-data"])
            c.append(run_time([a.ctrain, "check", cfg]) - base)
            opened, loaded = fit_phases(a.ctrain, cfg, run)
            o.append(opened)
            l.append(loaded)
        rows.append((name, os.path.getsize(path), *map(statistics.median, (h, c, o, l))))
    print("Fashion-MNIST train (60000 x 28 x 28 x 1), medians of %d runs, seconds" % a.repeat)
    print("%-30s %8s %7s %7s %6s %7s %7s %6s" % ("file", "MB", "h5py", "check", "ratio",
                                                 "open", "load", "ratio"))
    for name, size, h, c, o, l in rows:
        print("%-30s %8.1f %7.3f %7.3f %5.2fx %7.3f %7.3f %5.2fx" % (
            name, size / 1e6, h, c, c / h, o, l, l / h))
    if not a.keep:
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
