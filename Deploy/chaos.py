#!/usr/bin/env python3
"""Strata chaos run: exactly-once aggregation while the coordinator and agents are SIGKILLed.

Makes a dev PKI and Synthetic(1,1) data, starts a coordinator on a fixed loopback port and AGENTS agents
over mutual TLS, and then, at moments drawn from a seeded random generator, kills the coordinator with
SIGKILL and restarts it on the same --state database and the same port (after a random 0-2 s pause),
and kills random agents with SIGKILL and restarts them on their own state database. Coordinator and
agent kills are interleaved in one random order; every action is logged with a timestamp (also to
RUN_DIR/chaos.log).

The coordinator is never told a target (no --target-accuracy): the script stops the federation itself,
once every kill has been done, an evaluation at or above the target has been seen (coordinator stdout
`version N accuracy A ...` or its `evaluations` table), a model version was committed after the last
restart, and every agent had an update committed after its own last start and the coordinator's last
restart; or at --duration, whichever comes first. It stops with SIGTERM (the coordinator drains and
exits 0), then stops the agents, and computes the checks from the persisted state only (the SQLite
files, read with the sqlite3 module):

  1. acks are true: every task id an agent holds in `acknowledged` with status 'committed' is in the
     coordinator's `committedUpdates` exactly once, with the version named in the ack and that agent's
     client id;
  2. no double counting: no task id twice in `committedUpdates` (COUNT(*) = COUNT(DISTINCT taskID));
  3. the version history is whole: `modelVersions` holds exactly the versions 0..max, every
     `committedUpdates.version` exists, and each version's updateCount equals its committed updates;
  4. it still learns: the best evaluated accuracy reached the target (from `evaluations`, per model
     version sample-weighted over the agents that answered, one answer per agent, counting only versions
     answered by at least half of the agents);
  5. the chaos happened: coordinator kills >= --coordinator-kills and agent kills >= --agent-kills;
  6. it recovers: every restart came up, no process exited on its own, versions were committed after
     the last restart, every agent had an update committed after its last (re)start and after the last
     coordinator restart, and the final SIGTERM drained the coordinator with exit status 0.

Each check is printed PASS/FAIL with its numbers; RUN_DIR/chaos-result.json has them all. Every process
the script started is stopped when it ends, however it ends (atexit, SIGINT/SIGTERM/SIGHUP handlers, and
on Linux a parent-death signal in case the script itself is SIGKILLed).

Exit status: 0 every check passed; 1 a check failed; 2 bad arguments; 3 setup failed (build, PKI, data,
or the first coordinator never listened); 130/143 interrupted.

Example (the defaults: 20 agents, 5 coordinator kills, 10 agent kills, at most 240 s):
  Deploy/chaos.py
  Deploy/chaos.py --agents 8 --coordinator-kills 2 --agent-kills 3 --max-samples 300 --duration 120
"""

import argparse
import atexit
import ctypes
import json
import os
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ("strata-coordinator", "strata-agent", "strata-datagen")


# ----------------------------------------------------------------------------------------------- output

class Log:
    def __init__(self):
        self.started = time.monotonic()
        self.file = None

    def open(self, path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, message):
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        line = f"[{stamp} +{time.monotonic() - self.started:7.2f}s] {message}"
        print(line, flush=True)
        if self.file:
            self.file.write(line + "\n")


log = Log()


def die(message, status=3):
    log(f"error: {message}")
    sys.exit(status)


# -------------------------------------------------------------------------------------------- processes

def _parent_death_signal():
    """In the child: receive SIGKILL when the script dies, even by SIGKILL (Linux; ignored elsewhere)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Processes:
    """Every process started, so that all of them are stopped on any exit."""

    def __init__(self):
        self.live = []

    def start(self, argv, stdout, stderr):
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=REPO,
                                   preexec_fn=_parent_death_signal if sys.platform.startswith("linux") else None)
        self.live.append(process)
        return process

    def kill9(self, process):
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        self.forget(process)

    def stop(self, processes, grace):
        """SIGTERM, up to `grace` seconds to exit, then SIGKILL. Returns {pid: exit status}."""
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
        for p in processes:
            self.forget(p)
        return {p.pid: p.returncode for p in processes}

    def forget(self, process):
        if process in self.live:
            self.live.remove(process)

    def cleanup(self):
        if self.live:
            self.stop(list(self.live), grace=5)


processes = Processes()
atexit.register(processes.cleanup)


def on_signal(number, _frame):
    log(f"received {signal.Signals(number).name}: stopping every process started")
    sys.exit(128 + number)


for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, on_signal)


# -------------------------------------------------------------------------------------------- arguments

def parse_arguments():
    description, example = __doc__.rsplit("\nExample", 1)
    parser = argparse.ArgumentParser(prog="Deploy/chaos.py", description=description, epilog="Example" + example,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--bin", metavar="DIR",
        help="directory holding strata-coordinator, strata-agent and strata-datagen (default: the output of "
             "`swift build -c release --show-bin-path`; the release products are built first if missing)")
    add("--agents", type=int, default=20, metavar="N", help="agents / client databases (default: 20)")
    add("--coordinator-kills", type=int, default=5, metavar="N",
        help="coordinator SIGKILL + restarts, at least (default: 5)")
    add("--agent-kills", type=int, default=10, metavar="N", help="agent SIGKILL + restarts, at least (default: 10)")
    add("--seed", type=int, default=1, metavar="N",
        help="seed of the chaos schedule: when, whom, how long down (default: 1)")
    add("--mode", default="strata", metavar="MODE",
        help="coordinator --mode: strata, fedavg, tifl, fedat, fedasync or fedbuff (default: strata)")
    add("--duration", type=float, default=240, metavar="SECONDS",
        help="hard cap on the run, counted from the start of the agents; the federation is stopped then and the checks "
             "run on what exists (default: 240)")
    add("--target", type=float, metavar="ACCURACY",
        help="accuracy 0-1 that must be reached (default: the data manifest's referenceAccuracy minus 0.06)")
    add("--run-dir", default="run/chaos", metavar="DIR",
        help="data, PKI, state databases and logs; deleted at start; a relative path is taken from the "
             "repository root (default: run/chaos)")
    add("--data-seed", type=int, default=1, metavar="N", help="strata-datagen --seed (default: 1)")
    add("--max-samples", type=int, metavar="N", help="strata-datagen --max-samples: cap on rows per client (default: its own, 5000)")
    add("--first-kill", type=float, default=10, metavar="SECONDS",
        help="when the first kill happens, after the agents were started (default: 10)")
    add("--min-gap", type=float, default=2, metavar="SECONDS", help="shortest pause between two kills (default: 2)")
    add("--max-gap", type=float, default=10, metavar="SECONDS",
        help="longest pause between two kills (default: 10); the pauses are scaled down if the kills would not "
             "end within 60%% of --duration")
    add("--max-restart-delay", type=float, default=2, metavar="SECONDS",
        help="a killed process is restarted after a random pause in [0, this] (default: 2)")
    add("--port", type=int, default=0, metavar="PORT",
        help="the coordinator's fixed port, kept across restarts (default: 0 = a free port below the ephemeral range, "
             "chosen up front by binding it and releasing it)")
    add("--coordinator-flags", default="", metavar="FLAGS", help="extra flags for every coordinator start (one string)")
    add("--agent-flags", default="", metavar="FLAGS", help="extra flags for every agent start (one string)")
    args = parser.parse_args()

    def bad(message):
        parser.error(message)

    if args.agents < 1:
        bad("--agents must be at least 1")
    if args.coordinator_kills < 0 or args.agent_kills < 0:
        bad("--coordinator-kills and --agent-kills must be >= 0")
    if args.mode not in ("strata", "fedavg", "tifl", "fedat", "fedasync", "fedbuff"):
        bad(f"--mode must be strata, fedavg, tifl, fedat, fedasync or fedbuff (got {args.mode!r})")
    if not args.duration > 0:
        bad("--duration must be positive")
    if args.target is not None and not 0 <= args.target <= 1:
        bad("--target must be an accuracy between 0 and 1")
    if args.max_samples is not None and args.max_samples < 1:
        bad("--max-samples must be positive")
    if args.first_kill < 0 or args.min_gap < 0 or args.max_gap < args.min_gap:
        bad("--first-kill and --min-gap must be >= 0 and --max-gap >= --min-gap")
    if args.max_restart_delay < 0:
        bad("--max-restart-delay must be >= 0")
    if not 0 <= args.port <= 65535:
        bad("--port must be between 0 and 65535")
    run_dir = os.path.realpath(os.path.join(REPO, args.run_dir) if not os.path.isabs(args.run_dir) else args.run_dir)
    if run_dir in ("/", os.path.realpath(os.path.expanduser("~"))) or (REPO + "/").startswith(run_dir + "/"):
        bad(f"refusing --run-dir {args.run_dir}: it is deleted at start")
    args.run_dir = run_dir
    args.coordinator_flags = shlex.split(args.coordinator_flags)
    args.agent_flags = shlex.split(args.agent_flags)
    return args


# ---------------------------------------------------------------------------------------------- set-up

def find_programs(directory):
    if directory:
        directory = os.path.abspath(directory)
        missing = [p for p in PROGRAMS if not os.access(os.path.join(directory, p), os.X_OK)]
        if missing:
            die(f"--bin {directory} lacks {', '.join(missing)}")
        return directory
    try:
        directory = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=REPO, check=True,
                                   capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        die(f"cannot ask swift for the release bin path ({error}); pass --bin DIR")
    missing = [p for p in PROGRAMS if not os.access(os.path.join(directory, p), os.X_OK)]
    for program in missing:
        log(f"building {program} (release)")
        if subprocess.run(["swift", "build", "-c", "release", "--product", program], cwd=REPO).returncode != 0:
            die(f"swift build -c release --product {program} failed")
    return directory


def choose_port():
    """A free loopback port, preferably below the ephemeral range so that no agent's outgoing connection
    can take it while the coordinator is down (a connect to a closed port in that range can even connect
    to itself). Bound and released: the coordinator binds it with SO_REUSEADDR."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    candidates = random.SystemRandom().sample(range(20000, low), min(50, max(0, low - 20000))) if low > 20000 else []
    for port in candidates + [0]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    die("no free port")


def run_step(argv, logfile, what):
    with open(logfile, "w") as out:
        status = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_parent_death_signal if sys.platform.startswith("linux") else None).returncode
    if status != 0:
        with open(logfile) as f:
            tail = f.read()[-1500:]
        die(f"{what} failed (status {status}); see {logfile}\n{tail}")


def connect_ro(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)


# ------------------------------------------------------------------------------------------- federation

class Federation:
    def __init__(self, args, bin_dir, manifest, port):
        self.args = args
        self.bin = bin_dir
        self.port = port
        self.run = args.run_dir
        self.features = int(manifest.get("features", 60))
        self.classes = int(manifest.get("classes", 10))
        width = max(2, len(str(args.agents)))
        self.ids = [f"agent-{i:02d}" for i in range(1, args.agents + 1)]
        self.databases = {self.ids[i - 1]: os.path.join(self.run, "data", f"client-{i:0{width}d}.sqlite")
                          for i in range(1, args.agents + 1)}
        self.state = os.path.join(self.run, "coordinator.sqlite")
        self.ready = os.path.join(self.run, "coordinator.addr")
        # Coordinator: None (down), or the process with its phase ("starting" until listening, then "up").
        self.coordinator = None
        self.phase = "down"
        self.incarnation = 0
        self.started_at = 0.0
        self.stdout = None  # (file, partial line) of the current incarnation's stdout
        self.agents = {}  # id -> process (absent while down)
        self.agent_starts = {i: 0 for i in self.ids}
        self.agent_started_at = {}  # id -> time.time() of its latest start
        self.coordinator_restarted_at = None  # time.time() the latest restart listened
        self.last_restart = 0.0  # time.time() of the latest (re)start of anything after the first
        self.unexpected = []  # descriptions of exits nobody asked for
        self.restart_failures = 0
        self.best_stdout = None  # (accuracy, version, clients)
        self.restored = []  # (incarnation, version, committed) from "state:" lines

    # coordinator -------------------------------------------------------------------------------------
    def start_coordinator(self):
        self.incarnation += 1
        n = self.incarnation
        if os.path.exists(self.ready):
            os.remove(self.ready)
        argv = [os.path.join(self.bin, "strata-coordinator"),
                "--cert", f"{self.run}/pki/coordinator.crt", "--key", f"{self.run}/pki/coordinator.key",
                "--ca", f"{self.run}/pki/ca.crt", "--state", self.state,
                "--host", "127.0.0.1", "--port", str(self.port), "--ready-file", self.ready,
                # The agents' port is fixed across restarts; admin and metrics take any free port.
                "--admin-port", "0", "--metrics-port", "0",
                "--features", str(self.features), "--classes", str(self.classes), "--mode", self.args.mode,
                "--max-duration", str(max(3600, 10 * self.args.duration)),
                "--evaluate-every", "0", "--evaluate-interval", "1",
                # Training waits for every agent once; a restarted coordinator resumes at once (the quorum is durable).
                "--min-clients", str(self.args.agents),
                "--summary-file", f"{self.run}/coordinator-summary.json"] + self.args.coordinator_flags
        out = open(f"{self.run}/coordinator-{n}.out", "w")
        err = open(f"{self.run}/coordinator-{n}.log", "w")
        self.coordinator = processes.start(argv, out, err)
        out.close()
        err.close()
        self.stdout = [open(f"{self.run}/coordinator-{n}.out"), ""]
        self.phase = "starting"
        self.started_at = time.monotonic()
        log(f"coordinator #{n} started (pid {self.coordinator.pid}, port {self.port})")

    def kill_coordinator(self):
        pid = self.coordinator.pid
        processes.kill9(self.coordinator)
        self.read_stdout()
        self.coordinator = None
        self.phase = "down"
        log(f"SIGKILL coordinator #{self.incarnation} (pid {pid}); state: {self.state_line()}")

    def read_stdout(self):
        if not self.stdout:
            return
        f, partial = self.stdout
        chunk = f.read()
        if not chunk:
            return
        lines = (partial + chunk).split("\n")
        self.stdout[1] = lines.pop()
        for line in lines:
            words = line.split()
            # version N  accuracy A  loss L  clients C/E  elapsed S
            if len(words) >= 8 and words[0] == "version" and words[2] == "accuracy" and words[6] == "clients":
                try:
                    version, accuracy = int(words[1]), float(words[3])
                    clients = int(words[7].split("/")[0])
                except ValueError:
                    continue
                if 2 * clients >= len(self.ids) and (self.best_stdout is None or accuracy > self.best_stdout[0]):
                    self.best_stdout = (accuracy, version, clients)
            elif line.startswith("state: version "):
                try:
                    version = int(words[2].rstrip(","))
                    committed = int(words[3])
                except (ValueError, IndexError):
                    continue
                self.restored.append((self.incarnation, version, committed))

    def check_coordinator(self):
        """Progress of a start, and exits nobody asked for. Returns True when it has to be restarted."""
        if self.coordinator is None:
            return False
        self.read_stdout()
        status = self.coordinator.poll()
        if status is not None:
            self.unexpected.append(f"coordinator #{self.incarnation} exited with status {status} ({self.phase})")
            log(f"UNEXPECTED: coordinator #{self.incarnation} exited by itself with status {status} while {self.phase}; "
                f"see {self.run}/coordinator-{self.incarnation}.log")
            processes.forget(self.coordinator)
            self.coordinator = None
            self.phase = "down"
            return True
        if self.phase == "starting":
            if os.path.exists(self.ready) and os.path.getsize(self.ready) > 0:
                self.phase = "up"
                restored = next((r for r in reversed(self.restored) if r[0] == self.incarnation), None)
                if self.incarnation > 1:
                    self.coordinator_restarted_at = time.time()
                    self.last_restart = time.time()
                log(f"coordinator #{self.incarnation} listening after {time.monotonic() - self.started_at:.2f} s"
                    + (f"; restored version {restored[1]} with {restored[2]} committed updates" if restored else ""))
            elif time.monotonic() - self.started_at > 30:
                self.restart_failures += 1
                log(f"FAILURE: coordinator #{self.incarnation} did not listen within 30 s; killing it")
                processes.kill9(self.coordinator)
                self.coordinator = None
                self.phase = "down"
                return True
        return False

    # agents ------------------------------------------------------------------------------------------
    def start_agent(self, agent):
        self.agent_starts[agent] += 1
        n = self.agent_starts[agent]
        logfile = f"{self.run}/{agent}.log"
        with open(logfile, "a") as f:
            f.write(f"==== chaos.py: start #{n} at {time.strftime('%H:%M:%S')} ====\n")
        argv = [os.path.join(self.bin, "strata-agent"), "--coordinator", f"127.0.0.1:{self.port}",
                "--server-name", "localhost",
                "--cert", f"{self.run}/pki/agents/{agent}.crt", "--key", f"{self.run}/pki/agents/{agent}.key",
                "--ca", f"{self.run}/pki/ca.crt", "--database", self.databases[agent],
                "--state", f"{self.run}/{agent}.state.sqlite", "--after-federation", "exit"] + self.args.agent_flags
        out = open(logfile, "a")
        self.agents[agent] = processes.start(argv, out, subprocess.STDOUT)
        out.close()
        self.agent_started_at[agent] = time.time()
        if n > 1:
            self.last_restart = time.time()
        return self.agents[agent]

    def kill_agent(self, agent):
        process = self.agents.pop(agent)
        processes.kill9(process)
        log(f"SIGKILL {agent} (pid {process.pid}, start #{self.agent_starts[agent]}); "
            f"{self.pending(agent)} updates pending in its state")

    def check_agents(self):
        """Agents that exited by themselves; returns their ids (to be restarted)."""
        gone = []
        for agent, process in list(self.agents.items()):
            status = process.poll()
            if status is not None:
                self.unexpected.append(f"{agent} exited with status {status}")
                log(f"UNEXPECTED: {agent} exited by itself with status {status}; see {self.run}/{agent}.log")
                processes.forget(process)
                del self.agents[agent]
                gone.append(agent)
        return gone

    # state -------------------------------------------------------------------------------------------
    def pending(self, agent):
        try:
            db = connect_ro(f"{self.run}/{agent}.state.sqlite")
            try:
                return db.execute("SELECT COUNT(*) FROM pendingUpdates").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error as error:
            # Killed in the middle of a write: the hot journal is rolled back when the agent restarts.
            return f"? ({error}; it was killed during a write)"

    def state_line(self):
        try:
            db = connect_ro(self.state)
            try:
                version = db.execute("SELECT MAX(version) FROM modelVersions").fetchone()[0]
                committed = db.execute("SELECT COUNT(*) FROM committedUpdates").fetchone()[0]
            finally:
                db.close()
            return f"version {version}, {committed} committed updates"
        except sqlite3.Error as error:
            return f"(unreadable: {error})"

    def progress(self, target):
        """(best qualifying accuracy or None, versions after the last restart, agents without a commit since
        their last start and the coordinator's last restart) from the coordinator's database."""
        try:
            db = connect_ro(self.state)
            try:
                best = best_accuracy(db, len(self.ids))
                after = db.execute("SELECT COUNT(*) FROM modelVersions WHERE createdAt > ?", (self.last_restart,)).fetchone()[0]
                latest = dict(db.execute("SELECT clientID, MAX(receivedAt) FROM committedUpdates GROUP BY clientID").fetchall())
            finally:
                db.close()
        except sqlite3.Error:
            return None, 0, list(self.ids)
        floor = self.coordinator_restarted_at or 0
        waiting = [a for a in self.ids if (latest.get(a) or 0) <= max(floor, self.agent_started_at.get(a, 0))]
        return best, after, waiting


def best_accuracy(db, agents, minimum=None):
    """Best per-version sample-weighted accuracy over versions answered by at least `minimum` agents
    (default: half of them, rounded up), one answer per agent and version: the latest (a version evaluated
    again after a restart counts each agent once)."""
    minimum = (agents + 1) // 2 if minimum is None else minimum
    rows = db.execute("""
        SELECT e.modelVersion, SUM(e.sampleCount * e.accuracy) / SUM(e.sampleCount), COUNT(*), SUM(e.sampleCount)
        FROM evaluations e
        JOIN (SELECT MAX(taskID) AS taskID FROM evaluations GROUP BY modelVersion, clientID) latest USING (taskID)
        GROUP BY e.modelVersion HAVING COUNT(*) >= ? AND SUM(e.sampleCount) > 0
        ORDER BY 2 DESC, e.modelVersion LIMIT 1""", (minimum,)).fetchall()
    qualifying = db.execute("""
        SELECT COUNT(*) FROM (SELECT modelVersion FROM evaluations GROUP BY modelVersion
                              HAVING COUNT(DISTINCT clientID) >= ?)""", (minimum,)).fetchone()[0]
    if not rows:
        return None
    version, accuracy, clients, samples = rows[0]
    return {"accuracy": accuracy, "version": version, "clients": clients, "samples": samples, "qualifyingVersions": qualifying}


# ----------------------------------------------------------------------------------------------- schedule

def plan(args, rng):
    kinds = ["coordinator"] * args.coordinator_kills + ["agent"] * args.agent_kills
    rng.shuffle(kinds)
    gaps = [rng.uniform(args.min_gap, args.max_gap) for _ in kinds[1:]]
    budget = 0.6 * args.duration - args.first_kill
    if gaps and sum(gaps) > budget > 0:
        scale = budget / sum(gaps)
        gaps = [max(0.5, g * scale) for g in gaps]
    times, t = [], args.first_kill
    for i, _ in enumerate(kinds):
        if i > 0:
            t += gaps[i - 1]
        times.append(t)
    return list(zip(times, kinds))


# ------------------------------------------------------------------------------------------------ checks

def checks(args, fed, kills, final_status, wall, target):
    results = []

    def report(number, name, ok, detail):
        results.append({"check": number, "name": name, "pass": bool(ok), "detail": detail})
        print(f"  ({number}) {'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    db = connect_ro(fed.state)
    committed_rows = db.execute("SELECT taskID, version, clientID FROM committedUpdates").fetchall()
    by_task = {}
    for task, version, client in committed_rows:
        by_task.setdefault(task, []).append((version, client))

    # (1) every committed ack is in committedUpdates exactly once, with the ack's version and the agent's id
    acked = missing = multiple = wrong_version = wrong_client = 0
    examples = []
    for agent in fed.ids:
        path = f"{fed.run}/{agent}.state.sqlite"
        if not os.path.exists(path):
            continue
        agent_db = connect_ro(path)
        rows = agent_db.execute("SELECT taskID, modelVersion FROM acknowledged WHERE status = 'committed'").fetchall()
        agent_db.close()
        for task, version in rows:
            acked += 1
            found = by_task.get(task, [])
            if not found:
                missing += 1
                examples.append(f"{agent} task {task} (ack v{version}) not committed")
            elif len(found) > 1:
                multiple += 1
                examples.append(f"{agent} task {task} committed {len(found)} times")
            elif found[0][0] != version:
                wrong_version += 1
                examples.append(f"{agent} task {task}: ack v{version}, committed in v{found[0][0]}")
            elif found[0][1] != agent:
                wrong_client += 1
                examples.append(f"{agent} task {task} committed for {found[0][1]}")
    ok = acked > 0 and missing == multiple == wrong_version == wrong_client == 0
    report(1, "every committed ack is in committedUpdates exactly once with its version", ok,
           f"{acked} committed acks over {len(fed.ids)} agents; missing {missing}, more than once {multiple}, "
           f"other version {wrong_version}, other client {wrong_client}"
           + ("" if acked else " (no committed ack at all)") + (f"; e.g. {'; '.join(examples[:3])}" if examples else ""))

    # (2) no task id twice
    total, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT taskID) FROM committedUpdates").fetchone()
    report(2, "no task committed twice", total == distinct,
           f"COUNT(*) = {total}, COUNT(DISTINCT taskID) = {distinct}")

    # (3) versions 0..max dense and increasing; every committed version exists; updateCount agrees
    versions = [v for (v,) in db.execute("SELECT version FROM modelVersions ORDER BY version")]
    dense = versions == list(range(0, len(versions)))
    orphans = db.execute("SELECT COUNT(*) FROM committedUpdates WHERE version NOT IN (SELECT version FROM modelVersions)").fetchone()[0]
    disagree = db.execute("""
        SELECT COUNT(*) FROM modelVersions m
        WHERE m.updateCount != (SELECT COUNT(*) FROM committedUpdates c WHERE c.version = m.version)""").fetchone()[0]
    gaps = [(a, b) for a, b in zip(versions, versions[1:]) if b != a + 1]
    report(3, "model versions are exactly 0..max and hold every committed update", dense and orphans == 0 and disagree == 0,
           f"{len(versions)} versions, 0..{versions[-1] if versions else '-'}"
           + (f", gaps/disorder at {gaps[:3]}" if gaps or (versions and versions[0] != 0) else ", dense")
           + f"; committed updates naming a missing version: {orphans}; versions whose updateCount differs: {disagree}")

    # (4) the best evaluated accuracy reached the target
    best = best_accuracy(db, len(fed.ids))
    if best:
        report(4, "best evaluated accuracy reached the target", best["accuracy"] >= target,
               f"best {best['accuracy']:.4f} at version {best['version']} ({best['clients']}/{len(fed.ids)} agents, "
               f"{best['samples']} samples), target {target:.4f}; {best['qualifyingVersions']} versions evaluated by >= half of the agents")
    else:
        report(4, "best evaluated accuracy reached the target", False,
               f"no version was evaluated by at least half of the {len(fed.ids)} agents; target {target:.4f}")

    # (5) the kills happened
    report(5, "kills done >= requested",
           kills["coordinator"] >= args.coordinator_kills and kills["agent"] >= args.agent_kills,
           f"coordinator {kills['coordinator']}/{args.coordinator_kills}, agents {kills['agent']}/{args.agent_kills} "
           f"({len(set(kills['agents']))} different agents)")

    # (6) recovery
    after = db.execute("SELECT COUNT(*) FROM modelVersions WHERE createdAt > ?", (fed.last_restart,)).fetchone()[0]
    latest = dict(db.execute("SELECT clientID, MAX(receivedAt) FROM committedUpdates GROUP BY clientID").fetchall())
    floor = fed.coordinator_restarted_at or 0
    absent = [a for a in fed.ids if (latest.get(a) or 0) <= max(floor, fed.agent_started_at.get(a, 0))]
    ok = (not fed.unexpected and fed.restart_failures == 0 and after > 0 and not absent and final_status == 0)
    report(6, "everything recovered", ok,
           f"unexpected exits {len(fed.unexpected)}{' (' + '; '.join(fed.unexpected[:3]) + ')' if fed.unexpected else ''}, "
           f"restarts that never listened {fed.restart_failures}, versions after the last restart {after}, "
           f"agents without a commit since their last start and the last coordinator restart {len(absent)}"
           f"{' ' + ', '.join(absent[:5]) if absent else ''}, coordinator exit on SIGTERM {final_status}")

    # Information: updates handed out before a coordinator kill and committed by a later incarnation.
    carried = 0
    for t in kills["coordinatorTimes"]:
        carried += db.execute("""
            SELECT COUNT(*) FROM committedUpdates c JOIN tasks t ON t.id = c.taskID
            WHERE t.dispatchedAt < ? AND c.receivedAt > ?""", (t, t)).fetchone()[0]
    summary = {
        "agents": len(fed.ids), "mode": args.mode, "seed": args.seed, "dataSeed": args.data_seed,
        "coordinatorKills": kills["coordinator"], "agentKills": kills["agent"],
        "coordinatorIncarnations": fed.incarnation, "agentStarts": sum(fed.agent_starts.values()),
        "finalVersion": versions[-1] if versions else None, "versions": len(versions),
        "committedUpdates": total,
        "refusedUpdates": db.execute("SELECT COUNT(*) FROM refusedUpdates").fetchone()[0],
        "refusedByCode": dict(db.execute("SELECT code, COUNT(*) FROM refusedUpdates GROUP BY code").fetchall()),
        "committedAcks": acked, "committedAcrossCoordinatorKills": carried,
        "target": target, "bestAccuracy": best, "bestAccuracyAllAgents": best_accuracy(db, len(fed.ids), len(fed.ids)),
        "wallSeconds": round(wall, 1), "port": fed.port,
    }
    db.close()
    return results, summary


# ------------------------------------------------------------------------------------------------- main

def main():
    args = parse_arguments()
    rng = random.Random(args.seed)
    shutil.rmtree(args.run_dir, ignore_errors=True)
    os.makedirs(args.run_dir)
    log.open(os.path.join(args.run_dir, "chaos.log"))
    log(f"chaos run in {args.run_dir}: {args.agents} agents, {args.coordinator_kills} coordinator kills, "
        f"{args.agent_kills} agent kills, seed {args.seed}, mode {args.mode}, at most {args.duration:g} s")

    bin_dir = find_programs(args.bin)
    log(f"programs in {bin_dir}")
    run_step([os.path.join(REPO, "Certs", "strata-pki.sh"), "--dir", f"{args.run_dir}/pki", "dev", "--agents", str(args.agents)],
             f"{args.run_dir}/pki.log", "Certs/strata-pki.sh")
    datagen = [os.path.join(bin_dir, "strata-datagen"), "--out", f"{args.run_dir}/data", "--clients", str(args.agents),
               "--alpha", "1", "--beta", "1", "--seed", str(args.data_seed)]
    if args.max_samples:
        datagen += ["--max-samples", str(args.max_samples)]
    run_step(datagen, f"{args.run_dir}/datagen.log", "strata-datagen")
    with open(f"{args.run_dir}/data/manifest.json") as f:
        manifest = json.load(f)
    reference = float(manifest["referenceAccuracy"])
    target = args.target if args.target is not None else round(max(0.0, reference - 0.06), 4)
    log(f"PKI and Synthetic(1,1) data ready; central reference accuracy {reference:.4f}, target {target:.4f}")

    port = args.port or choose_port()
    fed = Federation(args, bin_dir, manifest, port)
    schedule = plan(args, rng)
    log("schedule: " + (", ".join(f"{t:.1f}s {k}" for t, k in schedule) or "no kills"))

    fed.start_coordinator()
    while fed.phase == "starting":
        if fed.check_coordinator():
            die(f"the first coordinator exited at start; see {args.run_dir}/coordinator-1.log")
        time.sleep(0.05)
    if fed.phase != "up":
        die(f"the first coordinator never listened; see {args.run_dir}/coordinator-1.log")
    t0 = time.monotonic()
    for agent in fed.ids:
        fed.start_agent(agent)
    log(f"{len(fed.ids)} agents started")

    kills = {"coordinator": 0, "agent": 0, "agents": [], "coordinatorTimes": []}
    restarts = []  # (monotonic due time, "coordinator" | agent id)
    next_kill = 0
    last_probe = last_report = 0.0
    best = None
    stop_reason = None
    while True:
        now = time.monotonic() - t0
        if now >= args.duration:
            stop_reason = f"the --duration cap ({args.duration:g} s)"
            break
        # Exits nobody asked for: logged (they fail check 6) and restarted so that the run goes on.
        if fed.check_coordinator():
            restarts.append((time.monotonic() + 1, "coordinator"))
        for agent in fed.check_agents():
            restarts.append((time.monotonic() + 1, agent))
        # Restarts that are due.
        for due in sorted(r for r in restarts if r[0] <= time.monotonic()):
            restarts.remove(due)
            if due[1] == "coordinator":
                fed.start_coordinator()
            else:
                process = fed.start_agent(due[1])
                log(f"{due[1]} restarted (pid {process.pid}, start #{fed.agent_starts[due[1]]}) on its state")
        # The next kill, if due. A coordinator kill waits until the coordinator listens again.
        if next_kill < len(schedule) and now >= schedule[next_kill][0]:
            kind = schedule[next_kill][1]
            if kind == "coordinator" and fed.phase == "up":
                fed.kill_coordinator()
                kills["coordinator"] += 1
                kills["coordinatorTimes"].append(time.time())
                delay = rng.uniform(0, args.max_restart_delay)
                restarts.append((time.monotonic() + delay, "coordinator"))
                log(f"coordinator kill {kills['coordinator']}/{args.coordinator_kills}; restart in {delay:.2f} s")
                next_kill += 1
            elif kind == "agent" and fed.agents:
                agent = rng.choice(sorted(fed.agents))
                fed.kill_agent(agent)
                kills["agent"] += 1
                kills["agents"].append(agent)
                delay = rng.uniform(0, args.max_restart_delay)
                restarts.append((time.monotonic() + delay, agent))
                log(f"agent kill {kills['agent']}/{args.agent_kills}; restart in {delay:.2f} s")
                next_kill += 1
        # Progress, once a second: may we stop?
        if time.monotonic() - last_probe >= 1:
            last_probe = time.monotonic()
            best, after, waiting = fed.progress(target)
            seen = max([b for b in (best["accuracy"] if best else None,
                                    fed.best_stdout[0] if fed.best_stdout else None) if b is not None], default=None)
            if (next_kill >= len(schedule) and not restarts and fed.phase == "up" and len(fed.agents) == len(fed.ids)
                    and seen is not None and seen >= target and after > 0 and not waiting):
                stop_reason = (f"every kill done, accuracy {seen:.4f} >= target {target:.4f} seen, {after} versions "
                               f"since the last restart, every agent committed since")
                break
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                log(f"progress: {fed.state_line()}; best qualifying accuracy "
                    f"{seen if seen is None else format(seen, '.4f')}; kills {kills['coordinator']}+{kills['agent']}/"
                    f"{args.coordinator_kills}+{args.agent_kills}; agents waiting for a commit {len(waiting)}")
        time.sleep(0.05)

    wall = time.monotonic() - t0
    log(f"stopping: {stop_reason}; {fed.state_line()}")
    final_status = None
    if fed.coordinator is not None:
        status = processes.stop([fed.coordinator], grace=30)
        final_status = status[fed.coordinator.pid]
        fed.read_stdout()
        log(f"coordinator #{fed.incarnation} drained and exited with status {final_status}")
    else:
        log("the coordinator was not running at the end")
    statuses = processes.stop(list(fed.agents.values()), grace=10)
    log(f"{len(statuses)} agents stopped")

    print(f"\nChaos checks (from the SQLite state in {args.run_dir}):", flush=True)
    results, summary = checks(args, fed, kills, final_status, wall, target)
    summary["stopReason"] = stop_reason
    summary["checks"] = results
    with open(f"{args.run_dir}/chaos-result.json", "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    best, every = summary["bestAccuracy"], summary["bestAccuracyAllAgents"]
    print(f"""
Chaos run summary
  agents                {summary['agents']} (mode {args.mode}, seed {args.seed})
  kills                 coordinator {summary['coordinatorKills']}, agents {summary['agentKills']} ({summary['coordinatorIncarnations']} coordinator starts, {summary['agentStarts']} agent starts)
  model versions        {summary['finalVersion']}
  committed updates     {summary['committedUpdates']} ({summary['committedAcrossCoordinatorKills']} handed out before a coordinator kill, committed after it)
  refused updates       {summary['refusedUpdates']} {summary['refusedByCode'] or ''}
  target                {target:.4f} (central reference {reference:.4f})
  best accuracy         {'-' if not best else f"{best['accuracy']:.4f} at version {best['version']} ({best['clients']} agents answered; check 4)"}
                        {'-' if not every else f"{every['accuracy']:.4f} at version {every['version']} over versions every agent answered ({every['qualifyingVersions']} versions)"}
  wall time             {wall:.1f} s (agents started to stop)
  result                {'PASS' if all(r['pass'] for r in results) else 'FAIL'} ({sum(r['pass'] for r in results)}/{len(results)} checks)
""", flush=True)
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
