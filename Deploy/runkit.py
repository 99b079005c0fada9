"""What Deploy/byzantine.py and Deploy/tables.py share: timestamped progress lines, and every process they start
stopped on exit, on a signal, and when this process dies (PR_SET_PDEATHSIG), so a failed run leaves nothing
behind. Importing it installs the handlers; `procs` starts and stops the processes.
"""

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTED = time.monotonic()


def say(message):
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - STARTED:7.1f}s] {message}", flush=True)


def _parent_death_signal():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Processes:
    def __init__(self):
        self.live = []

    def start(self, argv, log_path, stdout_path=None, env=None):
        err = open(log_path, "ab")
        out = open(stdout_path, "ab") if stdout_path else err
        try:
            p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=env,
                                 preexec_fn=_parent_death_signal if sys.platform.startswith("linux") else None)
        finally:
            err.close()
            if stdout_path:
                out.close()
        self.live.append(p)
        return p

    def stop(self, processes, grace=10.0):
        for p in processes:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in processes:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p in self.live:
                self.live.remove(p)

    def stop_all(self):
        self.stop(list(self.live), grace=5.0)


procs = Processes()
atexit.register(procs.stop_all)


def _on_signal(signum, _frame):
    say(f"signal {signum}: stopping every process started")
    procs.stop_all()
    sys.exit(128 + signum)


def require_programs(parser, directory, programs):
    """--bin DIR as an absolute path, or the parser's error naming the first program missing from it."""
    directory = os.path.abspath(directory)
    for prog in programs:
        if not os.access(os.path.join(directory, prog), os.X_OK):
            parser.error(f"{prog} not found in {directory} (build it, or pass --bin DIR)")
    return directory


def run_root(run_dir, prefix):
    """The run's folder: --run-dir emptied and made anew, or a fresh temporary one."""
    if not run_dir:
        return tempfile.mkdtemp(prefix=prefix)
    root = os.path.abspath(run_dir)
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    return root
