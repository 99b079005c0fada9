"""serve() with in-memory streams: every request type, id echo, and every failure that must become an
``error`` reply (or a clean exit) instead of a broken stream."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import pytest

import strata_trainer
from strata_trainer import Evaluation, Hyperparameters, Model, Rows, Task, Trainer, TrainResult, serve
from strata_trainer.protocol import Message, encode_message, read_message

MODEL = Model(
    kind="custom", features=2, outputs=3, classifier=True,
    tensors=[("w", (2, 3)), ("b", (3,))],
)
PARAMETERS = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([0.5, -1.0, 2.0], np.float32)}
HYPER = Hyperparameters(learning_rate=0.25, batch_size=4, epochs=2, seed=2**63 + 5, proximal_mu=0.125)


def make_rows() -> Rows:
    return Rows(
        train_x=np.arange(8, dtype=np.float32).reshape(4, 2),
        train_y=np.array([0, 1, 2, 1], np.float32),
        test_x=np.ones((2, 2), np.float32),
        test_y=np.array([2, 0], np.float32),
        feature_names=["age", "height"],
        labels=["a", "b", "c"],
        source={"kind": "sqlite", "database": "/data/x.sqlite", "table": "t"},
    )


def setup_request(request_id: int = 1, **overrides: Any) -> bytes:
    rows = make_rows()
    header = {
        "type": "setup", "id": request_id, "interface": 1, "model": MODEL.to_json(),
        "feature_names": rows.feature_names, "labels": rows.labels, "source": rows.source, **overrides,
    }
    return encode_message(header, rows.arrays())


def train_request(request_id: int, parameters: Optional[dict[str, np.ndarray]] = None, **overrides: Any) -> bytes:
    header = {"type": "train", "id": request_id, "task": 40 + request_id, "base_version": 7,
              "hyperparameters": HYPER.to_json(), **overrides}
    return encode_message(header, PARAMETERS if parameters is None else parameters)


def evaluate_request(request_id: int) -> bytes:
    return encode_message({"type": "evaluate", "id": request_id, "task": 90, "base_version": 8}, PARAMETERS)


class Recorder(Trainer):
    """Records its calls; train/evaluate results come from replaceable functions."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []
        self.train_result: Callable[[dict[str, np.ndarray], Task], Any] = lambda p, t: TrainResult(
            {name: value + 1.0 for name, value in p.items()}, train_loss=0.75, eval_loss=1.5, eval_accuracy=0.25
        )
        self.evaluation: Callable[[dict[str, np.ndarray], Task], Any] = lambda p, t: Evaluation(0.5, 0.875)

    def setup(self, model: Model, rows: Rows) -> None:
        self.calls.append(("setup", model, rows))

    def train(self, parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        self.calls.append(("train", parameters, task))
        return self.train_result(parameters, task)

    def evaluate(self, parameters: dict[str, np.ndarray], task: Task) -> Evaluation:
        self.calls.append(("evaluate", parameters, task))
        return self.evaluation(parameters, task)


def run(trainer: Trainer, *requests: bytes, name: Optional[str] = "test") -> tuple[int, list[Message]]:
    """Serve the requests; the exit status and the decoded replies (stdout must hold frames only)."""
    stdout = io.BytesIO()
    status = serve(trainer, name=name, stdin=io.BytesIO(b"".join(requests)), stdout=stdout)
    stdout.seek(0)
    replies = []
    while (message := read_message(stdout)) is not None:
        replies.append(message)
    return status, replies


# --- the requests ------------------------------------------------------------------------------------------


def test_setup_replies_ready_and_hands_over_model_and_rows() -> None:
    trainer = Recorder()
    status, replies = run(trainer, setup_request(1))
    assert status == 0
    assert [r.header for r in replies] == [{"type": "ready", "id": 1, "interface": 1, "name": "test"}]
    kind, model, rows = trainer.calls[0]
    assert kind == "setup" and model == MODEL
    expected = make_rows()
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(rows, name), getattr(expected, name))
        assert getattr(rows, name).dtype == np.float32
    assert rows.feature_names == ["age", "height"] and rows.labels == ["a", "b", "c"]
    assert rows.source == expected.source


def test_default_name_says_trainer_class_and_version() -> None:
    _, replies = run(Recorder(), setup_request(1), name=None)
    assert replies[0].header["name"] == f"Recorder (strata-trainer {strata_trainer.__version__})"


def test_train_replies_new_parameters_and_metrics() -> None:
    trainer = Recorder()
    status, replies = run(trainer, setup_request(1), train_request(2))
    assert status == 0
    trained = replies[1]
    assert trained.type == "trained" and trained.id == 2
    assert trained.header["metrics"] == {"train_loss": 0.75, "eval_loss": 1.5, "eval_accuracy": 0.25}
    assert [(n, a.shape) for n, a in trained.arrays.items()] == [("w", (2, 3)), ("b", (3,))]
    for name, value in PARAMETERS.items():
        np.testing.assert_array_equal(trained.arrays[name], value + 1.0)
    _, parameters, task = trainer.calls[1]
    assert list(parameters) == ["w", "b"]
    assert task.task_id == 42 and task.base_version == 7 and task.hyperparameters == HYPER
    assert task.header["type"] == "train"


def test_train_reply_uses_request_order_and_float32_whatever_the_user_returns() -> None:
    trainer = Recorder()
    trainer.train_result = lambda p, t: TrainResult(
        {"b": np.array([1, 2, 3], dtype=np.int64), "w": np.asfortranarray(np.ones((2, 3)) * 0.1)}, train_loss=np.float64(2)
    )
    _, replies = run(trainer, setup_request(1), train_request(2))
    trained = replies[1]
    assert list(trained.arrays) == ["w", "b"]
    np.testing.assert_array_equal(trained.arrays["w"], np.float32(0.1) * np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(trained.arrays["b"], [1.0, 2.0, 3.0])
    assert trained.header["metrics"] == {"train_loss": 2.0}  # optional metrics left out, not null


def test_evaluate_replies_metrics_without_arrays() -> None:
    trainer = Recorder()
    _, replies = run(trainer, setup_request(1), evaluate_request(2))
    assert replies[1].header == {"type": "evaluated", "id": 2, "metrics": {"eval_loss": 0.5, "eval_accuracy": 0.875}}
    assert replies[1].arrays == {}
    _, parameters, task = trainer.calls[1]
    assert task.task_id == 90 and task.base_version == 8 and task.hyperparameters is None
    np.testing.assert_array_equal(parameters["w"], PARAMETERS["w"])


def test_every_reply_echoes_its_request_id() -> None:
    ids = [5, 6, 1000, 2**53 + 1]
    _, replies = run(Recorder(), setup_request(ids[0]), train_request(ids[1]), evaluate_request(ids[2]), train_request(ids[3]))
    assert [r.id for r in replies] == ids
    assert [r.type for r in replies] == ["ready", "trained", "evaluated", "trained"]


def test_setup_again_replaces_the_rows() -> None:
    trainer = Recorder()
    _, replies = run(trainer, setup_request(1), setup_request(2), train_request(3))
    assert [r.type for r in replies] == ["ready", "ready", "trained"]
    assert [c[0] for c in trainer.calls] == ["setup", "setup", "train"]


# --- ending ------------------------------------------------------------------------------------------------


def test_eof_exits_zero_without_replies() -> None:
    assert run(Recorder()) == (0, [])
    status, replies = run(Recorder(), setup_request(1))
    assert status == 0 and len(replies) == 1


def test_shutdown_exits_zero_without_reply_and_reads_no_further() -> None:
    trainer = Recorder()
    status, replies = run(trainer, setup_request(1), encode_message({"type": "shutdown", "id": 2}), train_request(3))
    assert status == 0
    assert [r.type for r in replies] == ["ready"]
    assert [c[0] for c in trainer.calls] == ["setup"]


def test_shutdown_needs_no_id() -> None:
    status, replies = run(Recorder(), setup_request(1), encode_message({"type": "shutdown"}))
    assert status == 0 and [r.type for r in replies] == ["ready"]


def test_closed_stdout_exits_one() -> None:
    class Closed(io.BytesIO):
        def write(self, data: Any) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    status = serve(Recorder(), stdin=io.BytesIO(setup_request(1)), stdout=Closed())
    assert status == 1


# --- failures of user code ---------------------------------------------------------------------------------


def test_user_exception_becomes_error_reply_and_serving_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = Recorder()

    def fail(parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        raise ValueError("the rows are too few")

    trainer.train_result = fail
    status, replies = run(trainer, setup_request(1), train_request(2), evaluate_request(3))
    assert status == 0
    assert replies[1].header == {"type": "error", "id": 2, "message": "ValueError: the rows are too few"}
    assert replies[2].type == "evaluated" and replies[2].id == 3
    stderr = capsys.readouterr().err
    assert "Traceback" in stderr and "in fail" in stderr and "ValueError: the rows are too few" in stderr


def test_exception_in_setup_and_evaluate_and_long_messages_are_cut() -> None:
    class Broken(Recorder):
        def setup(self, model: Model, rows: Rows) -> None:
            raise KeyError("x" * 5000)

    trainer = Broken()
    trainer.evaluation = lambda p, t: 1 / 0
    _, replies = run(trainer, setup_request(1), evaluate_request(2))
    message = replies[0].header["message"]
    assert replies[0].type == "error" and message.startswith("KeyError: 'xxx")
    assert len(message.encode()) <= 1000 and message.endswith("…")
    # setup failed, so the trainer is not set up: evaluate is refused before reaching user code
    assert replies[1].header["message"] == "RequestError: evaluate before a successful setup"


def test_exception_without_text_is_named() -> None:
    trainer = Recorder()

    def fail(parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        raise MemoryError()

    trainer.train_result = fail
    _, replies = run(trainer, setup_request(1), train_request(2))
    assert replies[1].header["message"] == "MemoryError"


def result_with(**changes: Any) -> Callable[[dict[str, np.ndarray], Task], Any]:
    def make(parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        new = {name: value.copy() for name, value in parameters.items()}
        new.update(changes.pop("parameters", {}))
        fields: dict[str, Any] = {"parameters": new, "train_loss": 0.5, **changes}
        for key in [k for k, v in fields.items() if v is _DROP]:
            del fields[key]
        return TrainResult(**fields)

    return make


_DROP = object()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (result_with(parameters={"w": np.ones((3, 2))}), "tensor 'w' with shape (3, 2), expected (2, 3)"),
        (result_with(parameters={"b": np.ones(())}), "tensor 'b' with shape (), expected (3,)"),
        (result_with(parameters={"b": np.array([0.0, np.nan, 1.0])}), "tensor 'b' with 1 NaN or infinite"),
        (result_with(parameters={"w": np.full((2, 3), np.inf)}), "tensor 'w' with 6 NaN or infinite"),
        (result_with(parameters={"b": np.array([1e39, 0.0, 0.0])}), "tensor 'b' with 1 NaN or infinite value(s) as float32"),
        (result_with(parameters={"b": np.array(["a", "b", "c"])}), "tensor 'b' of dtype <U1"),
        (result_with(parameters={"extra": np.ones(1)}), "unexpected tensor 'extra'"),
        (result_with(train_loss=float("nan")), "metric train_loss is nan"),
        (result_with(train_loss="low"), "metric train_loss is str"),
        (result_with(train_loss=None), "metric train_loss is NoneType"),
        (result_with(eval_accuracy=float("inf")), "metric eval_accuracy is inf"),
        (lambda p, t: TrainResult({"w": p["w"]}, 0.5), "no tensor 'b'"),
        (lambda p, t: TrainResult([p["w"], p["b"]], 0.5), "parameters of type list"),  # type: ignore[arg-type]
        (lambda p, t: {"parameters": p, "train_loss": 0.5}, "returned dict, not a TrainResult"),
        (lambda p, t: None, "returned NoneType, not a TrainResult"),
    ],
)
def test_bad_train_result_becomes_error_reply(make: Callable[..., Any], needle: str) -> None:
    trainer = Recorder()
    trainer.train_result = make
    status, replies = run(trainer, setup_request(1), train_request(2), evaluate_request(3))
    assert status == 0
    assert replies[1].type == "error" and replies[1].id == 2 and replies[1].arrays == {}
    assert replies[1].header["message"].startswith("ResultError: ")
    assert needle in replies[1].header["message"]
    assert replies[2].type == "evaluated"  # still serving


def test_outputs_travel_with_the_evaluation() -> None:
    """The model's outputs on the test rows go to the agent as the array ``outputs`` (float32, rows x outputs)."""
    trainer = Recorder()
    trainer.evaluation = lambda p, t: Evaluation(0.5, 0.5, outputs=[[1, 2, 3], [4, 5, 6.5]])
    _, replies = run(trainer, setup_request(1), evaluate_request(2))
    assert replies[1].type == "evaluated" and replies[1].header["metrics"] == {"eval_loss": 0.5, "eval_accuracy": 0.5}
    assert list(replies[1].arrays) == ["outputs"]
    assert replies[1].arrays["outputs"].dtype == np.float32
    assert replies[1].arrays["outputs"].tolist() == [[1, 2, 3], [4, 5, 6.5]]


@pytest.mark.parametrize(
    ("outputs", "needle"),
    [
        ([[1, 2, 3]], "shape (1, 3)"),
        ([1, 2], "shape (2,)"),
        ([[1, 2, 3], [4, float("nan"), 6]], "1 NaN or infinite"),
        ([["a", "b", "c"], ["d", "e", "f"]], "not real numbers"),
    ],
)
def test_bad_outputs_become_error_reply(outputs: Any, needle: str) -> None:
    trainer = Recorder()
    trainer.evaluation = lambda p, t: Evaluation(0.5, 0.5, outputs=outputs)
    _, replies = run(trainer, setup_request(1), evaluate_request(2))
    assert replies[1].type == "error" and needle in replies[1].header["message"], replies[1].header


@pytest.mark.parametrize(
    ("evaluation", "needle"),
    [
        (Evaluation(float("nan"), 0.5), "metric eval_loss is nan"),
        (Evaluation(0.5, None), "metric eval_accuracy is NoneType"),  # type: ignore[arg-type]
        ((0.5, 0.5), "returned tuple, not an Evaluation"),
    ],
)
def test_bad_evaluation_becomes_error_reply(evaluation: Any, needle: str) -> None:
    trainer = Recorder()
    trainer.evaluation = lambda p, t: evaluation
    _, replies = run(trainer, setup_request(1), evaluate_request(2))
    assert replies[1].type == "error" and needle in replies[1].header["message"]


# --- malformed requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "needle"),
    [
        ([train_request(1)], "RequestError: train before a successful setup"),
        ([evaluate_request(1)], "RequestError: evaluate before a successful setup"),
        ([encode_message({"type": "fly", "id": 1})], "RequestError: unknown request type 'fly'"),
        ([setup_request(1, interface=2)], "interface 2 is not supported"),
        ([setup_request(1, model="softmax")], "model is not an object"),
        ([setup_request(1, model={"kind": "custom"})], "model is malformed"),
        ([encode_message({"type": "setup", "id": 1, "model": MODEL.to_json()}, {"train_x": np.ones((2, 2))})],
         "lacks the arrays train_y, test_x, test_y"),
        ([encode_message({"type": "setup", "id": 1, "model": MODEL.to_json()},
                         {"train_x": np.ones((2, 2)), "train_y": np.ones(3), "test_x": np.ones((1, 2)), "test_y": np.ones(1)})],
         "one value per row"),
        ([encode_message({"type": "setup", "id": 1, "model": MODEL.to_json()},
                         {"train_x": np.ones((2, 2)), "train_y": np.ones(2), "test_x": np.ones((1, 3)), "test_y": np.ones(1)})],
         "same width"),
        ([setup_request(1), train_request(1, hyperparameters=None)], "no hyperparameters"),
        ([setup_request(1), train_request(1, hyperparameters={"learning_rate": 0.1})], "hyperparameters lack"),
        ([setup_request(1), train_request(1, task="seven")], "no whole number 'task'"),
    ],
)
def test_malformed_request_becomes_error_reply(requests: list[bytes], needle: str) -> None:
    trainer = Recorder()
    status, replies = run(trainer, *requests, setup_request(99))
    assert status == 0
    assert replies[-2].type == "error" and needle in replies[-2].header["message"]
    assert replies[-1].type == "ready" and replies[-1].id == 99  # still serving


def test_bad_frame_with_readable_id_is_answered_and_skipped() -> None:
    bad = struct.pack("<IQ", 38, 3) + b'{"type":"train","id":12,"arrays":[]}  ' + b"abc"
    status, replies = run(Recorder(), setup_request(1), bad, evaluate_request(13))
    assert status == 0
    assert replies[1].header["type"] == "error" and replies[1].id == 12
    assert "ProtocolError: body length 3 differs" in replies[1].header["message"]
    assert replies[2].type == "evaluated" and replies[2].id == 13


@pytest.mark.parametrize(
    "bad",
    [
        struct.pack("<IQ", 0, 0),  # header length 0: the stream cannot be followed
        struct.pack("<IQ", 17 * 2**20, 0) + b"{}",
        struct.pack("<IQ", 30, 0) + b"{",  # end of file inside the header
        encode_message({"type": "train"}),  # no id: nothing to answer to
        struct.pack("<IQ", 2, 1) + b"{}x",  # no type, no id
    ],
)
def test_unanswerable_input_exits_two_without_writing(bad: bytes) -> None:
    trainer = Recorder()
    status, replies = run(trainer, setup_request(1), bad, setup_request(2))
    assert status == 2
    assert [r.type for r in replies] == ["ready"]
