"""byzantine_agent.py against the real strata-coordinator (protocol 2): the statistics phase with a lying agent,
the stored preprocessing, training to --max-versions, the end of the federation; --standardize off; an agent
without the preprocessing capability refused. Needs the Swift programs: STRATA_BIN, or .build/debug (swift build;
CI runs swift test first); skipped without them. Run: python3 -m pytest Tests/adversary -q"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
AGENT = os.path.join(HERE, "byzantine_agent.py")
BIN = os.environ.get("STRATA_BIN") or os.path.join(REPO, ".build", "debug")
sys.path.insert(0, HERE)
import byzantine_agent as ba  # noqa: E402

pytestmark = pytest.mark.skipif(
    not all(os.access(os.path.join(BIN, p), os.X_OK) for p in ("strata-coordinator", "strata-datagen"))
    or shutil.which("openssl") is None,
    reason=f"needs strata-coordinator and strata-datagen in {BIN} (swift build, or STRATA_BIN) and openssl")

FEATURES, CLASSES, AGENTS = 8, 3, 3


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("federation")
    subprocess.run(["bash", os.path.join(REPO, "Certs", "strata-pki.sh"), "--dir", str(root / "pki"), "dev",
                    "--agents", str(AGENTS)], check=True, capture_output=True, timeout=60)
    subprocess.run([os.path.join(BIN, "strata-datagen"), "--out", str(root / "data"), "--clients", str(AGENTS),
                    "--features", str(FEATURES), "--classes", str(CLASSES), "--seed", "5", "--max-samples", "300",
                    "--reference-epochs", "1"], check=True, capture_output=True, timeout=120)
    return root


def database(root, i):
    return str(root / "data" / f"client-{i:02d}.sqlite")


def run_federation(root, name, coordinator_args, agent_args, timeout=90, max_duration=60, stagger=0.0):
    """Starts a coordinator and one python agent per entry of agent_args (agent-01, …); waits for the coordinator to
    stop and the agents to exit. Returns (coordinator status, agent statuses, agent logs, run dir)."""
    run = root / name
    run.mkdir()
    ready = run / "coordinator.addr"
    pki = root / "pki"
    argv = [os.path.join(BIN, "strata-coordinator"), "--cert", str(pki / "coordinator.crt"), "--key", str(pki / "coordinator.key"),
            "--ca", str(pki / "ca.crt"), "--state", str(run / "coordinator.sqlite"), "--port", "0", "--admin-port", "0",
            "--metrics-port", "0", "--ready-file", str(ready), "--features", str(FEATURES), "--classes", str(CLASSES),
            "--max-duration", str(max_duration), *coordinator_args]
    log = open(run / "coordinator.log", "wb")
    coordinator = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    agents = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and coordinator.poll() is None:
            lines = ready.read_text().split("\n") if ready.exists() else []
            port = next((line.split()[1] for line in lines if len(line.split()) == 2), None)
            if port:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the coordinator did not listen: {(run / 'coordinator.log').read_text()[-2000:]}")
        for i, extra in enumerate(agent_args, start=1):
            if i > 1:
                time.sleep(stagger)
            cid = f"agent-{i:02d}"
            agents.append(subprocess.Popen(
                [sys.executable, AGENT, "--coordinator", f"127.0.0.1:{port}", "--server-name", "localhost",
                 "--cert", str(pki / "agents" / f"{cid}.crt"), "--key", str(pki / "agents" / f"{cid}.key"),
                 "--ca", str(pki / "ca.crt"), "--database", database(root, i), "--rng-seed", str(i),
                 "--max-connect-attempts", "3", *extra],
                stdout=subprocess.DEVNULL, stderr=open(run / f"{cid}.log", "wb"), stdin=subprocess.DEVNULL))
        status = coordinator.wait(timeout=timeout)
        statuses = [a.wait(timeout=20) for a in agents]
    finally:
        for p in [coordinator] + agents:
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()
    logs = [(run / f"agent-{i:02d}.log").read_text() for i in range(1, len(agent_args) + 1)]
    return status, statuses, logs, run


def honest_summaries(root, clients):
    out = []
    for i in clients:
        tx, ty, ex, ey, _ = ba.load_samples(database(root, i))
        out.append(ba.data_statistics(tx, ty, ey))
    return out


def test_the_statistics_phase_survives_a_liar_and_training_follows(federation):
    status, statuses, logs, run = run_federation(
        federation, "liar", ["--statistics-agents", "3", "--statistics-timeout", "30", "--max-versions", "5"],
        [[], [], ["--lie-statistics"]])
    coordinator_log = (run / "coordinator.log").read_text()
    assert status in (0, 3), coordinator_log[-3000:]     # 3: a limit reached before the (default) target
    assert statuses == [0, 0, 0], logs
    assert all("statistics sent" in log for log in logs), logs
    assert "statistics task=" in logs[2] and "lie=1000000000000.0" in logs[2]
    db = sqlite3.connect(run / "coordinator.sqlite")
    try:
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'preprocessing'").fetchone()
        version = db.execute("SELECT MAX(version) FROM modelVersions").fetchone()[0]
        committed = {c for (c,) in db.execute("SELECT DISTINCT clientID FROM committedUpdates")}
    finally:
        db.close()
    pre = json.loads(value)
    honest = honest_summaries(federation, (1, 2))
    for j, t in enumerate(pre["features"]):
        means = [s.features[j].mean for s in honest]
        sds = [np.sqrt(s.features[j].m2 / s.features[j].count) for s in honest]
        # The liar's mean 1e12 did not move the centre out of the honest agents' range (merged mean of theirs).
        assert min(means) - 1e-9 <= t["center"] <= max(means) + 1e-9, (j, t, means)
        assert 0 < t["scale"] <= 10 * max(sds) + abs(means[0] - means[1]), (j, t, sds)
    assert pre.get("labels", []) == []
    assert version >= 5 and committed == {"agent-01", "agent-02", "agent-03"}
    assert all("preprocessing received" in log for log in logs)


def test_standardize_off_skips_the_statistics_phase(federation):
    status, statuses, logs, run = run_federation(
        federation, "off", ["--standardize", "off"], [[], ["--capabilities", "0"]], max_duration=5)   # both join in time
    assert status in (0, 3), (run / "coordinator.log").read_text()[-3000:]
    assert statuses == [0, 0], logs
    assert not any("statistics" in log for log in logs)
    assert not any("preprocessing received" in log for log in logs)
    db = sqlite3.connect(run / "coordinator.sqlite")
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'preprocessing'").fetchone() is None
        assert db.execute("SELECT MAX(version) FROM modelVersions").fetchone()[0] >= 3
    finally:
        db.close()


def test_a_late_agent_gets_the_preprocessing_in_welcome_and_one_without_the_capability_is_refused(federation):
    status, statuses, logs, run = run_federation(
        federation, "late", ["--statistics-agents", "1"], [[], ["--capabilities", "1"], []], timeout=60, max_duration=8, stagger=1.5)
    assert statuses[1] == 1 and "incompatible-data" in logs[1], logs[1]
    assert statuses[0] == 0 and statuses[2] == 0, logs
    assert "preprocessing=none" in logs[0] and "statistics sent" in logs[0]
    # agent-03 joins after agent-01's answer fixed the preprocessing: welcome carries it (option 0x8001) and the
    # model's feature names (option 1); no statistics task, no preprocessing in its tasks.
    assert "preprocessing=welcome featureNames=8" in logs[2], logs[2]
    assert "statistics" not in logs[2] and "preprocessing received" not in logs[2]
