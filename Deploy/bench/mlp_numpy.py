#!/usr/bin/env python3
"""NumPy reference for StrataCore's MLP: the same minibatch SGD, on the same data, in the same sample order,
from the same initial parameters, written independently from the textbook equations (MLPTests compares the
final parameters and the mean loss).

Layers l = 1..L with widths w_0 = features, w_1 .. w_{L-1} hidden, w_L = outputs; per batch B (consecutive
runs of the order file, the last batch smaller), in float32:
    A_0 = X_B;  Z_l = A_{l-1} W_l + b_l;  A_l = act(Z_l) for l < L   (act: relu or tanh)
    classes:    loss += sum(logsumexp(Z_L) - Z_L[y]);  D_L = softmax(Z_L) - onehot(y)
    regression: loss += sum(0.5 (Z_L - y)^2);        D_L = Z_L - y
    G_W_l = A_{l-1}^T D_l;  G_b_l = sum_B D_l;  D_{l-1} = (D_l W_l^T) * act'(A_{l-1})
    every parameter: p -= lr * (G / |B| + mu (p - p_start))
Parameters are flat, layer by layer: W_1 (w_0 x w_1, row-major), b_1, W_2, b_2, ...

Inputs (raw little-endian files in --dir): features.f32 (samples x features), labels.f32 (samples),
order.i32 (epochs x samples), initial.f32. Output: parameters.f32, and on stdout `mean_loss <value>`,
`seconds <best wall time of one run>` and `epochs_per_second <epochs / seconds>` (--repetitions runs).
"""
import argparse
import os
import time

import numpy as np


def unpack(flat, widths):
    layers, at = [], 0
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        w = flat[at:at + fan_in * fan_out].reshape(fan_in, fan_out)
        at += fan_in * fan_out
        b = flat[at:at + fan_out]
        at += fan_out
        layers.append((w, b))
    return layers


def train(x, y, order, initial, widths, activation, output, batch, lr, mu):
    flat = initial.copy()
    start = initial.copy()
    lr, mu = np.float32(lr), np.float32(mu)
    loss_sum = 0.0
    n = x.shape[0]
    for epoch_order in order:
        for s in range(0, n, batch):
            idx = epoch_order[s:s + batch]
            layers = unpack(flat, widths)
            acts = [x[idx]]
            for l, (w, b) in enumerate(layers):
                z = acts[-1] @ w + b
                if l < len(layers) - 1:
                    z = np.maximum(z, np.float32(0)) if activation == "relu" else np.tanh(z)
                acts.append(z.astype(np.float32))
            logits = acts[-1]
            if output == "classes":
                labels = y[idx].astype(np.int64)
                m = logits.max(axis=1, keepdims=True)
                e = np.exp(logits - m)
                s_ = e.sum(axis=1, keepdims=True)
                loss_sum += float(np.sum(np.log(s_[:, 0]) - (logits[np.arange(len(idx)), labels] - m[:, 0])))
                d = e / s_
                d[np.arange(len(idx)), labels] -= np.float32(1)
            else:
                r = logits[:, 0] - y[idx]
                loss_sum += float(np.sum(np.float32(0.5) * r * r))
                d = r[:, None]
            grads = []
            for l in range(len(layers) - 1, -1, -1):
                w, _ = layers[l]
                grads.append((acts[l].T @ d, d.sum(axis=0)))
                if l > 0:
                    back = d @ w.T
                    a = acts[l]
                    d = back * ((a > 0).astype(np.float32) if activation == "relu" else (np.float32(1) - a * a))
            grads.reverse()
            g = np.concatenate([np.concatenate([gw.ravel(), gb]) for gw, gb in grads]).astype(np.float32)
            scale = np.float32(1) / np.float32(len(idx))
            flat = (flat - lr * (g * scale + mu * (flat - start))).astype(np.float32)
    return flat, loss_sum / (n * len(order))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True)
    p.add_argument("--samples", type=int, required=True)
    p.add_argument("--widths", required=True, help="comma-separated layer widths, input first")
    p.add_argument("--activation", choices=("relu", "tanh"), default="relu")
    p.add_argument("--output", choices=("classes", "regression"), default="classes")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--mu", type=float, default=0.0)
    p.add_argument("--repetitions", type=int, default=1, help="timed runs; the best counts")
    a = p.parse_args()
    widths = [int(v) for v in a.widths.split(",")]
    read = lambda name, dtype: np.fromfile(os.path.join(a.dir, name), dtype=dtype)
    x = read("features.f32", np.float32).reshape(a.samples, widths[0])
    y = read("labels.f32", np.float32)
    order = read("order.i32", np.int32).reshape(a.epochs, a.samples)
    initial = read("initial.f32", np.float32)
    best = float("inf")
    for _ in range(a.repetitions):
        started = time.perf_counter()
        flat, mean_loss = train(x, y, order, initial, widths, a.activation, a.output, a.batch, a.lr, a.mu)
        best = min(best, time.perf_counter() - started)
    flat.astype(np.float32).tofile(os.path.join(a.dir, "parameters.f32"))
    print(f"mean_loss {mean_loss}")
    print(f"seconds {best:.6f}")
    print(f"epochs_per_second {a.epochs / best:.3f}")


if __name__ == "__main__":
    main()
