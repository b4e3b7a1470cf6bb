#!/usr/bin/env python3
"""A minimal FastAPI + PyTorch server of the Fashion-MNIST MLP or CNN, the peer of
`ctrain serve` in bench/serve.sh.

    python3 bench/torch_serve.py mlp|cnn WEIGHTS.h5 [--port 8601] [--threads N]
                                 [--workers N] [--name NAME]

The model is bench/torch_reference.py's, with the weights of a ctrain run's weights.h5
(Keras's legacy layout, read with h5py) and a softmax on top, as the ctrain experiment ends.
It answers TensorFlow Serving's row format as ctrain serve does: POST
/v1/models/NAME:predict with {"instances": [image, ...]} (images 28 x 28 x 1 of pixel values
0-255, scaled by 1/255 here as data.scale does in ctrain) gets {"predictions": [[10 floats],
...]}; GET /v1/models/NAME says it is AVAILABLE. Each request runs the model on its own
images as it comes (no batching across requests), on one uvicorn worker unless --workers;
torch uses --threads intra-op threads in each worker. No access log (ctrain serve runs with
-q); the objects made while starting are frozen out of Python's garbage collection
(gc.freeze), which otherwise stalls a request now and then for a full collection.
"""
import argparse
import gc
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ left in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference  # noqa: E402  (the same layers as the training comparison)

SCALE = 0.00392156862745098  # data.scale of configs/fashion_mnist_{mlp,cnn}.yaml


def keras_weights(path):
    """The (kernel, bias) pairs of the weighted layers of a ctrain weights.h5, in order."""
    with h5py.File(path, "r") as f:
        group = f["model_weights"]
        pairs = []
        for name in group.attrs["layer_names"]:
            layer = group[name]
            names = list(layer.attrs["weight_names"])
            if names:
                pairs.append(tuple(np.asarray(layer[n]) for n in names))
    return pairs


def load_model(kind, path):
    """torch_reference's model with ctrain's weights: Keras's (in, out) dense kernels and
    (kh, kw, in, out) conv kernels transposed to PyTorch's; the CNN's dense layer reads
    Keras's channels-last flattening, so its rows are reordered to PyTorch's (c, h, w)."""
    model = getattr(torch_reference, kind)().eval()
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    try:
        pairs = keras_weights(path)
    except (OSError, KeyError) as e:
        sys.exit(f"torch_serve.py: cannot read the weights in {path}: {e}")
    if len(pairs) != len(layers):
        sys.exit(f"torch_serve.py: {path} has {len(pairs)} layers with weights, the {kind} has "
                 f"{len(layers)}")
    with torch.no_grad():
        for layer, (kernel, bias) in zip(layers, pairs):
            if kernel.ndim != layer.weight.ndim:
                sys.exit(f"torch_serve.py: {path}: a kernel of shape {kernel.shape} for {layer}")
            if isinstance(layer, torch.nn.Conv2d):
                kernel = kernel.transpose(3, 2, 0, 1)
            else:
                if layer.in_features == 1600:  # after 64 x 5 x 5 feature maps
                    kernel = kernel.reshape(5, 5, 64, -1).transpose(2, 0, 1, 3).reshape(1600, -1)
                kernel = kernel.T
            if tuple(kernel.shape) != tuple(layer.weight.shape):
                sys.exit(f"torch_serve.py: {path}: a kernel of shape {kernel.T.shape} for {layer}")
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            layer.bias.copy_(torch.from_numpy(bias))
    return model


def make_app():
    """The app of one worker, from the settings main() leaves in the environment."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    kind, weights = os.environ["TORCH_SERVE_MODEL"], os.environ["TORCH_SERVE_WEIGHTS"]
    name = os.environ["TORCH_SERVE_NAME"]
    torch.set_num_threads(int(os.environ["TORCH_SERVE_THREADS"]))
    model = load_model(kind, weights)
    # Python's full collections walk every object torch made at import (about 90 ms each
    # on the benchmark machine, the p99 of 8 clients); frozen, they are left out.
    gc.collect()
    gc.freeze()
    app = FastAPI()

    @app.get(f"/v1/models/{name}")
    async def status():
        return {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}

    @app.post(f"/v1/models/{name}:predict")
    async def predict(request: Request):
        try:
            images = np.asarray(json.loads(await request.body())["instances"], dtype=np.float32)
            x = torch.from_numpy(images).permute(0, 3, 1, 2) * SCALE  # NHWC -> NCHW
        except (ValueError, KeyError, TypeError, IndexError) as e:
            return JSONResponse({"error": f"bad request: {e}"}, status_code=400)
        with torch.inference_mode():
            y = torch.softmax(model(x), dim=1)
        return JSONResponse({"predictions": y.tolist()})

    return app


app = make_app() if "TORCH_SERVE_MODEL" in os.environ else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", choices=["mlp", "cnn"])
    p.add_argument("weights")
    p.add_argument("--port", type=int, default=8601)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--name", default=None, help="default: fashion_mnist_MODEL")
    a = p.parse_args()
    os.environ.update(TORCH_SERVE_MODEL=a.model, TORCH_SERVE_WEIGHTS=os.path.abspath(a.weights),
                      TORCH_SERVE_THREADS=str(a.threads),
                      TORCH_SERVE_NAME=a.name or f"fashion_mnist_{a.model}")
    load_model(a.model, a.weights)  # a bad weights file fails here, once, with its reason
    import uvicorn
    uvicorn.run("torch_serve:app", host="127.0.0.1", port=a.port, workers=a.workers,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
