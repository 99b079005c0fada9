#!/usr/bin/env python3
"""Strata Byzantine measurement: how far do 20 % lying agents move a federation?

Makes a dev PKI and Synthetic(alpha, beta) data for AGENTS clients in a temporary folder, then for each
scenario and each run starts a coordinator on free loopback ports (--port 0, --ready-file) and its agents:

  clean         the honest Swift agents only (agent-01 .. agent-H, H = AGENTS - BYZANTINE); the Byzantine
                slots stay empty. This is the fair baseline: the same honest agents, data and test rows,
                without the attackers (replacing the attackers by honest agents would add their data too)
  BEHAVIOUR     the same honest Swift agents plus BYZANTINE python agents (Tests/adversary/byzantine_agent.py)
                of that behaviour on the last client ids/databases: large-norm, sign-flip, scaled-count,
                lying-eval, or honest (the python client behaving: checks the client itself)
  mix           the Byzantine slots cycle through --mix (default large-norm,sign-flip,scaled-count,lying-eval)
  all-honest    every client an honest Swift agent, measured on the same test rows as the attack scenarios
                (agents 1..H): what the H agents' accuracy is when the other slots hold honest agents with
                their own (non-IID) data instead of attackers
  all-swift     every client a Swift agent      } the python client's check: both must train alike
  all-python    every client an honest python agent }

The coordinator runs for --duration seconds (--max-duration; or --max-versions), with a --target-accuracy
no honest run reaches (default 0.999) so that "target reached" can only be a lie, evaluating every
--evaluate-every versions. Per run it reports, from the summary file, the coordinator's exit status and
its SQLite state (read after it exited):

  final      accuracy and loss of the last committed global model on the pooled test rows of the honest
             agents, computed here with NumPy from modelVersions (independent of who answered evaluations),
             through the federation's stored preprocessing (protocol 2) when it has one
  coord      the coordinator's own last and best evaluated accuracy (sample-weighted over every agent that
             answered, liars included: what the federation believed)
  honest-best  best accuracy among evaluated versions answered by every honest agent, over their rows only
  early stop target-reached (false: no honest run gets there), the coordinator dying, or stopping before
             --duration; plus the stop reason and exit status
  refused    updates refused, by code name (and how many of them came from the Byzantine agents)

Notes. The python agents answer as fast as they can, so next to debug-build Swift agents they fill most buffer
slots (60-80 % of the committed updates in the baseline): that is part of the attack, and also why the
`honest` scenario is not the client check (its two fast honest agents over-weight their own non-IID data);
compare all-swift with all-python version for version instead. Two lying-eval agents at the default
evalSampleCount 2^62 overflow the coordinator's Int64 sample sum (a crash, not a "target reached");
--agent-arg=--eval-count=2305843009213693952 (2^61) shows the false-target path with two liars.

Every process it starts is stopped however it ends (atexit, SIGINT/SIGTERM, and a parent-death signal).
Progress lines go to stdout; --json FILE writes every run's numbers.

Examples:
  Deploy/byzantine.py --bin /tmp/strata-bin-base                       # clean + every behaviour, 1 run each
  Deploy/byzantine.py --scenarios clean,large-norm --runs 3 --duration 60
  Deploy/byzantine.py --scenarios sign-flip --coordinator-arg=--some-robust-fold --coordinator-arg=median
  Deploy/byzantine.py --scenarios all-swift,all-python                 # the python client trains like Swift

Exit status: 0 all runs done; 2 bad arguments; 3 setup failed (PKI, data, a coordinator that never listened);
130/143 interrupted.
"""

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runkit import REPO, procs, require_programs, run_root, say  # noqa: E402  (progress lines; every process started is stopped on exit)

ADVERSARY = os.path.join(REPO, "Tests", "adversary", "byzantine_agent.py")
sys.path.insert(0, os.path.dirname(ADVERSARY))
import byzantine_agent as ba  # noqa: E402  (load_samples, evaluate, code names)

BEHAVIOURS = ("large-norm", "sign-flip", "scaled-count", "lying-eval", "honest")
SCENARIOS = ("clean", "all-honest") + BEHAVIOURS + ("mix", "all-swift", "all-python")
DEFAULT_SCENARIOS = "clean,large-norm,sign-flip,scaled-count,lying-eval"

def die(message, status=3):
    say(f"error: {message}")
    sys.exit(status)


# ------------------------------------------------------------------------------------------------ setup

def run_checked(argv, what):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, text=True)
    if r.returncode != 0:
        die(f"{what} failed (status {r.returncode}):\n{r.stdout[-2000:]}")
    return r.stdout


def setup(args, root):
    say(f"dev PKI for {args.agents} agents and Synthetic({args.alpha:g},{args.beta:g}) data in {root}")
    run_checked(["bash", os.path.join(REPO, "Certs", "strata-pki.sh"), "--dir", os.path.join(root, "pki"), "dev",
                 "--agents", str(args.agents)], "strata-pki.sh")
    gen = [os.path.join(args.bin, "strata-datagen"), "--out", os.path.join(root, "data"), "--clients", str(args.agents),
           "--alpha", str(args.alpha), "--beta", str(args.beta), "--seed", str(args.data_seed)]
    if args.max_samples:
        gen += ["--max-samples", str(args.max_samples)]
    run_checked(gen, "strata-datagen")
    with open(os.path.join(root, "data", "manifest.json")) as f:
        manifest = json.load(f)
    say(f"data: {sum(c['train'] for c in manifest['clients'])} train / {sum(c['test'] for c in manifest['clients'])} test rows, "
        f"central reference accuracy {manifest['referenceAccuracy']:.4f}")
    return manifest


def agent_id(i):
    return f"agent-{i:02d}"


def roster(args, scenario):
    """[(client index, 'swift' | python behaviour)] for a scenario; honest Swift agents are 1..H."""
    n, k = args.agents, args.byzantine
    honest = [(i, "swift") for i in range(1, n - k + 1)]
    slots = list(range(n - k + 1, n + 1))
    if scenario == "clean":
        return honest
    if scenario in ("all-swift", "all-honest"):
        return [(i, "swift") for i in range(1, n + 1)]
    if scenario == "all-python":
        return [(i, "honest") for i in range(1, n + 1)]
    if scenario == "mix":
        return honest + [(i, args.mix[j % len(args.mix)]) for j, i in enumerate(slots)]
    return honest + [(i, scenario) for i in slots]


def honest_clients(args, scenario):
    """The clients whose test rows measure the model: the honest agents of the comparison."""
    if scenario in ("all-swift", "all-python"):
        return list(range(1, args.agents + 1))
    return list(range(1, args.agents - args.byzantine + 1))


class TestRows:
    def __init__(self, root, clients):
        xs, ys = [], []
        for i in clients:
            _, _, ex, ey, _ = ba.load_samples(os.path.join(root, "data", f"client-{i:02d}.sqlite"))
            xs.append(ex)
            ys.append(ey)
        self.x = np.concatenate(xs)
        self.y = np.concatenate(ys)


# -------------------------------------------------------------------------------------------------- run

# "version N  accuracy A  [macro-f1 F  auc U  ]loss L  clients a/b ...": the pooled metrics are skipped.
LINE = re.compile(r"^version\s+(\d+)\s+accuracy\s+([0-9.naif-]+)\s+(?:(?:macro-f1|auc)\s+[0-9.naif-]+\s+)*loss\s+([0-9.naif-]+)"
                  r"\s+clients\s+(\d+)/(\d+)")


def read_ready(path):
    ports = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            ports["agents"] = (parts[0], int(parts[1]))
        elif len(parts) == 3:
            ports[parts[0]] = (parts[1], int(parts[2]))
    return ports if "agents" in ports and "metrics" in ports else None


def metrics(host, port):
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except Exception:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^(strata_updates_(?:accepted|refused)_total)(\{[^}]*\})?\s+([0-9.e+]+)", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(3))
    return out


def last_progress(stdout_path):
    try:
        with open(stdout_path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        m = LINE.match(line.strip())
        if m:
            return m
    return None


def run_once(args, root, manifest, scenario, run_index, test_rows):
    run_dir = os.path.join(root, f"{scenario}-{run_index}")
    os.makedirs(run_dir)
    pki = os.path.join(root, "pki")
    members = roster(args, scenario)
    ready = os.path.join(run_dir, "coordinator.addr")
    coord_argv = [
        os.path.join(args.bin, "strata-coordinator"),
        "--cert", f"{pki}/coordinator.crt", "--key", f"{pki}/coordinator.key", "--ca", f"{pki}/ca.crt",
        "--state", os.path.join(run_dir, "coordinator.sqlite"), "--port", "0", "--admin-port", "0", "--metrics-port", "0",
        "--ready-file", ready, "--summary-file", os.path.join(run_dir, "summary.json"),
        "--features", str(manifest["features"]), "--classes", str(manifest["classes"]),
        "--max-duration", str(args.duration), "--target-accuracy", str(args.target),
        "--min-evaluation-clients", str(args.min_evaluation_clients or len(members)),
        # Training starts once the agents sure to be admitted are in: a Byzantine agent may be refused at its
        # hello by design (--lie-in-hello), and must not hold the federation for ever.
        "--min-clients", str(len(honest_clients(args, scenario))),
        "--evaluate-every", str(args.evaluate_every),
    ]
    if args.evaluate_interval:
        coord_argv += ["--evaluate-interval", str(args.evaluate_interval)]
    if args.max_versions:
        coord_argv += ["--max-versions", str(args.max_versions)]
    coord_argv += args.coordinator_arg
    with open(os.path.join(run_dir, "command.txt"), "w") as f:
        f.write(" ".join(coord_argv) + "\n")
    say(f"{scenario} run {run_index}: coordinator + " + ", ".join(
        f"{sum(1 for _, k in members if k == kind)} {kind}" for kind in dict.fromkeys(k for _, k in members)))
    coordinator = procs.start(coord_argv, os.path.join(run_dir, "coordinator.log"), os.path.join(run_dir, "coordinator.out"))
    deadline = time.monotonic() + 60
    ports = None
    while time.monotonic() < deadline:
        ports = read_ready(ready)
        if ports:
            break
        if coordinator.poll() is not None:
            die(f"the coordinator exited with status {coordinator.returncode} before listening; see {run_dir}/coordinator.log")
        time.sleep(0.1)
    if not ports:
        procs.stop([coordinator])
        die(f"the coordinator did not listen within 60 s; see {run_dir}/coordinator.log")
    host, port = ports["agents"]
    started = time.monotonic()
    agents = []
    for i, kind in members:
        cid = agent_id(i)
        cert, key = f"{pki}/agents/{cid}.crt", f"{pki}/agents/{cid}.key"
        db = os.path.join(root, "data", f"client-{i:02d}.sqlite")
        if kind == "swift":
            argv = [os.path.join(args.bin, "strata-agent"), "--coordinator", f"{host}:{port}", "--server-name", "localhost",
                    "--cert", cert, "--key", key, "--ca", f"{pki}/ca.crt", "--database", db,
                    "--state", os.path.join(run_dir, f"{cid}.state.sqlite"), "--after-federation", "exit"]
        else:
            argv = [sys.executable, ADVERSARY, "--coordinator", f"{host}:{port}", "--server-name", "localhost",
                    "--cert", cert, "--key", key, "--ca", f"{pki}/ca.crt", "--database", db, "--behaviour", kind,
                    "--rng-seed", str(1000 * run_index + i)] + args.agent_arg
        agents.append((cid, kind, procs.start(argv, os.path.join(run_dir, f"{cid}.log"))))

    next_progress = time.monotonic() + args.progress
    mt = {}
    limit = args.duration + 60
    while coordinator.poll() is None and time.monotonic() - started < limit:
        time.sleep(0.2)
        if time.monotonic() >= next_progress:
            next_progress += args.progress
            m = last_progress(os.path.join(run_dir, "coordinator.out"))
            mt = metrics(*ports["metrics"]) or mt     # the endpoint is gone once the coordinator stops
            alive = sum(1 for _, _, p in agents if p.poll() is None)
            acc = f"version {m.group(1)} accuracy {float(m.group(2)):.4f} ({m.group(4)}/{m.group(5)} clients)" if m else "no evaluation yet"
            say(f"  {scenario} run {run_index} +{time.monotonic() - started:5.1f}s: {acc}; "
                f"accepted {int(mt.get('strata_updates_accepted_total', 0))} refused {int(mt.get('strata_updates_refused_total', 0))}; "
                f"{alive}/{len(agents)} agents running")
    if coordinator.poll() is None:
        say(f"  the coordinator is still running after {limit:.0f} s: SIGTERM")
        procs.stop([coordinator], grace=30)
    wall = time.monotonic() - started
    status = coordinator.returncode
    # Agents end by themselves on goodbye(retryAfter 0); whatever is left (e.g. after a crash) is stopped.
    grace_end = time.monotonic() + 10
    while time.monotonic() < grace_end and any(p.poll() is None for _, _, p in agents):
        time.sleep(0.2)
    left = [p for _, _, p in agents if p.poll() is None]
    procs.stop(left, grace=5)
    agent_status = {cid: p.returncode for cid, _, p in agents}
    result = measure(args, run_dir, scenario, run_index, members, test_rows, status, wall, agent_status, len(left))
    say(f"  {scenario} run {run_index}: " + oneline(result))
    if not args.keep:
        for name in os.listdir(run_dir):
            if name.endswith((".sqlite", ".sqlite-wal", ".sqlite-shm")):
                os.remove(os.path.join(run_dir, name))
    return result


def measure(args, run_dir, scenario, run_index, members, test_rows, status, wall, agent_status, stuck):
    byz = {agent_id(i) for i, kind in members if kind != "swift"} if scenario not in ("all-python",) else set()
    honest = {agent_id(i) for i in honest_clients(args, scenario)}
    summary = {}
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        pass
    r = {"scenario": scenario, "run": run_index, "exitStatus": status, "wallSeconds": round(wall, 1),
         "stopReason": summary.get("reason"), "summaryWritten": bool(summary), "agentsStoppedByScript": stuck,
         "agentExitStatus": agent_status, "runDir": run_dir,
         "coordLastAccuracy": (summary.get("lastEvaluation") or {}).get("accuracy"),
         "coordLastLoss": (summary.get("lastEvaluation") or {}).get("loss"),
         "coordBestAccuracy": summary.get("bestAccuracy"), "targetReached": summary.get("targetReached")}
    try:
        db = sqlite3.connect(f"file:{os.path.join(run_dir, 'coordinator.sqlite')}?mode=ro", uri=True)
    except sqlite3.Error as e:
        r["error"] = f"state unreadable: {e}"
        return r
    try:
        row = db.execute("SELECT version, parameters FROM modelVersions ORDER BY version DESC LIMIT 1").fetchone()
        kind, features = ba.MODEL_SOFTMAX, test_rows.x.shape[1]
        pre = stored_preprocessing(db)
        r["standardised"] = pre is not None and any(t != ba.IDENTITY for t in pre.features)
        if row:
            params = np.frombuffer(row[1], dtype="<f4")
            classes = len(params) // (features + 1)
            w = params[:features * classes].reshape(features, classes)
            b = params[features * classes:]
            rows = ba.apply_preprocessing(pre, test_rows.x, test_rows.y, kind)   # the model's inputs (§7.0)
            with np.errstate(all="ignore"):
                loss, acc = ba.evaluate(kind, w, b, rows.x, rows.y)
            r.update(finalVersion=row[0], finalAccuracy=acc, finalLoss=loss,
                     finalNonFinite=int(np.sum(~np.isfinite(params))), finalParamNorm=float(np.linalg.norm(params.astype(np.float64))))
        refused = db.execute("SELECT code, clientID, COUNT(*) FROM refusedUpdates GROUP BY code, clientID").fetchall()
        by_code = {}
        for code, client, count in refused:
            e = by_code.setdefault(ba.code_name(code), {"total": 0, "byzantine": 0})
            e["total"] += count
            if client in byz:
                e["byzantine"] += count
        r["refusedByCode"] = by_code
        committed = dict(db.execute("SELECT clientID, COUNT(*) FROM committedUpdates GROUP BY clientID").fetchall())
        r["committedHonest"] = sum(v for k, v in committed.items() if k not in byz)
        r["committedByzantine"] = sum(v for k, v in committed.items() if k in byz)
        # Best evaluated version over the honest agents' own answers (every honest agent answered it).
        rows = db.execute("SELECT modelVersion, clientID, sampleCount, accuracy, loss FROM evaluations").fetchall()
        per = {}
        for version, client, n, acc, loss in rows:
            if client in honest:
                per.setdefault(version, {})[client] = (n, acc, loss)
        complete = {v: d for v, d in per.items() if set(d) >= honest}
        if complete:
            scored = {v: sum(n * a for n, a, _ in d.values()) / sum(n for n, _, _ in d.values()) for v, d in complete.items()}
            best = max(scored, key=scored.get)
            r["honestBestAccuracy"], r["honestBestVersion"] = scored[best], best
            last = max(scored)
            r["honestLastEvaluatedAccuracy"], r["honestLastEvaluatedVersion"] = scored[last], last
        r["evaluatedVersions"] = len(per)
    finally:
        db.close()
    r["earlyStop"] = early_stop(args, r)
    return r


def stored_preprocessing(db):
    """The federation's preprocessing (protocol 2) as the coordinator stored it with its model (meta key
    'preprocessing', JSON), or None (a federation without one, or a coordinator of protocol 1)."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'preprocessing'").fetchone()
    except sqlite3.Error:
        return None
    if not row:
        return None
    p = json.loads(row[0])

    def transform(t):
        return ba.Transform(float(t["center"]), float(t["scale"]), float(t["fill"]))
    return ba.Preprocessing(tuple(transform(t) for t in p["features"]), transform(p.get("target", {"center": 0, "scale": 1, "fill": 0})),
                            tuple(p.get("labels", ())))


def early_stop(args, r):
    if r.get("stopReason") == "target-reached" or r.get("targetReached"):
        return "target-reached"
    if r["exitStatus"] not in (0, 3):
        return f"coordinator died (exit status {r['exitStatus']})"
    if not r["summaryWritten"]:
        return "no summary"
    if r.get("stopReason") not in ("max-duration", "max-versions"):
        return f"stopped: {r.get('stopReason')}"
    return None


def fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def oneline(r):
    refused = ", ".join(f"{k} {v['total']}" for k, v in sorted(r.get("refusedByCode", {}).items())) or "none"
    return (f"final acc {fmt(r.get('finalAccuracy'))} loss {fmt(r.get('finalLoss'), '.3g')} (v{r.get('finalVersion', '-')}), "
            f"honest best {fmt(r.get('honestBestAccuracy'))}, coordinator last {fmt(r.get('coordLastAccuracy'))} "
            f"best {fmt(r.get('coordBestAccuracy'))}; early stop: {r['earlyStop'] or 'no'} "
            f"(reason {r.get('stopReason')}, exit {r['exitStatus']}, {r['wallSeconds']} s); refused: {refused}; "
            f"committed honest {r.get('committedHonest', '-')} byzantine {r.get('committedByzantine', '-')}")


def report(results):
    print()
    print("Byzantine measurement (final = last global model on the honest agents' pooled test rows)")
    head = f"{'SCENARIO':<13}{'RUN':>4}{'FINAL ACC':>10}{'FINAL LOSS':>11}{'HONEST BEST':>12}{'COORD LAST':>11}{'COORD BEST':>11}  {'EARLY STOP':<36}REFUSED"
    print(head)
    for r in results:
        refused = ",".join(f"{k}:{v['total']}" for k, v in sorted(r.get("refusedByCode", {}).items())) or "-"
        print(f"{r['scenario']:<13}{r['run']:>4}{fmt(r.get('finalAccuracy')):>10}{fmt(r.get('finalLoss'), '.3g'):>11}"
              f"{fmt(r.get('honestBestAccuracy')):>12}{fmt(r.get('coordLastAccuracy')):>11}{fmt(r.get('coordBestAccuracy')):>11}  "
              f"{(r['earlyStop'] or 'no'):<36}{refused}")
    clean = [r["finalAccuracy"] for r in results if r["scenario"] == "clean" and r.get("finalAccuracy") is not None]
    if clean:
        base = float(np.mean(clean))
        print()
        print(f"{'SCENARIO':<13}{'MEAN FINAL':>11}{'VS CLEAN':>10}  EARLY STOPS")
        for s in dict.fromkeys(r["scenario"] for r in results):
            accs = [r["finalAccuracy"] for r in results if r["scenario"] == s and r.get("finalAccuracy") is not None]
            stops = sum(1 for r in results if r["scenario"] == s and r["earlyStop"])
            runs = sum(1 for r in results if r["scenario"] == s)
            if accs:
                print(f"{s:<13}{np.mean(accs):>11.4f}{np.mean(accs) - base:>+10.4f}  {stops}/{runs}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(REPO, ".build", "debug"), help="folder with strata-coordinator, strata-agent, strata-datagen")
    p.add_argument("--agents", type=int, default=10, help="clients in all (default 10)")
    p.add_argument("--byzantine", type=int, help="Byzantine slots (default 20 %% of --agents, at least 1)")
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help=f"comma-separated, from {', '.join(SCENARIOS)} (default {DEFAULT_SCENARIOS})")
    p.add_argument("--behaviour", "--behavior", choices=BEHAVIOURS, help="shorthand: --scenarios clean,BEHAVIOUR")
    p.add_argument("--mix", default="large-norm,sign-flip,scaled-count,lying-eval", help="behaviours the 'mix' scenario cycles through")
    p.add_argument("--clean", action="store_true", help="only the clean run (no attackers)")
    p.add_argument("--runs", type=int, default=1, help="runs per scenario (default 1)")
    p.add_argument("--duration", type=float, default=60, help="seconds per run (coordinator --max-duration; default 60)")
    p.add_argument("--max-versions", type=int, help="also stop after this many versions")
    p.add_argument("--evaluate-every", type=int, default=10, help="coordinator --evaluate-every (default 10)")
    p.add_argument("--evaluate-interval", type=float, help="coordinator --evaluate-interval (seconds), as well")
    p.add_argument("--target", type=float, default=0.999, help="coordinator --target-accuracy, one no honest run reaches (default 0.999)")
    p.add_argument("--min-evaluation-clients", type=int, help="coordinator --min-evaluation-clients (default: every agent started)")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--max-samples", type=int, help="strata-datagen --max-samples (rows per client cap)")
    p.add_argument("--coordinator-arg", action="append", default=[], help="extra coordinator flag (repeatable; use --coordinator-arg=--flag)")
    p.add_argument("--agent-arg", action="append", default=[], help="extra flag for every python agent (repeatable, e.g. --agent-arg=--norm=5000)")
    p.add_argument("--run-dir", help="folder for PKI, data and logs (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the folder and the SQLite files (default: remove them; logs are kept with --run-dir)")
    p.add_argument("--progress", type=float, default=10, help="seconds between progress lines (default 10)")
    p.add_argument("--json", help="write every run's numbers to this file")
    args = p.parse_args()
    if args.clean:
        args.scenarios = "clean"
    elif args.behaviour:
        args.scenarios = f"clean,{args.behaviour}"
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in args.scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario '{s}' (choose from {', '.join(SCENARIOS)})")
    args.mix = [s.strip() for s in args.mix.split(",") if s.strip()]
    for s in args.mix:
        if s not in BEHAVIOURS:
            p.error(f"unknown behaviour '{s}' in --mix")
    if args.byzantine is None:
        args.byzantine = max(1, round(args.agents * 0.2))
    if not (1 <= args.byzantine < args.agents):
        p.error("--byzantine must be at least 1 and below --agents")
    if args.runs < 1 or args.duration <= 0:
        p.error("--runs and --duration must be positive")
    args.bin = require_programs(p, args.bin, ("strata-coordinator", "strata-agent", "strata-datagen"))
    return args


def main():
    args = parse_args()
    root = run_root(args.run_dir, "strata-byzantine-")
    manifest = setup(args, root)
    say(f"{args.agents} clients: {args.agents - args.byzantine} honest Swift agents, {args.byzantine} Byzantine slots; "
        f"scenarios {', '.join(args.scenarios)}; {args.runs} run(s) of {args.duration:g} s; binaries {args.bin}")
    tests = {}
    results = []
    try:
        for s in args.scenarios:
            key = tuple(honest_clients(args, s))
            if key not in tests:
                tests[key] = TestRows(root, key)
            for run in range(1, args.runs + 1):
                results.append(run_once(args, root, manifest, s, run, tests[key]))
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump({"arguments": vars(args), "referenceAccuracy": manifest["referenceAccuracy"], "runs": results}, f, indent=2)
    finally:
        report(results)
        if not args.keep and not args.run_dir:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"logs kept in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
