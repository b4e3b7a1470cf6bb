#!/usr/bin/env python3
"""PyTorch versions of the example experiments, for side-by-side accuracy and epoch time.

Trains the same layers, initializers, optimizer, batch size and data split as the ctrain
config and prints the median epoch time and the test accuracy.

    python3 bench/torch_reference.py mlp|cnn|cnn_bn|resnet [--epochs N] [--threads N] [--device cuda]
    python3 bench/torch_reference.py text_lstm|text_transformer|text_gru [--epochs N] ...

The text models (configs/text_char_lstm.yaml, text_transformer.yaml, text_classify_gru.yaml)
read data/fortunes-char.h5 or data/fortunes-topics.h5; their epochs include a pass over the
validation windows, as ctrain's and Keras's do, and they print the validation loss and
accuracy of the last epoch instead of a test accuracy.

On a GPU (--device cuda) the data stays in page-locked host memory and each batch is
copied to the device as it is used, the usual eager loop; epoch times include a final
synchronisation.
"""
import argparse
import math
import statistics
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def glorot(model):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                         nn.ReLU(), nn.Linear(128, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))


def block(cin, cout):
    # Keras BatchNormalization: momentum 0.99 (PyTorch 0.01), epsilon 1e-3.
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
            nn.ReLU()]


def cnn_bn():
    return nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2), nn.Dropout(0.25),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
                         nn.Flatten(), nn.Linear(3136, 256, bias=False),
                         nn.BatchNorm1d(256, eps=1e-3, momentum=0.01), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(256, 10))


def bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class SameConv2d(nn.Conv2d):
    """Conv2d with Keras's padding="same": ceil(n / stride) outputs, and where the zeros
    needed are odd, the extra one after the input (a stride-2 3x3 conv on 28 pads 0 before
    and 1 after; PyTorch's padding=1 would pad 1 on both sides and shift every window)."""

    def forward(self, x):
        pads = []
        for n, k, s in zip(reversed(x.shape[2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:
            return F.conv2d(x, self.weight, self.bias, self.stride, (pads[2], pads[0]))
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride)


class ResidualBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn, plus the shortcut, then relu; the shortcut is the input
    itself, or a 1x1 conv + bn where the block changes the stride or the width."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = SameConv2d(cin, cout, 3, stride, bias=False), bn(cout)
        self.conv2, self.bn2 = SameConv2d(cout, cout, 3, bias=False), bn(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


def resnet():
    # configs/fashion_mnist_resnet.yaml
    return nn.Sequential(SameConv2d(1, 32, 3, bias=False), bn(32), nn.ReLU(),
                         ResidualBlock(32, 32, 1), ResidualBlock(32, 64, 2),
                         ResidualBlock(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, 10))


SETUPS = {"mlp": (mlp, 10), "cnn": (cnn, 12), "cnn_bn": (cnn_bn, 15), "resnet": (resnet, 10)}


# --- Text models --------------------------------------------------------------------------
# Keras's initializers: embeddings uniform in [-0.05, 0.05], kernels glorot_uniform,
# recurrent kernels orthogonal, biases zero (an LSTM's forget-gate bias one).

def keras_init(model):
    for name, p in model.named_parameters():
        if "embedding" in name or name.startswith("tok.") or name.startswith("pos."):
            nn.init.uniform_(p, -0.05, 0.05)
        elif "weight_hh" in name:
            nn.init.orthogonal_(p)
        elif "weight_ih" in name or (name.endswith("weight") and p.dim() == 2):
            nn.init.xavier_uniform_(p)
        elif name.endswith("bias") or "bias_" in name:
            nn.init.zeros_(p)
    for m in model.modules():
        if isinstance(m, nn.LSTM):  # unit_forget_bias: gates i, f, g, o
            h = m.hidden_size
            nn.init.ones_(m.bias_ih_l0[h:2 * h])
        if isinstance(m, Attention):
            m.keras_init()
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class CharLSTM(nn.Module):
    """configs/text_char_lstm.yaml: embedding 64, LSTM 256 at every step, the next
    character's scores."""

    def __init__(self, vocab=115):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, 256, batch_first=True)
        self.out = nn.Linear(256, vocab)

    def forward(self, x):
        return self.out(self.lstm(self.embedding(x))[0])


class Attention(nn.Module):
    """Keras's MultiHeadAttention on one sequence (query = value = key), causal."""

    def __init__(self, d, heads, key_dim):
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.q, self.k, self.v = (nn.Linear(d, heads * key_dim) for _ in range(3))
        self.o = nn.Linear(heads * key_dim, d)

    def keras_init(self):
        # Keras's fans of the 3-axis kernels: (d, heads, key_dim) and (heads, key_dim, d).
        d = self.q.in_features
        bound = math.sqrt(6 / (d * (self.heads + self.key_dim)))
        for lin in (self.q, self.k, self.v):
            nn.init.uniform_(lin.weight, -bound, bound)
        bound = math.sqrt(6 / (self.heads * (self.key_dim + d)))
        nn.init.uniform_(self.o.weight, -bound, bound)

    def forward(self, x):
        n, t, _ = x.shape
        q, k, v = (lin(x).view(n, t, self.heads, self.key_dim).transpose(1, 2)
                   for lin in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(n, t, -1))


class Block(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + dense(gelu dense(norm(x)))."""

    def __init__(self, d, heads, key_dim):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-3), nn.LayerNorm(d, eps=1e-3)
        self.attn = Attention(d, heads, key_dim)
        self.ff1, self.ff2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class TextTransformer(nn.Module):
    """configs/text_transformer.yaml: token and position embeddings (64), two blocks of 4
    heads of 16, a final layer normalization and the next character's scores."""

    def __init__(self, vocab=115, length=100, d=64):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.blocks = nn.Sequential(Block(d, 4, 16), Block(d, 4, 16))
        self.ln = nn.LayerNorm(d, eps=1e-3)
        self.out = nn.Linear(d, vocab)

    def forward(self, x):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        return self.out(self.ln(self.blocks(h)))


class TopicGRU(nn.Module):
    """configs/text_classify_gru.yaml: embedding 64, a GRU of 64 reading the words last to
    first (Keras's go_backwards), the topic's scores from its final state."""

    def __init__(self, vocab=10000, classes=4):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 64)
        self.gru = nn.GRU(64, 64, batch_first=True)  # reset_after, as Keras's default
        self.out = nn.Linear(64, classes)

    def forward(self, x):
        return self.out(self.gru(self.embedding(x.flip(1)))[1][0])


# model: (builder, data file, epochs, learning rate, batch size)
TEXT = {"text_lstm": (CharLSTM, "data/fortunes-char.h5", 10, 2e-3, 64),
        "text_transformer": (TextTransformer, "data/fortunes-char.h5", 10, 1e-3, 64),
        "text_gru": (TopicGRU, "data/fortunes-topics.h5", 3, 1e-3, 32)}


def text_main(a):
    build, path, epochs, lr, batch = TEXT[a.model]
    epochs = a.epochs or epochs
    dev = torch.device(a.device)
    with h5py.File(path, "r") as f:
        x, y, xv, yv = (torch.from_numpy(f[k][:].astype(np.int64))
                        for k in ("train/x", "train/y", "validation/x", "validation/y"))
    model = build()
    keras_init(model)
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)

    def loss_acc(out, yb):
        out = out.reshape(-1, out.shape[-1])
        yb = yb.to(dev).reshape(-1)
        return F.cross_entropy(out, yb), (out.argmax(1) == yb).sum().item(), yb.numel()

    times = []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_acc(model(x[idx].to(dev)), y[idx])[0]
            loss.backward()
            opt.step()
        model.eval()
        total, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for i in range(0, len(xv), 256):
                l, c, n = loss_acc(model(xv[i:i + 256].to(dev)), yv[i:i + 256])
                total, correct, count = total + l.item() * n, correct + c, count + n
        if a.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        val_loss, val_acc = total / count, correct / count
        print(f"epoch {epoch + 1}/{epochs}: {times[-1]:.2f}s loss {loss.item():.4f} "
              f"val_loss {val_loss:.4f} val_accuracy {val_acc:.4f}", flush=True)
    print(f"torch {torch.__version__} {a.model}: median epoch {statistics.median(times):.2f}s, "
          f"validation loss {val_loss:.4f}, validation accuracy {val_acc:.4f}, "
          f"threads {a.threads}, device {a.device}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(SETUPS) + sorted(TEXT))
    ap.add_argument("--data", default="data/fashion-mnist.h5")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.model in TEXT:
        return text_main(a)
    build, epochs = SETUPS[a.model]
    epochs = a.epochs or epochs
    with h5py.File(a.data, "r") as f:
        x = torch.from_numpy(f["train/images"][:].astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(f["train/labels"][:].astype(np.int64))
        xt = torch.from_numpy(f["test/images"][:].astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
        yt = torch.from_numpy(f["test/labels"][:].astype(np.int64))
    split = int(len(x) * 0.9)  # Keras's validation_split 0.1: the last 10%
    x, y = x[:split], y[:split]
    model = build()
    glorot(model)
    model.to(dev)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # FP32, as ctrain computes
        torch.backends.cudnn.allow_tf32 = False
        x, y = x.pin_memory(), y.pin_memory()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    sched = None
    if a.model == "resnet":
        # Keras's cosine_decay(0.002, 4220) as the config has it: one value per step.
        for g in opt.param_groups:
            g["lr"] = 0.002
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, 4220) / 4220)))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), a.batch):
            idx = perm[i:i + a.batch]
            xb, yb = x[idx], y[idx]
            if a.device == "cuda":
                xb, yb = xb.pin_memory().to(dev, non_blocking=True), yb.pin_memory().to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            if sched:
                sched.step()
        if a.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        print(f"epoch {epoch + 1}/{epochs}: {times[-1]:.2f}s loss {loss.item():.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        correct = sum((model(xt[i:i + 1000].to(dev)).argmax(1).cpu() == yt[i:i + 1000]).sum().item()
                      for i in range(0, len(xt), 1000))
    print(f"torch {torch.__version__} {a.model}: median epoch {statistics.median(times):.2f}s, "
          f"test accuracy {correct / len(xt):.4f}, threads {a.threads}, device {a.device}")


if __name__ == "__main__":
    main()
