#!/usr/bin/env python3
"""Multinomial logistic regression in NumPy, trained exactly as PROTOCOL §7.3 says (the reference agent's
shuffle, batches, FedProx step and loss), so it reproduces the §7.6 vectors and can stand in for the built-in
trainer of ``--model softmax`` as well as train a ``--model custom`` with the same two tensors:
``weight`` (features, classes) and ``bias`` (classes).

    strata-agent … --trainer-command "python3 examples/numpy_logistic.py"
    python3 examples/numpy_logistic.py --write-initial-model model.npz --features 4 --classes 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

try:
    import strata_trainer
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import strata_trainer

from strata_trainer import Evaluation, Model, Rows, Task, Trainer, TrainResult, save_initial_model, serve

MASK64 = (1 << 64) - 1


# --- the reference shuffle (§7.3): splitmix64 seeds a xoshiro256** per epoch; Fisher–Yates from the end ---


def splitmix64(state: int) -> tuple[int, int]:
    """(new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def epoch_seed(seed: int, epoch: int) -> int:
    state = (seed ^ (epoch * 0xD1B54A32D192ED03)) & MASK64
    state, _ = splitmix64(state)
    _, second = splitmix64(state)
    return second


class Xoshiro256StarStar:
    def __init__(self, seed: int) -> None:
        words = []
        state = seed & MASK64
        for _ in range(4):
            state, output = splitmix64(state)
            words.append(output)
        self.s = words

    def next(self) -> int:
        s = self.s
        result = (_rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, k: int) -> int:
        """Uniform in 0 ..< k (Lemire's method, as the reference)."""
        m = self.next() * k
        if (m & MASK64) < k:
            threshold = ((1 << 64) - k) % k
            while (m & MASK64) < threshold:
                m = self.next() * k
        return m >> 64


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & MASK64


def sample_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The reference agent's permutation of 0 ..< n for an epoch."""
    generator = Xoshiro256StarStar(epoch_seed(seed, epoch))
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = generator.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return np.asarray(order, dtype=np.int64)


# --- the model ---------------------------------------------------------------------------------------------


def cross_entropy(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss and softmax probabilities, computed stably (§7.1)."""
    logits = x @ weight + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    losses = log_sum - shifted[np.arange(len(y)), y]
    probabilities = np.exp(shifted - log_sum[:, None])
    return losses, probabilities


def evaluate_rows(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy by arg-max with the lowest index on ties); (0, 0) without rows."""
    if len(y) == 0:
        return 0.0, 0.0
    losses, _ = cross_entropy(weight, bias, x, y)
    predicted = np.argmax(x @ weight + bias, axis=1)
    return float(losses.mean()), float(np.mean(predicted == y))


class NumpyLogisticTrainer(Trainer):
    def __init__(self) -> None:
        self.rows: Optional[Rows] = None

    def setup(self, model: Model, rows: Rows) -> None:
        if not model.classifier:
            raise ValueError(f"this trainer fits classifiers; the federation's model ({model.kind}) is a regression")
        self.rows = rows
        self.train_x = rows.train_x.astype(np.float64)
        self.train_y = rows.train_y.astype(np.int64)
        self.test_x = rows.test_x.astype(np.float64)
        self.test_y = rows.test_y.astype(np.int64)

    def train(self, parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        hyper = task.hyperparameters
        assert hyper is not None
        weight0, bias0 = self._parameters(parameters)
        eval_loss, eval_accuracy = evaluate_rows(weight0, bias0, self.test_x, self.test_y)
        weight, bias = weight0.copy(), bias0.copy()
        x, y = self.train_x, self.train_y
        batch = max(hyper.batch_size, 1)
        loss_sum, loss_count = 0.0, 0
        for epoch in range(hyper.epochs):
            order = sample_order(len(y), hyper.seed, epoch)
            for start in range(0, len(order), batch):
                rows = order[start : start + batch]
                losses, probabilities = cross_entropy(weight, bias, x[rows], y[rows])
                loss_sum += float(losses.sum())
                loss_count += len(rows)
                probabilities[np.arange(len(rows)), y[rows]] -= 1.0  # ∂ℓ/∂z = p − onehot(y)
                grad_weight = x[rows].T @ probabilities / len(rows)
                grad_bias = probabilities.mean(axis=0)
                mu = hyper.proximal_mu
                weight -= hyper.learning_rate * (grad_weight + mu * (weight - weight0))
                bias -= hyper.learning_rate * (grad_bias + mu * (bias - bias0))
        train_loss = loss_sum / loss_count if loss_count else 0.0
        return TrainResult({"weight": weight, "bias": bias}, train_loss, eval_loss, eval_accuracy)

    def evaluate(self, parameters: dict[str, np.ndarray], task: Task) -> Evaluation:
        weight, bias = self._parameters(parameters)
        # The logits go along: the agent derives the evaluation statistics (F1, AUC, ...) from them.
        return Evaluation(*evaluate_rows(weight, bias, self.test_x, self.test_y), outputs=self.test_x @ weight + bias)

    def _parameters(self, parameters: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self.rows is None:
            raise RuntimeError("no rows: setup has not run")
        weight = parameters["weight"].astype(np.float64)
        bias = parameters["bias"].astype(np.float64)
        classes = bias.shape[0]
        if weight.shape != (self.train_x.shape[1], classes):
            raise ValueError(f"weight {weight.shape} does not fit {self.train_x.shape[1]} features and {classes} classes")
        for labels in (self.train_y, self.test_y):
            if len(labels) and (labels.min() < 0 or labels.max() >= classes):
                raise ValueError(f"labels outside 0 … {classes - 1}")
        return weight, bias


def initial_model(features: int, classes: int) -> dict[str, np.ndarray]:
    """All zeros, as the coordinator starts a softmax model."""
    return {"weight": np.zeros((features, classes), np.float32), "bias": np.zeros(classes, np.float32)}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write-initial-model", metavar="PATH", help="write the starting model's .npz and exit")
    parser.add_argument("--features", type=int, help="feature count (with --write-initial-model)")
    parser.add_argument("--classes", type=int, help="class count (with --write-initial-model)")
    parser.add_argument("--hidden", help="ignored: this model has no hidden layers")
    parser.add_argument("--seed", type=int, default=0, help="ignored: the model starts at zero")
    args = parser.parse_args(argv)
    if args.write_initial_model:
        if not args.features or not args.classes or args.classes < 2:
            parser.error("--write-initial-model needs --features F and --classes C (C ≥ 2)")
        save_initial_model(args.write_initial_model, initial_model(args.features, args.classes))
        return 0
    return serve(NumpyLogisticTrainer(), name=f"numpy_logistic (strata-trainer {strata_trainer.__version__})")


if __name__ == "__main__":
    sys.exit(main())
