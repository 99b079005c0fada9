"""The trainer's side of the local trainer interface (docs/PROTOCOL.md §11): the API a data owner implements
(``Trainer``) and the loop that serves it to strata-agent (``serve``)."""

from __future__ import annotations

import abc
import math
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Optional

import numpy as np

from . import protocol
from .protocol import Message, ProtocolError

__all__ = [
    "INTERFACE",
    "Evaluation",
    "Hyperparameters",
    "Model",
    "RequestError",
    "ResultError",
    "Rows",
    "Task",
    "TrainResult",
    "Trainer",
    "protect_stdout",
    "serve",
]

#: The interface revision this package speaks (the ``interface`` of ``setup`` and ``ready``).
INTERFACE = 1
#: An error reply's message is cut to this many UTF-8 bytes (the agent reports at most 1024).
MAX_ERROR_MESSAGE = 1000

Shape = tuple[int, ...]


class RequestError(ValueError):
    """A request the trainer cannot act on (a missing key, train before setup, …): answered with ``error``."""


class ResultError(ValueError):
    """What the user's ``train``/``evaluate`` returned cannot be sent: answered with ``error``."""


# ---------------------------------------------------------------------------------------------------------
# What the agent sends


@dataclass(frozen=True)
class Model:
    """The federation's model as the coordinator announced it (setup's ``model``).

    ``tensors`` lists each tensor's name and shape in manifest order; a ``train`` request's parameters come in
    that order. ``hidden`` and ``activation`` are set for ``kind == "mlp"`` only.
    """

    kind: str
    features: int
    outputs: int
    classifier: bool
    hidden: list[int] = field(default_factory=list)
    activation: Optional[str] = None
    tensors: list[tuple[str, Shape]] = field(default_factory=list)

    @classmethod
    def from_json(cls, value: Any) -> Model:
        if not isinstance(value, dict):
            raise RequestError("setup's model is not an object")
        try:
            return cls(
                kind=str(value["kind"]),
                features=int(value["features"]),
                outputs=int(value["outputs"]),
                classifier=bool(value["classifier"]),
                hidden=[int(width) for width in value.get("hidden") or []],
                activation=None if value.get("activation") is None else str(value["activation"]),
                tensors=[(str(t["name"]), tuple(int(d) for d in t["shape"])) for t in value.get("tensors") or []],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RequestError(f"setup's model is malformed: {type(error).__name__} {error}") from None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "kind": self.kind,
            "features": self.features,
            "outputs": self.outputs,
            "classifier": self.classifier,
            "tensors": [{"name": name, "shape": list(shape)} for name, shape in self.tensors],
        }
        if self.kind == "mlp":
            value["hidden"] = list(self.hidden)
            value["activation"] = self.activation
        return value


@dataclass
class Rows:
    """The agent's rows after preprocessing (§7.0).

    ``train_x`` is n × f and ``test_x`` m × f (float32, columns in ``feature_names`` order); ``train_y`` and
    ``test_y`` hold class numbers 0 … c−1 as floats for a classifier (``labels[k]`` is class k's text label,
    ``[]`` for numeric labels) or the standardised target for a regression. ``source`` says where the agent
    read them, for a trainer that reads the data itself.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    feature_names: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays in the order a setup request carries them."""
        return {"train_x": self.train_x, "train_y": self.train_y, "test_x": self.test_x, "test_y": self.test_y}


@dataclass(frozen=True)
class Hyperparameters:
    """The task's training settings (§3, §7.3): SGD step, rows per batch, passes, shuffle seed, FedProx μ."""

    learning_rate: float
    batch_size: int
    epochs: int
    seed: int
    proximal_mu: float = 0.0

    @classmethod
    def from_json(cls, value: Any) -> Hyperparameters:
        if not isinstance(value, dict):
            raise RequestError("train has no hyperparameters object")
        try:
            return cls(
                learning_rate=float(value["learning_rate"]),
                batch_size=int(value["batch_size"]),
                epochs=int(value["epochs"]),
                seed=int(value["seed"]),
                proximal_mu=float(value.get("proximal_mu", 0.0)),
            )
        except KeyError as error:
            raise RequestError(f"hyperparameters lack {error}") from None
        except (TypeError, ValueError) as error:
            raise RequestError(f"hyperparameters are malformed: {error}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "seed": self.seed,
            "proximal_mu": self.proximal_mu,
        }


@dataclass(frozen=True)
class Task:
    """The task a train or evaluate request is for. ``hyperparameters`` is None for evaluate;
    ``header`` is the whole request header (keys that later revisions add)."""

    task_id: int
    base_version: int
    hyperparameters: Optional[Hyperparameters] = None
    header: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


# ---------------------------------------------------------------------------------------------------------
# What the user returns


@dataclass
class TrainResult:
    """The outcome of ``Trainer.train``.

    ``parameters``: the new parameters (not a delta) with the received names and shapes; any real dtype
    (converted to float32). ``train_loss``: the mean training loss (§7.4). ``eval_loss``/``eval_accuracy``:
    the **received** parameters on the test rows, before training (None: the agent reports 0).
    """

    parameters: dict[str, np.ndarray]
    train_loss: float
    eval_loss: Optional[float] = None
    eval_accuracy: Optional[float] = None


@dataclass
class Evaluation:
    """The outcome of ``Trainer.evaluate``: the received parameters on the test rows.

    ``outputs`` (optional): the model's outputs on the test rows, in their order, shape (rows, model outputs)
    (or (rows,) for a model of one output): a classifier's logits (log-probabilities do: the arg-max is the
    predicted class and the softmax the probabilities), a regression's prediction in the standardised target's
    units (as ``rows.test_y``). With them the agent computes the loss, the accuracy and the evaluation statistics
    the coordinator pools into F1, AUC, RMSE, MAE and R² (PROTOCOL §11.2); without them it sends the two metrics.
    """

    eval_loss: float
    eval_accuracy: float
    outputs: Optional[npt.ArrayLike] = None


class Trainer(abc.ABC):
    """Subclass this and pass an instance to ``serve``.

    Exceptions raised by these methods are answered with an ``error`` reply (the agent reports the task
    failed) and the trainer keeps serving; the traceback goes to stderr, which the agent logs.
    """

    @abc.abstractmethod
    def setup(self, model: Model, rows: Rows) -> None:
        """Keep the model description and the rows. Called first, and again when the rows change."""

    @abc.abstractmethod
    def train(self, parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        """Train from ``parameters`` (in manifest order) with ``task.hyperparameters``; return the new ones."""

    @abc.abstractmethod
    def evaluate(self, parameters: dict[str, np.ndarray], task: Task) -> Evaluation:
        """Measure ``parameters`` on the test rows."""


# ---------------------------------------------------------------------------------------------------------
# The loop


def serve(
    trainer: Trainer,
    *,
    name: Optional[str] = None,
    stdin: Optional[IO[bytes]] = None,
    stdout: Optional[IO[bytes]] = None,
) -> int:
    """Answer the agent's requests until ``shutdown`` or end of input; return the process's exit status.

    Without ``stdin``/``stdout`` it uses the process's standard streams, and first moves ``sys.stdout`` (and
    file descriptor 1, which child processes inherit) to stderr so that nothing but replies reaches the
    agent. Returns 0 after ``shutdown`` or end of input, 1 when the agent stopped reading, and 2 when the
    input is so malformed that the stream cannot be followed any more.
    """
    requests = stdin if stdin is not None else _claim_stdin()
    replies = stdout if stdout is not None else protect_stdout()
    session = _Session(trainer, name or f"{type(trainer).__name__} (strata-trainer {_version()})")
    while True:
        try:
            request = protocol.read_message(requests)
        except ProtocolError as error:
            if error.synchronized and error.request_id is not None:
                reply: tuple[dict[str, Any], Optional[dict[str, np.ndarray]]] = (
                    _error_reply(error.request_id, f"ProtocolError: {error}"),
                    None,
                )
            else:
                _log(f"unreadable request, stopping: {error}")
                return 2
        else:
            if request is None or request.type == "shutdown":
                return 0
            if request.id is None:
                _log(f'request {request.type!r} has no numeric "id", stopping')
                return 2
            reply = session.handle(request)
        try:
            _send(replies, *reply)
        except (BrokenPipeError, ConnectionResetError, ValueError) as error:
            # ValueError: the stream was closed under us. Either way nobody reads the replies any more.
            _log(f"cannot write the reply: {error}")
            return 1


class _Session:
    """Turns requests into replies; keeps whether setup has happened."""

    def __init__(self, trainer: Trainer, name: str) -> None:
        self.trainer = trainer
        self.name = name
        self.is_set_up = False
        self.outputs_shape = (0, 0)  # (test rows, model outputs), from setup

    def handle(self, request: Message) -> tuple[dict[str, Any], Optional[dict[str, np.ndarray]]]:
        request_id = request.id
        assert request_id is not None
        handlers = {"setup": self._setup, "train": self._train, "evaluate": self._evaluate}
        handler = handlers.get(request.type)
        try:
            if handler is None:
                raise RequestError(f"unknown request type {request.type!r}")
            header, arrays = handler(request)
        except Exception as error:  # noqa: BLE001 - any failure of user code becomes an error reply
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            return _error_reply(request_id, _describe(error)), None
        header["id"] = request_id
        return header, arrays

    def _setup(self, request: Message) -> tuple[dict[str, Any], None]:
        header = request.header
        interface = header.get("interface", INTERFACE)
        if interface != INTERFACE:
            raise RequestError(f"interface {interface!r} is not supported (this trainer speaks {INTERFACE})")
        if "model" not in header:
            raise RequestError("setup has no model")
        model = Model.from_json(header["model"])
        rows = _rows(request)
        self.outputs_shape = (len(rows.test_y), model.outputs)
        self.is_set_up = False  # a failing setup leaves no half-set-up trainer behind
        self.trainer.setup(model, rows)
        self.is_set_up = True
        return {"type": "ready", "interface": INTERFACE, "name": self.name}, None

    def _train(self, request: Message) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self._require_setup("train")
        task = Task(
            task_id=_required_int(request.header, "task"),
            base_version=_required_int(request.header, "base_version"),
            hyperparameters=Hyperparameters.from_json(request.header.get("hyperparameters")),
            header=request.header,
        )
        expected = [(name, value.shape) for name, value in request.arrays.items()]
        result = self.trainer.train(request.arrays, task)
        if not isinstance(result, TrainResult):
            raise ResultError(f"train() returned {type(result).__name__}, not a TrainResult")
        parameters = _checked_parameters(result.parameters, expected)
        metrics = {"train_loss": _finite("train_loss", result.train_loss)}
        for key, value in (("eval_loss", result.eval_loss), ("eval_accuracy", result.eval_accuracy)):
            if value is not None:
                metrics[key] = _finite(key, value)
        return {"type": "trained", "metrics": metrics}, parameters

    def _evaluate(self, request: Message) -> tuple[dict[str, Any], Optional[dict[str, np.ndarray]]]:
        self._require_setup("evaluate")
        task = Task(
            task_id=_required_int(request.header, "task"),
            base_version=_required_int(request.header, "base_version"),
            header=request.header,
        )
        result = self.trainer.evaluate(request.arrays, task)
        if not isinstance(result, Evaluation):
            raise ResultError(f"evaluate() returned {type(result).__name__}, not an Evaluation")
        metrics = {
            "eval_loss": _finite("eval_loss", result.eval_loss),
            "eval_accuracy": _finite("eval_accuracy", result.eval_accuracy),
        }
        if result.outputs is None:
            return {"type": "evaluated", "metrics": metrics}, None
        return {"type": "evaluated", "metrics": metrics}, {"outputs": _checked_outputs(result.outputs, self.outputs_shape)}

    def _require_setup(self, what: str) -> None:
        if not self.is_set_up:
            raise RequestError(f"{what} before a successful setup")


def _rows(request: Message) -> Rows:
    arrays = request.arrays
    missing = [name for name in ("train_x", "train_y", "test_x", "test_y") if name not in arrays]
    if missing:
        raise RequestError(f"setup lacks the arrays {', '.join(missing)}")
    train_x, train_y, test_x, test_y = arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"]
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise RequestError(f"train_x {train_x.shape} and test_x {test_x.shape} are not matrices of the same width")
    if train_y.shape != train_x.shape[:1] or test_y.shape != test_x.shape[:1]:
        raise RequestError(f"train_y {train_y.shape} / test_y {test_y.shape} do not hold one value per row")
    header = request.header
    source = header.get("source")
    return Rows(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        feature_names=[str(name) for name in header.get("feature_names") or []],
        labels=[str(label) for label in header.get("labels") or []],
        source=dict(source) if isinstance(source, dict) else {},
    )


def _checked_outputs(returned: Any, shape: tuple[int, int]) -> np.ndarray:
    """The user's outputs as float32 (rows, outputs), C order; ResultError naming what is wrong."""
    value = np.asarray(returned)
    if value.dtype.kind not in "biuf":
        raise ResultError(f"evaluate() returned outputs of dtype {value.dtype}, not real numbers")
    if value.shape == (shape[0],) and shape[1] == 1:
        value = value.reshape(shape)
    if value.shape != shape:
        raise ResultError(f"evaluate() returned outputs of shape {value.shape}; the {shape[0]} test rows and "
                          f"{shape[1]} model outputs need {shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        converted = np.asarray(value, dtype=np.float32, order="C")
    bad = int(np.size(converted) - np.count_nonzero(np.isfinite(converted)))
    if bad:
        raise ResultError(f"evaluate() returned outputs with {bad} NaN or infinite value(s) as float32")
    return converted


def _checked_parameters(returned: Any, expected: list[tuple[str, Shape]]) -> dict[str, np.ndarray]:
    """The user's parameters as float32, C order, in the request's order; ResultError naming what is wrong."""
    if not isinstance(returned, Mapping):
        raise ResultError(f"train() returned parameters of type {type(returned).__name__}, not a dict of arrays")
    expected_names = [name for name, _ in expected]
    missing = [name for name in expected_names if name not in returned]
    if missing:
        raise ResultError(f"train() returned no tensor {', '.join(map(repr, missing))}")
    unexpected = [name for name in returned if name not in expected_names]
    if unexpected:
        raise ResultError(f"train() returned the unexpected tensor {', '.join(map(repr, unexpected))}")
    checked: dict[str, np.ndarray] = {}
    for name, shape in expected:
        value = np.asarray(returned[name])
        if value.dtype.kind not in "biuf":
            raise ResultError(f"train() returned tensor {name!r} of dtype {value.dtype}, not real numbers")
        if value.shape != shape:
            raise ResultError(f"train() returned tensor {name!r} with shape {value.shape}, expected {shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            converted = np.asarray(value, dtype=np.float32, order="C")
        bad = int(np.size(converted) - np.count_nonzero(np.isfinite(converted)))
        if bad:
            raise ResultError(f"train() returned tensor {name!r} with {bad} NaN or infinite value(s) as float32")
        checked[name] = converted
    return checked


def _finite(key: str, value: Any) -> float:
    # float() also takes NumPy and PyTorch scalars; bools and strings are mistakes, not numbers.
    try:
        if isinstance(value, (bool, np.bool_, str, bytes)):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ResultError(f"metric {key} is {type(value).__name__}, not a number") from None
    if not math.isfinite(number):
        raise ResultError(f"metric {key} is {number}, not a finite number")
    return number


def _required_int(header: Mapping[str, Any], key: str) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{header.get('type')} has no whole number {key!r}")
    return value


def _error_reply(request_id: int, message: str) -> dict[str, Any]:
    return {"type": "error", "id": request_id, "message": message}


def _describe(error: BaseException) -> str:
    """``"ExceptionType: text"``, cut to MAX_ERROR_MESSAGE UTF-8 bytes (the agent forwards it)."""
    text = str(error).strip()
    message = f"{type(error).__name__}: {text}" if text else type(error).__name__
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_ERROR_MESSAGE:
        return message
    return encoded[: MAX_ERROR_MESSAGE - 3].decode("utf-8", errors="ignore") + "…"


def _send(stream: IO[bytes], header: dict[str, Any], arrays: Optional[Mapping[str, np.ndarray]]) -> None:
    try:
        data = protocol.encode_message(header, arrays)
    except ProtocolError as error:
        # Only reachable through a bug here (results are checked first): still answer with a valid frame.
        data = protocol.encode_message(_error_reply(header["id"], f"ProtocolError: {error}"))
    stream.write(data)
    stream.flush()


_claimed_stdin: Optional[IO[bytes]] = None
_claimed_stdout: Optional[IO[bytes]] = None


def protect_stdout() -> IO[bytes]:
    """Move ``sys.stdout`` and file descriptor 1 to stderr now; return the private stream for replies.

    ``serve`` does this when it starts. Call it first thing in a trainer whose imports or set-up print
    with a flush before ``serve`` runs (``print(..., flush=True)``, ``python3 -u``, ``PYTHONUNBUFFERED``):
    such output would otherwise reach the agent ahead of the first reply and break the stream. Calling it
    again returns the same stream.
    """
    global _claimed_stdout
    if _claimed_stdout is None:
        replies = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)  # child processes and C libraries write to fd 1: send that to stderr too
        try:
            sys.stdout.flush()  # text printed earlier and still buffered now lands on stderr
        except (AttributeError, OSError, ValueError):
            pass  # no usable sys.stdout: nothing buffered to move
        sys.stdout = sys.stderr
        _claimed_stdout = replies
    return _claimed_stdout


def _claim_stdin() -> IO[bytes]:
    """A private binary reader of the requests; fd 0 and ``sys.stdin`` then read /dev/null so that user code
    (or a child process) cannot swallow requests."""
    global _claimed_stdin
    if _claimed_stdin is None:
        requests = os.fdopen(os.dup(0), "rb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdin = open(os.devnull, encoding="utf-8")  # lives as long as the process
        _claimed_stdin = requests
    return _claimed_stdin


def _log(text: str) -> None:
    print(f"strata-trainer: {text}", file=sys.stderr, flush=True)


def _version() -> str:
    from . import __version__

    return __version__

