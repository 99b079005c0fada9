"""Shared test helpers. The tests import the package from ``src/`` (this checkout), not an installed copy,
and run the examples with the same ``PYTHONPATH``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(SRC))

from strata_trainer import Rows  # noqa: E402


def child_env(**extra: Optional[str]) -> dict[str, Optional[str]]:
    """Environment changes for a trainer subprocess: this checkout's package first, plus ``extra``
    (None unsets a variable)."""
    paths = [str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(paths), **extra}


def child_environ() -> dict[str, str]:
    """The whole environment for subprocess.run: this process's with child_env()'s changes."""
    merged = {**os.environ, **child_env()}
    return {key: value for key, value in merged.items() if value is not None}


def example_command(name: str, *args: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / name), *args]


def two_rings(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Class 0 inside radius 1, class 1 between radii 1.5 and 2.5 (not linearly separable)."""
    y = rng.integers(0, 2, n)
    radius = np.where(y == 0, rng.uniform(0.0, 1.0, n), rng.uniform(1.5, 2.5, n))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return np.c_[radius * np.cos(angle), radius * np.sin(angle)], y


def rows(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], **extra: object) -> Rows:
    """Rows standardised with the training rows' mean and deviation, as float32 like the agent sends."""
    mean, scale = train[0].mean(axis=0), train[0].std(axis=0)
    return Rows(
        train_x=((train[0] - mean) / scale).astype(np.float32),
        train_y=train[1].astype(np.float32),
        test_x=((test[0] - mean) / scale).astype(np.float32),
        test_y=test[1].astype(np.float32),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)
