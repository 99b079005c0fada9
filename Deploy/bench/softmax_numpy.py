#!/usr/bin/env python3
"""NumPy reference for `strata-bench training`: the same minibatch SGD on softmax regression as StrataCore's
Trainer, on the same data, in the same sample order, so that its epochs per second are a fair limit.

Per batch B of sample indices (consecutive runs of the order file, the last batch smaller):
    Z = X_B W + b;  m = max_k Z;  E = exp(Z - m);  s = sum_k E;  loss += sum(log s - (Z_y - m))
    P = E * (1/s);  P[y] -= 1;  W -= (lr * (1/|B|)) * X_B^T P;  b -= (lr * (1/|B|)) * sum_B P
All arrays are float32; W is features x classes (the public row-major layout), then b.

Inputs (raw little-endian files in --dir, written by strata-bench):
    features.f32  samples x features      labels.i32  samples
    order.i32     epochs x samples         (the Trainer's per-epoch permutation)
    initial.f32   features*classes + classes
Outputs: parameters.f32 (same layout as initial.f32) after the last repetition, and on stdout the lines
    seconds <best wall time of one repetition>
    epochs_per_second <epochs / seconds>
    mean_loss <mean per-sample loss over all epochs>
"""
import argparse
import os
import sys
import time

import numpy as np


def train(x, y, order, initial, features, classes, batch, lr):
    w = initial[: features * classes].reshape(features, classes).copy()
    b = initial[features * classes:].copy()
    lr = np.float32(lr)
    loss_sum = 0.0
    n = x.shape[0]
    rows = np.arange(batch)
    for epoch_order in order:
        for start in range(0, n, batch):
            idx = epoch_order[start:start + batch]
            count = idx.shape[0]
            r = rows[:count]
            xb = x[idx]
            yb = y[idx]
            z = xb @ w
            z += b
            m = z.max(axis=1, keepdims=True)
            zy = z[r, yb] - m[:, 0]
            e = np.exp(z - m)
            s = e.sum(axis=1)
            loss_sum += float(np.sum(np.log(s) - zy, dtype=np.float64))
            e *= (np.float32(1) / s)[:, None]
            e[r, yb] -= np.float32(1)
            step = lr * (np.float32(1) / np.float32(count))
            w -= step * (xb.T @ e)
            b -= step * e.sum(axis=0)
    return np.concatenate([w.reshape(-1), b]), loss_sum


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="directory holding the input files; parameters.f32 is written there")
    parser.add_argument("--samples", type=int, required=True, help="number of training samples")
    parser.add_argument("--features", type=int, required=True, help="features per sample")
    parser.add_argument("--classes", type=int, required=True, help="number of classes")
    parser.add_argument("--epochs", type=int, required=True, help="epochs per repetition (rows of order.i32)")
    parser.add_argument("--batch", type=int, required=True, help="minibatch size")
    parser.add_argument("--lr", type=float, required=True, help="learning rate")
    parser.add_argument("--repetitions", type=int, default=3, help="timed repetitions; the best counts (default 3)")
    args = parser.parse_args()

    n, f, c = args.samples, args.features, args.classes
    path = lambda name: os.path.join(args.dir, name)
    x = np.fromfile(path("features.f32"), dtype="<f4").reshape(n, f)
    y = np.fromfile(path("labels.i32"), dtype="<i4").astype(np.intp)
    order = np.fromfile(path("order.i32"), dtype="<i4").astype(np.intp).reshape(args.epochs, n)
    initial = np.fromfile(path("initial.f32"), dtype="<f4")
    if initial.shape[0] != f * c + c or y.shape[0] != n:
        sys.exit("input sizes do not match --samples/--features/--classes")

    best = float("inf")
    for _ in range(args.repetitions):
        started = time.perf_counter()
        params, loss_sum = train(x, y, order, initial, f, c, args.batch, args.lr)
        best = min(best, time.perf_counter() - started)
    params.astype("<f4").tofile(path("parameters.f32"))
    print(f"seconds {best:.6f}")
    print(f"epochs_per_second {args.epochs / best:.3f}")
    print(f"mean_loss {loss_sum / (n * args.epochs):.7f}")


if __name__ == "__main__":
    main()
