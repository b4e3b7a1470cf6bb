"""Data of the text examples' shapes for the export tests (test_onnx.sh, test_keras_io.sh):
char.h5 (100 character ids of 115, next-character targets) and topics.h5 (100 word ids of
10000, zero-padded at the end of each row, one of 4 topics per row), each with a train and
a validation part."""
import h5py


def write_text_examples(folder, n_validation, rng):
    for name, vocab, classes in (("char", 115, 0), ("topics", 10000, 4)):
        with h5py.File(f"{folder}/{name}.h5", "w") as f:
            for part, n in (("train", 32), ("validation", n_validation)):
                x = rng.integers(1, vocab, size=(n, 100)).astype("i4")
                for r in range(n if classes else 0):
                    x[r, rng.integers(10, 100):] = 0
                f[part + "/x"] = x
                f[part + "/y"] = (rng.integers(0, classes, size=n).astype("u1") if classes else
                                  rng.integers(0, vocab, size=(n, 100)).astype("i4"))
