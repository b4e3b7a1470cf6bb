#!/usr/bin/python3
"""fashion_extras.py - add the datasets of the multi-input and multi-output examples to the
Fashion-MNIST file that `ctrain data import-idx` writes (scripts/setup.sh runs this).

    scripts/fashion_extras.py [FILE]      (default: data/fashion-mnist.h5)

FILE must hold train/images, train/labels, test/images and test/labels (uint8, images
(N, 28, 28, 1)). The script adds whichever of these datasets are missing and leaves the
others as they are, so running it again changes nothing:

  train/meta, test/meta    float32 (N, 4), four numbers computed from each image:
                             0  mean intensity / 255
                             1  standard deviation of the intensities / 255
                             2  fraction of the 784 pixels brighter than 127
                             3  row of the intensity's centre of mass / 27 (0 = top row,
                                1 = bottom row; 0.5 for an all-black image)
                           all in [0, 1]
                           (configs/fashion_mnist_two_heads.yaml)
  train/shoe, test/shoe    uint8 (N,): 1 for the footwear classes (5 sandal, 7 sneaker,
                           9 ankle boot), 0 for the others
                           (configs/fashion_mnist_two_heads.yaml)
  pairs_train/left, pairs_train/right, pairs_train/same
                           30000 pairs of training images: left and right uint8
                           (P, 28, 28, 1), same uint8 (P,) 1 when both images have the same
                           class; exactly half of the pairs are same-class
                           (configs/fashion_mnist_siamese.yaml)
  pairs_test/left, pairs_test/right, pairs_test/same
                           the same for 5000 pairs of test images
  classes_0_4/{train,test}/{images,labels}
                           the images of classes 0-4 (T-shirt/top, trouser, pullover, dress,
                           coat) with their labels, in the file's order
  classes_5_9/{train,test}/{images,labels}
                           the images of classes 5-9 (sandal, shirt, sneaker, bag, ankle
                           boot), labels 0-4 (the class minus 5)
                           (configs/fashion_mnist_transfer_base.yaml, _head.yaml)
  train/classes, test/classes, classes_0_4/{train,test}/classes,
  classes_5_9/{train,test}/classes
                           the class names by label (UTF-8 strings), which the run
                           report shows beside the class numbers

Pairs are drawn with numpy's PCG64 from fixed seeds (one per set), so every run on every
machine gives the same file. A same-class pair takes a random image and another image of
its class; a different-class pair takes a random image and an image of a random other
class; the pairs are then shuffled. The new datasets are written into a copy of the file,
which replaces the original only when everything is written.

Needs Python 3 with numpy and h5py (Debian: python3-numpy python3-h5py).
"""
import os
import shutil
import sys

import h5py
import numpy as np

FOOTWEAR = (5, 7, 9)  # sandal, sneaker, ankle boot
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"]
PAIRS = {"train": (30000, 20240601), "test": (5000, 20240602)}  # set: (pairs, seed)
CHUNK = 10000  # images per step when computing meta (bounds the memory used)


def meta(images):
    """(N, 28, 28, 1) uint8 -> (N, 4) float32: mean, std, bright fraction, mass row."""
    n, h, w = images.shape[0], images.shape[1], images.shape[2]
    out = np.empty((n, 4), np.float32)
    rows = np.arange(h, dtype=np.float64)
    for s in range(0, n, CHUNK):
        x = images[s:s + CHUNK].reshape(-1, h, w).astype(np.float64)
        flat = x.reshape(len(x), -1)
        out[s:s + CHUNK, 0] = flat.mean(axis=1) / 255.0
        out[s:s + CHUNK, 1] = flat.std(axis=1) / 255.0
        out[s:s + CHUNK, 2] = (flat > 127).mean(axis=1)
        row_mass = x.sum(axis=2)  # (n, h)
        total = row_mass.sum(axis=1)
        centre = np.divide(row_mass @ rows, total, out=np.full(len(x), (h - 1) / 2.0),
                           where=total > 0)
        out[s:s + CHUNK, 3] = centre / (h - 1)
    return out


def pairs(labels, count, seed):
    """Indices (left, right) and same-class flags of `count` pairs, half of them same-class."""
    rng = np.random.Generator(np.random.PCG64(seed))
    labels = labels.astype(np.int64)
    classes = np.unique(labels)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    # rank[i]: the position of image i among the images of its class.
    rank = np.empty(len(labels), np.int64)
    for idx in members.values():
        rank[idx] = np.arange(len(idx))

    n_same = count // 2
    n_diff = count - n_same

    # Same class: another image of the anchor's class, never the anchor itself.
    a_same = rng.integers(0, len(labels), n_same)
    b_same = np.empty(n_same, np.int64)
    for c in classes:
        sel = np.flatnonzero(labels[a_same] == c)
        k = rng.integers(0, len(members[c]) - 1, len(sel))
        k += k >= rank[a_same[sel]]
        b_same[sel] = members[c][k]

    # Different class: an image of one of the other classes, chosen uniformly.
    a_diff = rng.integers(0, len(labels), n_diff)
    pos = np.searchsorted(classes, labels[a_diff])
    other = classes[(pos + rng.integers(1, len(classes), n_diff)) % len(classes)]
    b_diff = np.empty(n_diff, np.int64)
    for c in classes:
        sel = np.flatnonzero(other == c)
        b_diff[sel] = members[c][rng.integers(0, len(members[c]), len(sel))]

    left = np.concatenate([a_same, a_diff])
    right = np.concatenate([b_same, b_diff])
    same = np.concatenate([np.ones(n_same, np.uint8), np.zeros(n_diff, np.uint8)])
    order = rng.permutation(count)
    left, right, same = left[order], right[order], same[order]
    assert np.array_equal(labels[left] == labels[right], same.astype(bool))
    return left, right, same


HALVES = {"classes_0_4": 0, "classes_5_9": 5}  # group: first class


def write_names(f, name, names):
    """A 1-D dataset of UTF-8 strings, as ctrain data import-images writes class names."""
    f.create_dataset(name, data=names, dtype=h5py.string_dtype("utf-8"))


def wanted():
    names = []
    for part in ("train", "test"):
        names += [f"{part}/meta", f"{part}/shoe"]
        names += [f"pairs_{part}/{d}" for d in ("left", "right", "same")]
        names += [f"{g}/{part}/{d}" for g in HALVES for d in ("images", "labels", "classes")]
        names += [f"{part}/classes"]
    return names


def main():
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        print("usage: " + __doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    path = sys.argv[1] if len(sys.argv) == 2 else "data/fashion-mnist.h5"
    if not os.path.isfile(path):
        print(f"fashion_extras.py: no file {path} (scripts/setup.sh --data writes it)",
              file=sys.stderr)
        return 1
    with h5py.File(path, "r") as f:
        for name in ("train/images", "train/labels", "test/images", "test/labels"):
            if name not in f:
                print(f"fashion_extras.py: {path} has no dataset '{name}'", file=sys.stderr)
                return 1
        missing = [name for name in wanted() if name not in f]
    if not missing:
        print(f"fashion_extras.py: {path} already has meta, shoe, pairs, the halves and class names")
        return 0

    part = path + ".extras.part"
    shutil.copyfile(path, part)
    try:
        with h5py.File(part, "r+") as f:
            for split in ("train", "test"):
                needed = [n for n in missing if n.split("/")[0] in (split, f"pairs_{split}")
                          or (n.split("/")[0] in HALVES and n.split("/")[1] == split)]
                if not needed:
                    continue
                images = f[f"{split}/images"][:]
                labels = f[f"{split}/labels"][:]
                if f"{split}/meta" in needed:
                    f.create_dataset(f"{split}/meta", data=meta(images), dtype="<f4")
                if f"{split}/classes" in needed:
                    write_names(f, f"{split}/classes", NAMES)
                if f"{split}/shoe" in needed:
                    shoe = np.isin(labels, FOOTWEAR).astype(np.uint8)
                    f.create_dataset(f"{split}/shoe", data=shoe, dtype="u1")
                group = f"pairs_{split}"
                if any(n.startswith(group + "/") for n in needed):
                    # The three datasets of a set belong together: write them all again.
                    if group in f:
                        del f[group]
                    left, right, same = pairs(labels, *PAIRS[split])
                    f.create_dataset(f"{group}/left", data=images[left], dtype="u1")
                    f.create_dataset(f"{group}/right", data=images[right], dtype="u1")
                    f.create_dataset(f"{group}/same", data=same, dtype="u1")
                for half, first in HALVES.items():
                    if f"{half}/{split}/classes" in needed and f"{half}/{split}/images" in f:
                        write_names(f, f"{half}/{split}/classes", NAMES[first:first + 5])
                        continue
                    if not any(n.startswith(f"{half}/{split}/") for n in needed):
                        continue
                    if f"{half}/{split}" in f:
                        del f[f"{half}/{split}"]
                    keep = (labels >= first) & (labels < first + 5)
                    f.create_dataset(f"{half}/{split}/images", data=images[keep], dtype="u1")
                    f.create_dataset(f"{half}/{split}/labels", data=labels[keep] - first,
                                     dtype="u1")
                    write_names(f, f"{half}/{split}/classes", NAMES[first:first + 5])
        os.replace(part, path)
    except BaseException:
        if os.path.exists(part):
            os.remove(part)
        raise
    print(f"fashion_extras.py: added to {path}: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
