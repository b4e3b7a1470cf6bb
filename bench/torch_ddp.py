#!/usr/bin/env python3
"""PyTorch DistributedDataParallel (gloo) on processes of this machine, the peer of
`mpirun -np N ctrain fit` in bench/mpi.sh.

    python3 bench/torch_ddp.py mlp|cnn [--np 2] [--epochs 3] [--batch 128]

The model, initializers and optimizer are bench/torch_reference.py's; --batch is the global
batch, each process taking its consecutive part of every batch of one shared shuffled
order (as ctrain's ranks do), one thread each. The epochs run twice: with DDP's gradient
allreduce, then under no_sync() (no communication at all), so the difference is the
communication the backward pass did not hide. Prints the median epoch of each and that
share.
"""
import argparse
import os
import statistics
import sys
import time

import h5py
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import cnn, glorot, mlp  # noqa: E402

MODELS = {"mlp": mlp, "cnn": cnn}


def epochs_of(a, rank, model, opt, x, y, sync):
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for epoch in range(a.epochs):
        g = torch.Generator().manual_seed(a.seed * 1000 + epoch)  # the same order everywhere
        perm = torch.randperm(len(x), generator=g)
        dist.barrier()
        start = time.perf_counter()
        for i in range(0, len(x), a.batch):
            k = min(a.batch, len(x) - i)
            idx = perm[i + k * rank // a.np:i + k * (rank + 1) // a.np]
            opt.zero_grad(set_to_none=True)
            if sync:
                loss_fn(model(x[idx]), y[idx]).backward()
            else:
                with model.no_sync():
                    loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        dist.barrier()
        times.append(time.perf_counter() - start)
    return times


def worker(rank, a):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(a.port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=a.np)
    torch.manual_seed(a.seed)
    with h5py.File(a.data, "r") as f:
        x = torch.from_numpy(f["train/images"][:].astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(f["train/labels"][:].astype(np.int64))
    split = int(len(x) * 0.9)
    x, y = x[:split], y[:split]
    net = MODELS[a.model]()
    glorot(net)
    model = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    synced = epochs_of(a, rank, model, opt, x, y, True)
    alone = epochs_of(a, rank, model, opt, x, y, False)
    if rank == 0:
        s, n = statistics.median(synced), statistics.median(alone)
        print(f"torch {torch.__version__} DDP gloo {a.model} x{a.np}: median epoch {s:.3f}s "
              f"with allreduce, {n:.3f}s without; communication not hidden "
              f"{max(s - n, 0) / s * 100:.1f}%", flush=True)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--data", default="data/fashion-mnist.h5")
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args()
    mp.spawn(worker, args=(a,), nprocs=a.np, join=True)


if __name__ == "__main__":
    main()
