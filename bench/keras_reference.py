#!/usr/bin/env python3
"""Keras versions of the example experiments, for side-by-side accuracy and epoch time.

    python3 bench/keras_reference.py mlp|cnn|cnn_bn|resnet [--epochs N] [--threads N]
Needs keras 3 with a backend (e.g. pip install tensorflow-cpu h5py).
"""
import argparse
import os
import statistics
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["mlp", "cnn", "cnn_bn", "resnet"])
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

    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=128, epochs=a.epochs or epochs, validation_split=0.1,
              verbose=2, callbacks=[Timer()])
    loss, acc = model.evaluate(xt, yt, verbose=0)
    print(f"keras {keras.__version__} {a.model}: median epoch {statistics.median(times):.2f}s, "
          f"test accuracy {acc:.4f}, threads {a.threads}")


if __name__ == "__main__":
    main()
