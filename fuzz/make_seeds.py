"""make_seeds.py OUT MLP_WEIGHTS - HDF5 seed variants for the dataset and weights targets.

Called by make_seeds.sh. Every file is a few KB: small shapes, few rows, so that the fuzzer
mutates the structure (superblock, object headers, layouts, filters) rather than the data.
"""
import os
import sys

import h5py
import numpy as np

out, mlp_weights = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(1)
ds_dir = os.path.join(out, "dataset")
w_dir = os.path.join(out, "weights")


def images(dtype, rows=6, shape=(4, 4, 1)):
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 100, size=(rows,) + shape).astype(dtype)
    return rng.random((rows,) + shape).astype(dtype)


def data_file(name, x, y, libver=None, **kw):
    """train/images = x, train/labels = y (either may be None); kw go to both datasets."""
    with h5py.File(os.path.join(ds_dir, name), "w", libver=libver) as f:
        g = f.create_group("train")
        if x is not None:
            g.create_dataset("images", data=x, **kw)
        if y is not None:
            g.create_dataset("labels", data=y, **kw)


labels = np.arange(6, dtype=np.uint8) % 10
data_file("uint8.h5", images(np.uint8), labels)
data_file("float32.h5", images(np.float32), labels.astype(np.int64))
data_file("float64_flat.h5", images(np.float64, shape=(5,)), labels.astype(np.float32))
data_file("int16_be.h5", images(np.dtype(">i2")), labels.astype(">i4"))
data_file("chunked_gzip.h5", images(np.float32), labels, chunks=True, compression="gzip",
          shuffle=True)
data_file("chunked_lzf.h5", images(np.uint8), labels, chunks=True, compression="lzf",
          fletcher32=True)
with h5py.File(os.path.join(ds_dir, "maxshape.h5"), "w") as f:
    f.create_dataset("train/images", data=images(np.uint8), maxshape=(None, 4, 4, 1))
    f.create_dataset("train/labels", data=labels, maxshape=(None,), chunks=(2,))
data_file("latest.h5", images(np.float32), labels, libver="latest")
with h5py.File(os.path.join(ds_dir, "compact.h5"), "w") as f:
    # Compact layout: the values live in the object header.
    for name, arr in (("images", images(np.uint8, rows=3, shape=(2, 2, 1))), ("labels", labels[:3])):
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple(arr.shape)
        g = f.require_group("train")
        d = h5py.h5d.create(g.id, name.encode(), h5py.h5t.py_create(arr.dtype), space, dcpl=dcpl)
        d.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(arr))
data_file("rank1.h5", rng.random(6).astype(np.float32), labels)
data_file("labels2d.h5", images(np.uint8), labels.reshape(6, 1))
data_file("no_labels.h5", images(np.uint8), None)
# Virtual datasets (refused): images mapped from itself, labels from a file that is absent.
with h5py.File(os.path.join(ds_dir, "virtual.h5"), "w") as f:
    lay = h5py.VirtualLayout(shape=(6, 4, 4, 1), dtype="u1")
    lay[:] = h5py.VirtualSource(".", "train/images", shape=(6, 4, 4, 1))
    f.create_virtual_dataset("train/images", lay)
    lay = h5py.VirtualLayout(shape=(6,), dtype="u1")
    lay[:] = h5py.VirtualSource("absent.h5", "labels", shape=(6,))
    f.create_virtual_dataset("train/labels", lay, fillvalue=0)

bad = images(np.float32)
bad[3, 0, 0, 0] = np.nan
data_file("nan.h5", bad, labels)
data_file("label_range.h5", images(np.uint8), (labels + 7).astype(np.int32))
data_file("label_frac.h5", images(np.uint8), labels.astype(np.float32) + 0.5)
data_file("rows_differ.h5", images(np.uint8), labels[:4])
data_file("string_labels.h5", images(np.uint8), np.array([b"a", b"b", b"c", b"d", b"e", b"f"]))

with h5py.File(os.path.join(ds_dir, "unwritten_chunks.h5"), "w") as f:
    # Chunked, never written: reads give the fill value.
    f.create_dataset("train/images", shape=(64, 3), dtype="f4", chunks=(8, 3), fillvalue=0.25)
    f.create_dataset("train/labels", shape=(64,), dtype="u1", chunks=(8,), fillvalue=1)
with h5py.File(os.path.join(ds_dir, "links.h5"), "w") as f:
    f.create_dataset("data/images", data=images(np.uint8))
    f.create_dataset("data/labels", data=labels)
    f["train/images"] = h5py.SoftLink("/data/images")
    f["train/labels"] = h5py.ExternalLink("other.h5", "/train/labels")
with h5py.File(os.path.join(ds_dir, "groups.h5"), "w") as f:
    f.create_group("train/images")
    f.create_dataset("train/labels", data=labels)
    f.attrs["note"] = "train/images is a group"
with h5py.File(os.path.join(ds_dir, "scalar.h5"), "w") as f:
    f.create_dataset("train/images", data=np.float32(1))
    f.create_dataset("train/labels", data=np.uint8(1))


# ---- weights: the mlp's weights in Keras's other layouts --------------------------------
def copy_weights(src, dst, layout):
    with h5py.File(src, "r") as fin, h5py.File(os.path.join(w_dir, dst), "w") as fout:
        mw = fin["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in mw.attrs["layer_names"]]
        root = fout if layout == "root" else fout.create_group("model_weights")
        vlen = h5py.string_dtype()
        if layout == "chunked":
            half = (len(names) + 1) // 2
            root.attrs.create("layer_names0", names[:half], dtype=vlen)
            root.attrs.create("layer_names1", names[half:], dtype=vlen)
        else:
            root.attrs.create("layer_names", names, dtype=vlen)
        for n in names:
            g = root.create_group(n)
            wn = [w.decode() if isinstance(w, bytes) else w for w in mw[n].attrs["weight_names"]]
            g.attrs.create("weight_names", wn, dtype=vlen)
            for w in wn:
                g.create_dataset(w, data=mw[n][w][()].astype(np.float64 if layout == "root"
                                                                 else np.float32))


copy_weights(mlp_weights, "mlp-vlen.h5", "vlen")
copy_weights(mlp_weights, "mlp-chunked-attrs.h5", "chunked")
copy_weights(mlp_weights, "mlp-save-weights.h5", "root")
