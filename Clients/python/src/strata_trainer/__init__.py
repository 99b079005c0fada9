"""strata-trainer: write the local trainer that ``strata-agent --trainer-command`` runs.

Subclass ``Trainer``, implement ``setup``, ``train`` and ``evaluate``, and call ``serve``; see README.md and
docs/PROTOCOL.md §11. Helpers for scikit-learn and PyTorch live in ``strata_trainer.sklearn`` and
``strata_trainer.torch`` (imported on demand, so neither library is needed here), a fake agent for tests in
``strata_trainer.testing``.
"""

from .npz import load_model, save_initial_model
from .protocol import ProtocolError
from .trainer import (
    INTERFACE,
    Evaluation,
    Hyperparameters,
    Model,
    RequestError,
    ResultError,
    Rows,
    Task,
    Trainer,
    TrainResult,
    protect_stdout,
    serve,
)

__version__ = "0.1.0"

__all__ = [
    "INTERFACE",
    "Evaluation",
    "Hyperparameters",
    "Model",
    "ProtocolError",
    "RequestError",
    "ResultError",
    "Rows",
    "Task",
    "TrainResult",
    "Trainer",
    "__version__",
    "load_model",
    "protect_stdout",
    "save_initial_model",
    "serve",
]
