#!/usr/bin/env python3
"""A scikit-learn MLPClassifier as a Strata trainer, for a ``--model custom`` federation.

Each task starts a fresh MLPClassifier from the received parameters (``layer1.weight`` … as
``strata_trainer.sklearn`` names them; the hidden widths are read from their shapes), runs the task's epochs
of Adam (``partial_fit``, one pass each) with the task's learning rate, batch size and seed, and returns the
new parameters. Adam with ReLU trains the two-rings problem (2 features, 2 classes) of a 4-agent federation
to ≥ 95 % accuracy within about 5 rounds at the coordinator's default learning rate (0.01); plain SGD needs a
larger rate or more rounds. FedProx's ``proximal_mu`` has no counterpart in scikit-learn and is ignored.

    python3 examples/sklearn_mlp.py --write-initial-model model.npz --features 2 --classes 2 --hidden 16,16
    strata-coordinator … --model custom --initial-model model.npz
    strata-agent … --trainer-command "python3 examples/sklearn_mlp.py"
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier

try:
    import strata_trainer
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import strata_trainer

from strata_trainer import Evaluation, Model, Rows, Task, Trainer, TrainResult, save_initial_model, serve
from strata_trainer.sklearn import initial_mlp_arrays, mlp_arrays, set_mlp_arrays


class SklearnMLPTrainer(Trainer):
    def __init__(self) -> None:
        self.activation = "relu"
        self.warned_proximal = False

    def setup(self, model: Model, rows: Rows) -> None:
        if not model.classifier:
            raise ValueError(f"this trainer fits classifiers; the federation's model ({model.kind}) is a regression")
        # The built-in mlp announces its activation; a custom model uses ReLU.
        self.activation = model.activation or "relu"
        self.train_x = rows.train_x.astype(np.float64)
        self.train_y = rows.train_y.astype(np.int64)
        self.test_x = rows.test_x.astype(np.float64)
        self.test_y = rows.test_y.astype(np.int64)

    def train(self, parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        hyper = task.hyperparameters
        assert hyper is not None
        if hyper.proximal_mu > 0 and not self.warned_proximal:
            print(f"proximal_mu {hyper.proximal_mu} ignored: MLPClassifier has no proximal term", file=sys.stderr)
            self.warned_proximal = True
        estimator = self._estimator(parameters, hyper.learning_rate, hyper.batch_size, hyper.seed)
        eval_loss, eval_accuracy = self._scores(estimator)
        losses = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(hyper.epochs if len(self.train_y) else 0):
                estimator.partial_fit(self.train_x, self.train_y)  # one shuffled pass over the rows
                losses.append(estimator.loss_)
        train_loss = float(np.mean(losses)) if losses else 0.0
        return TrainResult(mlp_arrays(estimator), train_loss, eval_loss, eval_accuracy)

    def evaluate(self, parameters: dict[str, np.ndarray], task: Task) -> Evaluation:
        estimator = self._estimator(parameters, 0.001, 1, 0)
        loss, accuracy = self._scores(estimator)
        # Log-probabilities as the model's outputs: the agent derives F1, AUC and the rest from them.
        outputs = np.log(np.clip(estimator.predict_proba(self.test_x), 1e-12, None)) if len(self.test_y) else None
        return Evaluation(loss, accuracy, outputs=outputs)

    def _estimator(self, parameters: dict[str, np.ndarray], learning_rate: float, batch_size: int, seed: int) -> MLPClassifier:
        """A fresh MLPClassifier holding ``parameters``: no optimiser state carries over from another task."""
        hidden = tuple(parameters[f"layer{i}.weight"].shape[1] for i in range(1, len(parameters) // 2))
        estimator = MLPClassifier(
            hidden_layer_sizes=hidden,
            activation=self.activation,
            solver="adam",
            learning_rate_init=learning_rate,
            batch_size=min(max(batch_size, 1), max(len(self.train_y), 1)),
            shuffle=True,
            # A generator, not an int: partial_fit re-reads it every pass, and an int would repeat the order.
            random_state=np.random.RandomState(np.random.MT19937(seed)),
        )
        set_mlp_arrays(estimator, parameters)
        return estimator

    def _scores(self, estimator: MLPClassifier) -> tuple[float, float]:
        """(log loss, accuracy) on the test rows; (0, 0) without test rows."""
        if len(self.test_y) == 0:
            return 0.0, 0.0
        probabilities = estimator.predict_proba(self.test_x)
        loss = log_loss(self.test_y, probabilities, labels=estimator.classes_)
        accuracy = np.mean(estimator.classes_[np.argmax(probabilities, axis=1)] == self.test_y)
        return float(loss), float(accuracy)


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
        save_initial_model(args.write_initial_model, initial_mlp_arrays(args.features, args.classes, hidden, args.seed))
        return 0
    return serve(SklearnMLPTrainer(), name=f"sklearn_mlp (scikit-learn MLPClassifier, strata-trainer {strata_trainer.__version__})")


if __name__ == "__main__":
    sys.exit(main())
