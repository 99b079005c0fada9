"""The package's surface: what `import strata_trainer` gives and does not drag in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, child_env, child_environ

import strata_trainer
from strata_trainer import Hyperparameters, Model, Rows
from strata_trainer.testing import TrainerProcess


def test_public_names() -> None:
    for name in ["Trainer", "Model", "Rows", "Hyperparameters", "Task", "TrainResult", "Evaluation", "serve",
                 "save_initial_model", "protect_stdout", "ProtocolError"]:
        assert hasattr(strata_trainer, name), name
    assert strata_trainer.__version__.count(".") == 2


def test_import_needs_neither_sklearn_nor_torch_and_touches_no_stream() -> None:
    code = (
        "import sys, strata_trainer, strata_trainer.torch, strata_trainer.testing;"
        "assert 'sklearn' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules);"
        "assert sys.stdout is sys.__stdout__"
    )
    subprocess.run([sys.executable, "-c", code], env=child_environ(), check=True, timeout=60)


def test_model_json_round_trip() -> None:
    model = strata_trainer.Model("mlp", 4, 3, True, hidden=[8, 8], activation="tanh",
                                 tensors=[("layer1.weight", (4, 8)), ("layer1.bias", (8,))])
    assert strata_trainer.Model.from_json(model.to_json()) == model
    custom = strata_trainer.Model("custom", 2, 2, True, tensors=[("w", (2, 2))])
    assert "hidden" not in custom.to_json()
    assert strata_trainer.Model.from_json(custom.to_json()) == custom


def test_readme_minimal_trainer_works(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A minimal trainer", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "minimal.py"
    script.write_text(code, encoding="utf-8")
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(-2, 1, (40, 2)), rng.normal(2, 1, (40, 2))]).astype(np.float32)
    y = np.repeat([0, 1], 40).astype(np.float32)
    parameters = {"weight": np.zeros((2, 2), np.float32), "bias": np.zeros(2, np.float32)}
    model = Model("custom", 2, 2, True, tensors=[("weight", (2, 2)), ("bias", (2,))])
    with TrainerProcess([sys.executable, str(script)], env=child_env(), timeout=60) as trainer:
        trainer.setup(model, Rows(x, y, x, y))
        result = trainer.train(parameters, Hyperparameters(0.5, 10, 5, 0))
        assert result.eval_loss == pytest.approx(np.log(2), abs=1e-6) and result.train_loss < np.log(2)
        assert trainer.evaluate(result.parameters).eval_accuracy >= 0.95
