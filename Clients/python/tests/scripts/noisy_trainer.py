"""A trainer that writes to stdout every way it can; serve() must keep all of it off the reply stream.

Modes (argv[1]): "noisy" (default), "early" (flushes a print before serve, after protect_stdout), "hang" (train never returns), "crash" (train exits the process).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np

from strata_trainer import Evaluation, Model, Rows, Task, Trainer, TrainResult, protect_stdout, serve

MODE = sys.argv[1] if len(sys.argv) > 1 else "noisy"
if MODE == "early":
    protect_stdout()
    print("printed and flushed at import, after protect_stdout", flush=True)
else:
    print("printed at import, before serve")  # still buffered when serve() starts


class NoisyTrainer(Trainer):
    def setup(self, model: Model, rows: Rows) -> None:
        print(f"print in setup: {rows.train_x.shape}, interface {os.environ.get('STRATA_TRAINER_INTERFACE')}")
        sys.stdout.write("sys.stdout.write in setup\n")
        os.write(1, b"os.write to fd 1 in setup\n")
        subprocess.run(["echo", "a child process writing to its stdout"], check=True)
        print(f"stdin gives {sys.stdin.read()!r}")

    def train(self, parameters: dict[str, np.ndarray], task: Task) -> TrainResult:
        if MODE == "hang":
            threading.Event().wait()
        if MODE == "crash":
            os._exit(3)
        print("print in train", flush=True)
        return TrainResult({n: v * 2 for n, v in parameters.items()}, train_loss=1.0)

    def evaluate(self, parameters: dict[str, np.ndarray], task: Task) -> Evaluation:
        print("print in evaluate", end="")  # no newline, no flush
        raise RuntimeError("cannot evaluate")


if __name__ == "__main__":
    sys.exit(serve(NoisyTrainer(), name="noisy"))
