#!/usr/bin/env python3
"""Keras versions of the example experiments, for side-by-side accuracy and epoch time.

    python3 bench/keras_reference.py mlp|cnn|cnn_bn|resnet [--epochs N] [--threads N]
    python3 bench/keras_reference.py text_lstm|text_transformer|text_gru [--epochs N] ...
Needs keras 3 with a backend (e.g. pip install tensorflow-cpu h5py). The text models
(configs/text_*.yaml) validate on the file's validation rows after each epoch and print
the last epoch's validation loss and accuracy instead of a test accuracy.
"""
import argparse
import os
import statistics
import time


TEXT = ["text_lstm", "text_transformer", "text_gru"]


def text_model(name):
    """configs/text_char_lstm.yaml, text_transformer.yaml and text_classify_gru.yaml:
    (model, data file, epochs, learning rate, batch size)."""
    import keras
    from keras import layers, ops

    if name == "text_lstm":
        model = keras.Sequential([keras.Input((100,), dtype="int32"), layers.Embedding(115, 64),
                                  layers.LSTM(256, return_sequences=True),
                                  layers.Dense(115, activation="softmax")])
        return model, "data/fortunes-char.h5", 10, 2e-3, 64
    if name == "text_gru":
        model = keras.Sequential([keras.Input((100,), dtype="int32"), layers.Embedding(10000, 64),
                                  layers.GRU(64, go_backwards=True),
                                  layers.Dense(4, activation="softmax")])
        return model, "data/fortunes-topics.h5", 3, 1e-3, 32

    class TokenAndPosition(layers.Layer):
        """keras_hub's TokenAndPositionEmbedding: both tables uniform in [-0.05, 0.05]."""

        def __init__(self, vocab, length, dim):
            super().__init__()
            self.tok, self.pos = layers.Embedding(vocab, dim), layers.Embedding(length, dim)

        def call(self, x):
            return self.tok(x) + self.pos(ops.arange(ops.shape(x)[-1]))

    inputs = keras.Input((100,), dtype="int32")
    x = TokenAndPosition(115, 100, 64)(inputs)
    for _ in range(2):  # pre-norm blocks
        h = layers.LayerNormalization()(x)
        x = layers.Add()([layers.MultiHeadAttention(4, 16)(h, h, use_causal_mask=True), x])
        h = layers.LayerNormalization()(x)
        h = layers.Dense(64)(layers.Dense(256, activation="gelu")(h))
        x = layers.Add()([h, x])
    x = layers.LayerNormalization()(x)
    model = keras.Model(inputs, layers.Dense(115, activation="softmax")(x))
    return model, "data/fortunes-char.h5", 10, 1e-3, 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["mlp", "cnn", "cnn_bn", "resnet", *TEXT])
    ap.add_argument("--data", default="data/fashion-mnist.h5")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(a.threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    import h5py
    import keras
    from keras import layers

    keras.utils.set_random_seed(a.seed)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    if a.model in TEXT:
        model, path, epochs, lr, batch = text_model(a.model)
        with h5py.File(path, "r") as f:
            x, y = f["train/x"][:], f["train/y"][:]
            xv, yv = f["validation/x"][:], f["validation/y"][:]
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        hist = model.fit(x, y, batch_size=batch, epochs=a.epochs or epochs,
                         validation_data=(xv, yv), verbose=2, callbacks=[Timer()])
        print(f"keras {keras.__version__} {a.model}: median epoch {statistics.median(times):.2f}s, "
              f"validation loss {hist.history['val_loss'][-1]:.4f}, "
              f"validation accuracy {hist.history['val_accuracy'][-1]:.4f}, threads {a.threads}")
        return

    with h5py.File(a.data, "r") as f:
        x, y = f["train/images"][:] / 255.0, f["train/labels"][:]
        xt, yt = f["test/images"][:] / 255.0, f["test/labels"][:]

    def block(filters):
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(), layers.ReLU()]

    def conv_bn(x, filters, kernel, strides=1, padding="same"):
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
        return layers.BatchNormalization()(x)

    def resnet():
        # configs/fashion_mnist_resnet.yaml, in the functional API.
        inputs = keras.Input((28, 28, 1))
        x = layers.ReLU()(conv_bn(inputs, 32, 3))
        for filters, strides in ((32, 1), (64, 2), (128, 2)):
            y = layers.ReLU()(conv_bn(x, filters, 3, strides))
            y = conv_bn(y, filters, 3)
            shortcut = x if strides == 1 else conv_bn(x, filters, 1, strides, "valid")
            x = layers.ReLU()(layers.Add()([y, shortcut]))
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))

    if a.model == "resnet":
        model, epochs = resnet(), 10
    elif a.model == "mlp":
        body, epochs = [layers.Flatten(), layers.Dense(256, activation="relu"),
                        layers.Dense(128, activation="relu")], 10
    elif a.model == "cnn":
        body, epochs = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
                        layers.Flatten(), layers.Dropout(0.5)], 12
    else:
        body, epochs = [*block(32), *block(32), layers.MaxPooling2D(), layers.Dropout(0.25),
                        *block(64), *block(64), layers.MaxPooling2D(), layers.Dropout(0.25),
                        layers.Flatten(), layers.Dense(256, use_bias=False),
                        layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.5)], 15
    if a.model != "resnet":
        model = keras.Sequential([keras.Input((28, 28, 1)), *body,
                                  layers.Dense(10, activation="softmax")])
    # The ResNet's config decays its learning rate: cosine_decay(0.002, 4220 steps).
    optimizer = (keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.002, 4220))
                 if a.model == "resnet" else "adam")
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    model.fit(x, y, batch_size=128, epochs=a.epochs or epochs, validation_split=0.1,
              verbose=2, callbacks=[Timer()])
    loss, acc = model.evaluate(xt, yt, verbose=0)
    print(f"keras {keras.__version__} {a.model}: median epoch {statistics.median(times):.2f}s, "
          f"test accuracy {acc:.4f}, threads {a.threads}")


if __name__ == "__main__":
    main()
