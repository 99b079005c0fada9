"""The examples as real trainer processes, through testing.TrainerProcess: they learn, and their
--write-initial-model files hold exactly the tensors they train."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import EXAMPLES, child_env, child_environ, example_command, rows, two_rings

from strata_trainer import Hyperparameters, Model, Rows, Task, load_model
from strata_trainer.testing import TrainerError, TrainerProcess


def start(name: str) -> TrainerProcess:
    return TrainerProcess(example_command(name), env=child_env(), timeout=60)


def write_initial_model(name: str, path: Path, *args: str) -> dict[str, np.ndarray]:
    subprocess.run(example_command(name, "--write-initial-model", str(path), *args), env=child_environ(), check=True, timeout=60)
    return load_model(path)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def custom_model(arrays: dict[str, np.ndarray], features: int, classes: int) -> Model:
    return Model("custom", features, classes, True, tensors=[(n, a.shape) for n, a in arrays.items()])


def blobs(rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters in 4 dimensions."""
    centres = np.array([[3, 0, 0, 1], [-3, 1, 0, 0], [0, -3, 2, 0]], dtype=np.float64)
    x = np.vstack([c + rng.normal(0, 0.7, (per_class, 4)) for c in centres])
    y = np.repeat(np.arange(3), per_class)
    order = rng.permutation(len(y))
    return x[order], y[order]


# --- numpy_logistic ----------------------------------------------------------------------------------------


def test_numpy_logistic_reproduces_the_protocol_vectors() -> None:
    # PROTOCOL §7.6 "A full task": the reference agent's numbers, to 5 decimals.
    x = np.array([[1, 0], [0, 1], [1, 1], [2, -1], [-1, 2]], np.float32)
    y = np.array([0, 1, 1, 0, 1], np.float32)
    data = Rows(x, y, np.array([[0.5, 0.5], [1, -1]], np.float32), np.array([1, 0], np.float32))
    start_weight = np.array([[0.5, -0.5], [0.25, 0]], np.float32)
    start_bias = np.array([0, 0.125], np.float32)
    with start("numpy_logistic.py") as trainer:
        ready = trainer.setup(Model("softmax", 2, 2, True, tensors=[("weight", (2, 2)), ("bias", (2,))]), data)
        assert ready["name"].startswith("numpy_logistic")
        result = trainer.train({"weight": start_weight, "bias": start_bias}, Hyperparameters(0.5, 2, 2, 43, 0.5))
    np.testing.assert_allclose(result.parameters["weight"] - start_weight, [[0.07695, -0.07695], [-0.42847, 0.42847]], atol=1e-5)
    np.testing.assert_allclose(result.parameters["bias"] - start_bias, [-0.20217, 0.20217], atol=1e-5)
    assert result.train_loss == pytest.approx(0.54373, abs=1e-5)
    assert result.eval_loss == pytest.approx(0.70139, abs=1e-5)
    assert result.eval_accuracy == pytest.approx(0.5)


def test_numpy_logistic_learns_a_separable_problem(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rows(blobs(rng, 60), blobs(rng, 30))
    parameters = write_initial_model("numpy_logistic.py", tmp_path / "m.npz", "--features", "4", "--classes", "3")
    hyper = Hyperparameters(learning_rate=0.1, batch_size=8, epochs=1, seed=11)
    with start("numpy_logistic.py") as trainer:
        trainer.setup(custom_model(parameters, 4, 3), data)
        before = trainer.evaluate(parameters)
        assert before.eval_loss == pytest.approx(np.log(3), abs=1e-6)  # all-zero start: uniform prediction
        losses = []
        for task in range(1, 4):
            result = trainer.train(parameters, hyper, task_id=task)
            assert list(result.parameters) == ["weight", "bias"]
            losses.append(result.train_loss)
            parameters = result.parameters
        after = trainer.evaluate(parameters)
    assert losses[0] > losses[-1]
    assert after.eval_loss < 0.3 * before.eval_loss
    assert after.eval_accuracy >= 0.95


def test_numpy_logistic_refuses_wrong_shapes_and_keeps_serving(rng: np.random.Generator) -> None:
    data = rows(blobs(rng, 10), blobs(rng, 5))
    with start("numpy_logistic.py") as trainer:
        trainer.setup(Model("custom", 4, 3, True), data)
        with pytest.raises(TrainerError, match=r"ValueError: weight \(3, 3\) does not fit 4 features"):
            trainer.train({"weight": np.zeros((3, 3)), "bias": np.zeros(3)}, Hyperparameters(0.1, 4, 1, 0))
        assert trainer.evaluate({"weight": np.zeros((4, 3)), "bias": np.zeros(3)}).eval_accuracy > 0


# --- sklearn_mlp -------------------------------------------------------------------------------------------


def test_sklearn_mlp_learns_two_rings(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rows(two_rings(300, rng), two_rings(200, rng))
    parameters = write_initial_model("sklearn_mlp.py", tmp_path / "m.npz", "--features", "2", "--classes", "2", "--seed", "3")
    accuracies = []
    with start("sklearn_mlp.py") as trainer:
        trainer.setup(custom_model(parameters, 2, 2), data)
        accuracies.append(trainer.evaluate(parameters).eval_accuracy)
        for task in range(1, 5):
            result = trainer.train(parameters, Hyperparameters(0.01, 10, 1, seed=task), task_id=task)
            assert result.eval_accuracy == pytest.approx(accuracies[-1])  # measured before training
            parameters = result.parameters
            accuracies.append(trainer.evaluate(parameters).eval_accuracy)
    assert accuracies[0] < 0.8  # a random start cannot separate rings
    assert max(accuracies[1:]) >= 0.95, accuracies
    assert accuracies[-1] >= 0.95, accuracies


def test_sklearn_mlp_federation_of_four_reaches_95_percent(rng: np.random.Generator) -> None:
    # In-process FedAvg over 4 agents, 1 epoch per task, the coordinator's default learning rate (0.01) and
    # batch size (10): ≥ 95 % on held-out rows within 7 rounds (28 tasks).
    example = load_example("sklearn_mlp.py")
    from strata_trainer.sklearn import initial_mlp_arrays

    agents = []
    shards = [two_rings(120, rng) for _ in range(4)]
    pooled = np.vstack([x for x, _ in shards])
    mean, scale = pooled.mean(axis=0), pooled.std(axis=0)
    test_x, test_y = two_rings(1000, rng)
    for x, y in shards:
        agent = example.SklearnMLPTrainer()
        agent.setup(Model("custom", 2, 2, True), Rows(((x - mean) / scale).astype(np.float32), y.astype(np.float32),
                                                     ((test_x - mean) / scale).astype(np.float32), test_y.astype(np.float32)))
        agents.append(agent)
    model = initial_mlp_arrays(2, 2, [16, 16], seed=0)
    accuracy, rounds = 0.0, 0
    while accuracy < 0.95 and rounds < 7:
        rounds += 1
        updates = [agent.train(model, Task(rounds * 10 + i, rounds, Hyperparameters(0.01, 10, 1, rounds * 10 + i))).parameters
                   for i, agent in enumerate(agents)]
        model = {name: np.mean([u[name] for u in updates], axis=0) for name in model}
        accuracy = agents[0].evaluate(model, Task(0, rounds)).eval_accuracy
    assert accuracy >= 0.95, f"{accuracy} after {rounds} rounds"


@pytest.mark.parametrize(("classes", "hidden"), [(2, "16,16"), (3, "8"), (4, "5,6,7")])
def test_sklearn_mlp_initial_model_matches_what_it_trains(tmp_path: Path, rng: np.random.Generator, classes: int, hidden: str) -> None:
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, classes, 40)
    data = rows((x, y), (x[:10], y[:10]))
    parameters = write_initial_model("sklearn_mlp.py", tmp_path / "m.npz", "--features", "3", "--classes", str(classes), "--hidden", hidden)
    widths = [3, *map(int, hidden.split(",")), 1 if classes == 2 else classes]
    expected = []
    for i in range(1, len(widths)):
        expected += [(f"layer{i}.weight", (widths[i - 1], widths[i])), (f"layer{i}.bias", (widths[i],))]
    assert [(n, a.shape) for n, a in parameters.items()] == expected
    assert all(a.dtype == np.float32 for a in parameters.values())
    with start("sklearn_mlp.py") as trainer:
        trainer.setup(custom_model(parameters, 3, classes), data)
        result = trainer.train(parameters, Hyperparameters(0.01, 8, 2, 1))
    assert [(n, a.shape) for n, a in result.parameters.items()] == expected
    assert not np.array_equal(result.parameters["layer1.weight"], parameters["layer1.weight"])


def test_numpy_logistic_initial_model_matches_what_it_trains(tmp_path: Path, rng: np.random.Generator) -> None:
    parameters = write_initial_model("numpy_logistic.py", tmp_path / "m.npz", "--features", "4", "--classes", "3")
    assert [(n, a.shape, a.dtype) for n, a in parameters.items()] == [("weight", (4, 3), np.float32), ("bias", (3,), np.float32)]
    with start("numpy_logistic.py") as trainer:
        trainer.setup(custom_model(parameters, 4, 3), rows(blobs(rng, 5), blobs(rng, 2)))
        result = trainer.train(parameters, Hyperparameters(0.1, 4, 1, 0))
    assert [(n, a.shape) for n, a in result.parameters.items()] == [(n, a.shape) for n, a in parameters.items()]


@pytest.mark.parametrize("example", ["numpy_logistic.py", "sklearn_mlp.py"])
def test_write_initial_model_needs_features_and_classes(tmp_path: Path, example: str) -> None:
    done = subprocess.run(example_command(example, "--write-initial-model", str(tmp_path / "m.npz"), "--features", "2"),
                          env=child_environ(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--classes" in done.stderr
    assert not (tmp_path / "m.npz").exists()


# --- torch_mlp ---------------------------------------------------------------------------------------------


def test_torch_mlp_learns_and_initial_model_matches(tmp_path: Path, rng: np.random.Generator) -> None:
    pytest.importorskip("torch")
    data = rows(two_rings(300, rng), two_rings(200, rng))
    parameters = write_initial_model("torch_mlp.py", tmp_path / "m.npz", "--features", "2", "--classes", "2", "--hidden", "16,16")
    assert [(n, a.shape) for n, a in parameters.items()] == [
        ("0.weight", (16, 2)), ("0.bias", (16,)), ("2.weight", (16, 16)), ("2.bias", (16,)), ("4.weight", (2, 16)), ("4.bias", (2,))
    ]
    with start("torch_mlp.py") as trainer:
        trainer.setup(custom_model(parameters, 2, 2), data)
        before = trainer.evaluate(parameters)
        for task in range(1, 11):
            result = trainer.train(parameters, Hyperparameters(0.1, 10, 2, seed=task, proximal_mu=0.01), task_id=task)
            assert [(n, a.shape) for n, a in result.parameters.items()] == [(n, a.shape) for n, a in parameters.items()]
            parameters = result.parameters
        after = trainer.evaluate(parameters)
    assert after.eval_loss < before.eval_loss
    assert after.eval_accuracy >= 0.9
