"""The trainer as a real process, driven by testing.TrainerProcess: stdout carries frames only, whatever
the user code prints; exit statuses; the fake agent's timeouts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import child_env

from strata_trainer import Hyperparameters, Model, Rows
from strata_trainer.protocol import ProtocolError, encode_message
from strata_trainer.testing import TrainerError, TrainerExited, TrainerProcess

SCRIPT = Path(__file__).parent / "scripts" / "noisy_trainer.py"
MODEL = Model(kind="custom", features=2, outputs=2, classifier=True, tensors=[("w", (2, 2))])
ROWS = Rows(np.ones((3, 2), np.float32), np.zeros(3, np.float32), np.ones((1, 2), np.float32), np.zeros(1, np.float32))
HYPER = Hyperparameters(learning_rate=0.1, batch_size=1, epochs=1, seed=1)


def start(mode: str = "noisy", timeout: float = 30.0, **env: str | None) -> TrainerProcess:
    # Buffered stdout (Python's default on a pipe) unless a test says otherwise: the script prints at import.
    env.setdefault("PYTHONUNBUFFERED", None)
    return TrainerProcess([sys.executable, str(SCRIPT), mode], env=child_env(**env), timeout=timeout)


def test_printing_user_code_does_not_corrupt_replies() -> None:
    # The print at import is still buffered when serve() starts, and lands on stderr.
    with start() as trainer:
        ready = trainer.setup(MODEL, ROWS)
        assert ready == {"type": "ready", "id": 1, "interface": 1, "name": "noisy"}
        result = trainer.train({"w": np.eye(2)}, HYPER)
        np.testing.assert_array_equal(result.parameters["w"], 2 * np.eye(2))
        with pytest.raises(TrainerError, match="^RuntimeError: cannot evaluate$"):
            trainer.evaluate({"w": np.eye(2)})
        again = trainer.train({"w": np.ones((2, 2))}, HYPER, task_id=2)  # still serving after the error
        np.testing.assert_array_equal(again.parameters["w"], np.full((2, 2), 2.0))
        assert trainer.close() == 0
    stderr = trainer.stderr_text
    for text in [
        "printed at import, before serve",
        "print in setup: (3, 2), interface 1",
        "sys.stdout.write in setup",
        "os.write to fd 1 in setup",
        "a child process writing to its stdout",
        "stdin gives ''",  # user code reading stdin sees /dev/null, not requests
        "print in train",
        "print in evaluate",
        "RuntimeError: cannot evaluate",  # the traceback
    ]:
        assert text in stderr, f"{text!r} not on stderr:\n{stderr}"


def test_protect_stdout_keeps_early_flushed_output_off_the_replies() -> None:
    with start("early", PYTHONUNBUFFERED="1") as trainer:
        assert trainer.setup(MODEL, ROWS)["type"] == "ready"
    assert "printed and flushed at import, after protect_stdout" in trainer.stderr_text


def test_end_of_input_exits_zero() -> None:
    trainer = start()
    trainer.setup(MODEL, ROWS)
    assert trainer.wait() == 0  # stdin closed without shutdown


def test_unreadable_input_exits_two() -> None:
    trainer = start()
    trainer.send_raw(b"\0" * 12)  # header length 0
    with pytest.raises(TrainerExited, match="exit status 2"):
        trainer.read_reply()
    assert trainer.wait() == 2
    assert "header length 0" in trainer.stderr_text


def test_bad_frame_is_answered_with_error() -> None:
    with start() as trainer:
        data = bytearray(encode_message({"type": "train", "id": 1, "task": 1}, {"w": np.ones(2)}))
        data[4] = 0  # body length 8 → 0: the body bytes now look like the next frame's prefix…
        trainer.send_raw(bytes(data[:-8]))  # …so leave them out
        reply = trainer.read_reply()
        assert reply.type == "error" and reply.id == 1 and "body length 0" in reply.header["message"]
        assert trainer.setup(MODEL, ROWS)["type"] == "ready"


def test_hanging_trainer_times_out_and_is_killed() -> None:
    trainer = start("hang", timeout=15.0)
    trainer.setup(MODEL, ROWS)
    with pytest.raises(TimeoutError, match="no reply"):
        trainer.request({"type": "train", "task": 1, "base_version": 0, "hyperparameters": HYPER.to_json()},
                        {"w": np.eye(2)}, timeout=0.5)
    assert trainer.wait(timeout=5) != 0  # killed


def test_crashing_trainer_is_reported_with_status() -> None:
    trainer = start("crash")
    trainer.setup(MODEL, ROWS)
    with pytest.raises(TrainerExited, match="exit status 3"):
        trainer.train({"w": np.eye(2)}, HYPER)
    assert trainer.wait() == 3


def test_fake_agent_checks_reply_shapes() -> None:
    with start() as trainer:
        trainer.setup(MODEL, ROWS)
        # The trainer doubles whatever it gets: a reply to a request whose id is skipped must be refused.
        trainer._next_id = 10
        reply = trainer.request({"type": "train", "task": 1, "base_version": 0, "hyperparameters": HYPER.to_json()}, {"w": np.eye(2)})
        assert reply.id == 10 and reply.type == "trained"
        with pytest.raises(ProtocolError, match="expected 'evaluated'"):
            trainer.request({"type": "train", "task": 1, "base_version": 0, "hyperparameters": HYPER.to_json()},
                            {"w": np.eye(2)}, expect="evaluated")
