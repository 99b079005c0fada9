#!/usr/bin/env python3
"""A PyTorch multilayer perceptron as a Strata trainer, for a ``--model custom`` federation (needs torch).

The network is ``nn.Sequential(Linear, ReLU, …, Linear)``; its tensors are the state dict's (``0.weight``
(out, in), ``0.bias``, ``2.weight``, …) and the hidden widths are read from the received shapes. Each task
runs the task's epochs of minibatch SGD with the task's learning rate, batch size, seed and FedProx term
(μ/2 ‖x − x₀‖²), on the CPU.

    python3 examples/torch_mlp.py --write-initial-model model.npz --features 2 --classes 2 --hidden 16,16
    strata-coordinator … --model custom --initial-model model.npz
    strata-agent … --trainer-command "python3 examples/torch_mlp.py"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

try:
    import strata_trainer
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import strata_trainer

from strata_trainer import Evaluation, Model, Rows, Task, Trainer, TrainResult, save_initial_model, serve
from strata_trainer.torch import arrays_to_state_dict, state_dict_to_arrays


def build(widths: Sequence[int]) -> nn.Sequential:
    """Linear layers between consecutive widths, ReLU between them (none after the last: logits)."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        if index:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def widths_of(parameters: dict[str, np.ndarray]) -> list[int]:
    """[features, hidden…, classes] from the Linear weights (out, in), in manifest order."""
    weights = [value for name, value in parameters.items() if name.endswith(".weight")]
    if not weights or any(w.ndim != 2 for w in weights):
        raise ValueError(f"expected the state dict of Linear layers, got {list(parameters)}")
    return [weights[0].shape[1]] + [w.shape[0] for w in weights]


class TorchMLPTrainer(Trainer):
    def setup(self, model: Model, rows: Rows) -> None:
        if not model.classifier:
            raise ValueError(f"this trainer fits classifiers; the federation's model ({model.kind}) is a regression")
        self.train_x = torch.from_numpy(np.array(rows.train_x, dtype=np.float32))
        self.train_y = torch.from_numpy(rows.train_y.astype(np.int64))
        self.test_x = torch.from_numpy(np.array(rows.test_x, dtype=np.float32))
        self.test_y = torch.from_numpy(rows.test_y.astype(np.int64))

    def train(self, parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        hyper = task.hyperparameters
        assert hyper is not None
        network = self._network(parameters)
        eval_loss, eval_accuracy = self._scores(network)
        start = [p.detach().clone() for p in network.parameters()]
        optimiser = torch.optim.SGD(network.parameters(), lr=hyper.learning_rate)
        generator = torch.Generator().manual_seed(hyper.seed % (1 << 63))
        batch = max(hyper.batch_size, 1)
        loss_sum, loss_count = 0.0, 0
        network.train()
        for _ in range(hyper.epochs):
            order = torch.randperm(len(self.train_y), generator=generator)
            for rows in order.split(batch):
                optimiser.zero_grad()
                loss = nn.functional.cross_entropy(network(self.train_x[rows]), self.train_y[rows])
                loss_sum += float(loss.detach()) * len(rows)
                loss_count += len(rows)
                if hyper.proximal_mu > 0:
                    proximal = sum(((p - p0) ** 2).sum() for p, p0 in zip(network.parameters(), start))
                    loss = loss + 0.5 * hyper.proximal_mu * proximal
                loss.backward()
                optimiser.step()
        train_loss = loss_sum / loss_count if loss_count else 0.0
        return TrainResult(state_dict_to_arrays(network.state_dict()), train_loss, eval_loss, eval_accuracy)

    def evaluate(self, parameters: dict[str, np.ndarray], task: Task) -> Evaluation:
        return Evaluation(*self._scores(self._network(parameters)))

    def _network(self, parameters: dict[str, np.ndarray]) -> nn.Sequential:
        network = build(widths_of(parameters))
        network.load_state_dict(arrays_to_state_dict(parameters, like=network.state_dict()))
        return network

    @torch.no_grad()
    def _scores(self, network: nn.Sequential) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) on the test rows; (0, 0) without test rows."""
        if len(self.test_y) == 0:
            return 0.0, 0.0
        network.eval()
        logits = network(self.test_x)
        loss = nn.functional.cross_entropy(logits, self.test_y)
        accuracy = (logits.argmax(dim=1) == self.test_y).float().mean()
        return float(loss), float(accuracy)


def initial_model(features: int, classes: int, hidden: Sequence[int], seed: int) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    return state_dict_to_arrays(build([features, *hidden, classes]).state_dict())


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write-initial-model", metavar="PATH", help="write the starting model's .npz and exit")
    parser.add_argument("--features", type=int, help="feature count (with --write-initial-model)")
    parser.add_argument("--classes", type=int, help="class count (with --write-initial-model)")
    parser.add_argument("--hidden", default="16,16", help="hidden layer widths, comma-separated (default 16,16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting weights (default 0)")
    args = parser.parse_args(argv)
    if args.write_initial_model:
        if not args.features or not args.classes or args.classes < 2:
            parser.error("--write-initial-model needs --features F and --classes C (C ≥ 2)")
        hidden = [int(width) for width in args.hidden.split(",") if width.strip()]
        save_initial_model(args.write_initial_model, initial_model(args.features, args.classes, hidden, args.seed))
        return 0
    torch.set_num_threads(1)  # an agent host runs other work; one core is plenty for a small MLP
    return serve(TorchMLPTrainer(), name=f"torch_mlp (PyTorch {torch.__version__}, strata-trainer {strata_trainer.__version__})")


if __name__ == "__main__":
    sys.exit(main())
