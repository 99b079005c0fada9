"""A small fake agent for testing a trainer: it starts the trainer as a subprocess and speaks §11 to it,
checking every reply the way strata-agent does.

    with TrainerProcess(["python3", "my_trainer.py"]) as trainer:
        trainer.setup(model, rows)
        result = trainer.train(parameters, Hyperparameters(0.1, 10, 1, seed=7))
        print(result.train_loss, trainer.evaluate(result.parameters).eval_accuracy)

Every wait has a timeout: a trainer that hangs fails the test with TimeoutError instead of hanging it.
"""

from __future__ import annotations

import collections
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Optional, Union

import numpy as np
import numpy.typing as npt

from . import protocol
from .protocol import Message, ProtocolError
from .trainer import INTERFACE, Evaluation, Hyperparameters, Model, Rows, TrainResult

__all__ = ["TrainerError", "TrainerExited", "TrainerProcess"]

#: How many of the trainer's last stderr lines are kept (the agent keeps 20; tests like more).
STDERR_LINES = 200


class TrainerError(Exception):
    """The trainer answered a request with an ``error`` reply; ``message`` is its text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TrainerExited(Exception):
    """The trainer closed its stdout (usually: it exited) while a reply was awaited."""


class TrainerProcess:
    """Runs ``command`` (an argument list, no shell) as a trainer and sends it requests.

    ``timeout`` bounds each request (write and reply) and ``close``. The child's environment is this
    process's plus ``env`` (a None value unsets a variable) plus ``STRATA_TRAINER_INTERFACE=1``, as the
    agent sets it; its stderr is collected in ``stderr_lines``
    and, with ``echo_stderr``, copied to this process's stderr.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        timeout: float = 60.0,
        env: Optional[Mapping[str, Optional[str]]] = None,
        cwd: Optional[Union[str, os.PathLike[str]]] = None,
        echo_stderr: bool = False,
    ) -> None:
        self.timeout = timeout
        self._next_id = 1
        self._replies: queue.Queue[Union[Message, BaseException, None]] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._stderr_lock = threading.Lock()
        changes: dict[str, Optional[str]] = {**(env or {}), "STRATA_TRAINER_INTERFACE": str(INTERFACE)}
        environment = {key: value for key, value in {**os.environ, **changes}.items() if value is not None}
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            cwd=cwd,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        # Reading happens on threads, so that waiting for a reply can time out.
        self._reader = threading.Thread(target=self._read_replies, args=(self.process.stdout,), daemon=True)
        self._stderr_reader = threading.Thread(
            target=self._read_stderr, args=(self.process.stderr, echo_stderr), daemon=True
        )
        self._reader.start()
        self._stderr_reader.start()

    # --- requests --------------------------------------------------------------------------------------

    def setup(self, model: Model, rows: Rows, *, source: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """Send ``setup``; return the ``ready`` header (checked to have ``interface`` 1 and a ``name``)."""
        header = {
            "type": "setup",
            "interface": INTERFACE,
            "model": model.to_json(),
            "feature_names": list(rows.feature_names),
            "labels": list(rows.labels),
            "source": dict(source if source is not None else rows.source),
        }
        reply = self.request(header, rows.arrays(), expect="ready")
        if reply.header.get("interface") != INTERFACE or not isinstance(reply.header.get("name"), str):
            raise ProtocolError(f"ready has interface {reply.header.get('interface')!r} and name {reply.header.get('name')!r}")
        return reply.header

    def train(
        self,
        parameters: Mapping[str, npt.ArrayLike],
        hyperparameters: Hyperparameters,
        *,
        task_id: int = 1,
        base_version: int = 0,
    ) -> TrainResult:
        """Send ``train``; return the new parameters and metrics (checked as the agent checks them)."""
        sent = _float32_arrays(parameters)
        header = {
            "type": "train",
            "task": task_id,
            "base_version": base_version,
            "hyperparameters": hyperparameters.to_json(),
        }
        reply = self.request(header, sent, expect="trained")
        given = [(name, value.shape) for name, value in reply.arrays.items()]
        wanted = [(name, value.shape) for name, value in sent.items()]
        if given != wanted:
            raise ProtocolError(f"trained carries the arrays {given}, not {wanted}")
        for name, value in reply.arrays.items():
            if not np.isfinite(value).all():
                raise ProtocolError(f"trained array {name!r} holds a NaN or infinite value")
        metrics = _metrics(reply, required=("train_loss",), optional=("eval_loss", "eval_accuracy"))
        return TrainResult(
            parameters=dict(reply.arrays),
            train_loss=metrics["train_loss"],
            eval_loss=metrics.get("eval_loss"),
            eval_accuracy=metrics.get("eval_accuracy"),
        )

    def evaluate(self, parameters: Mapping[str, npt.ArrayLike], *, task_id: int = 1, base_version: int = 0) -> Evaluation:
        """Send ``evaluate``; return its metrics."""
        header = {"type": "evaluate", "task": task_id, "base_version": base_version}
        reply = self.request(header, _float32_arrays(parameters), expect="evaluated")
        metrics = _metrics(reply, required=("eval_loss", "eval_accuracy"), optional=())
        return Evaluation(eval_loss=metrics["eval_loss"], eval_accuracy=metrics["eval_accuracy"], outputs=reply.arrays.get("outputs"))

    def request(
        self,
        header: Mapping[str, Any],
        arrays: Optional[Mapping[str, npt.ArrayLike]] = None,
        *,
        expect: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Message:
        """Send one request (its ``id`` is assigned here) and return the reply.

        Raises TrainerError for an ``error`` reply, ProtocolError for a reply with another ``id`` or another
        type than ``expect``, TrainerExited when the trainer closes its stdout, TimeoutError after
        ``timeout`` (default ``self.timeout``) seconds — the trainer is killed then, as the agent would.
        """
        request_id = self._next_id
        self._next_id += 1
        self._write(protocol.encode_message({**header, "id": request_id}, arrays), timeout)
        reply = self._reply(timeout)
        if reply.id != request_id:
            raise ProtocolError(f"reply {reply.type!r} has id {reply.header.get('id')!r}, expected {request_id}")
        if reply.type == "error":
            raise TrainerError(str(reply.header.get("message", "")))
        if expect is not None and reply.type != expect:
            raise ProtocolError(f"reply has type {reply.type!r}, expected {expect!r}")
        return reply

    def send_raw(self, data: bytes, timeout: Optional[float] = None) -> None:
        """Write bytes to the trainer's stdin as they are (for tests of malformed input)."""
        self._write(data, timeout)

    def read_reply(self, timeout: Optional[float] = None) -> Message:
        """The next reply, unchecked (after ``send_raw``)."""
        return self._reply(timeout)

    # --- process ---------------------------------------------------------------------------------------

    def close(self, timeout: Optional[float] = None) -> int:
        """Send ``shutdown``, close stdin and wait for the exit (killing after ``timeout``); the exit status."""
        if self.process.poll() is None:
            try:
                self._write(protocol.encode_message({"type": "shutdown", "id": self._next_id}), timeout)
                self._next_id += 1
            except (TrainerExited, TimeoutError):
                pass  # it is gone or stuck either way; wait() below settles it
        return self.wait(timeout)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Close stdin and wait for the exit, killing the trainer after ``timeout``; the exit status."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
        except OSError:
            pass  # already broken: the trainer is gone
        try:
            status = self.process.wait(timeout=self.timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self._reader.join(timeout=5)
        self._stderr_reader.join(timeout=5)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    @property
    def stderr_lines(self) -> list[str]:
        """The trainer's stderr so far (the last STDERR_LINES lines)."""
        with self._stderr_lock:
            return list(self._stderr)

    @property
    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines)

    def __enter__(self) -> TrainerProcess:
        return self

    def __exit__(
        self, kind: Optional[type[BaseException]], error: Optional[BaseException], trace: Optional[TracebackType]
    ) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------------------

    def _write(self, data: bytes, timeout: Optional[float]) -> None:
        """Write on a thread: a trainer that stops reading must not block the test for ever."""
        failure: list[BaseException] = []

        def write() -> None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(data)
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as error:
                failure.append(error)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(self.timeout if timeout is None else timeout)
        if writer.is_alive():
            self.kill()
            writer.join()
            raise TimeoutError(f"the trainer did not read its request within {self.timeout if timeout is None else timeout} s; killed it")
        if failure:
            raise TrainerExited(f"cannot write to the trainer ({failure[0]}); it exited with {self.process.poll()}{self._stderr_tail()}")

    def _reply(self, timeout: Optional[float]) -> Message:
        limit = self.timeout if timeout is None else timeout
        try:
            item = self._replies.get(timeout=limit)
        except queue.Empty:
            self.kill()
            raise TimeoutError(f"no reply from the trainer within {limit} s; killed it{self._stderr_tail()}") from None
        if item is None:
            try:
                status = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                status = None
            raise TrainerExited(f"the trainer closed its stdout (exit status {status}){self._stderr_tail()}")
        if isinstance(item, BaseException):
            raise item
        return item

    def _read_replies(self, stream: IO[bytes]) -> None:
        while True:
            try:
                message = protocol.read_message(stream)
            except ProtocolError as error:
                self._replies.put(error)
                self._replies.put(None)  # the stream cannot be followed any more
                return
            except (OSError, ValueError):
                message = None  # stdout closed under us
            self._replies.put(message)
            if message is None:
                return

    def _read_stderr(self, stream: IO[bytes], echo: bool) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with self._stderr_lock:
                self._stderr.append(line)
            if echo:
                print(line, file=sys.stderr, flush=True)

    def _stderr_tail(self, lines: int = 20) -> str:
        tail = self.stderr_lines[-lines:]
        return ("; its last stderr lines:\n" + "\n".join(tail)) if tail else ""


def _float32_arrays(arrays: Mapping[str, npt.ArrayLike]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values, dtype=np.float32, order="C") for name, values in arrays.items()}


def _metrics(reply: Message, *, required: Sequence[str], optional: Sequence[str]) -> dict[str, float]:
    metrics = reply.header.get("metrics")
    if not isinstance(metrics, dict):
        raise ProtocolError(f"{reply.type} has no metrics object")
    values: dict[str, float] = {}
    for key in [*required, *optional]:
        value = metrics.get(key)
        if value is None and key in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ProtocolError(f"{reply.type} metric {key} is {value!r}, not a finite number")
        values[key] = float(value)
    return values
