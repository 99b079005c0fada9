"""byzantine_agent.py as a process, over mutual TLS 1.3, against a scripted coordinator written here with the
same codec: the hello's options, a statistics task, a task's preprocessing held for the next task and applied
to training, evaluation statistics, an ack with an unknown option, goodbye; an unknown critical option in welcome
refused with unsupported-option. Needs openssl (Certs/strata-pki.sh); no Swift build.
Run: python3 -m pytest Tests/adversary -q"""

import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
AGENT = os.path.join(HERE, "byzantine_agent.py")
sys.path.insert(0, HERE)
import byzantine_agent as ba  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for the dev PKI")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", os.path.join(REPO, "Certs", "strata-pki.sh"), "--dir", str(d), "dev", "--agents", "1"],
                   check=True, capture_output=True, timeout=60)
    return d


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "client.sqlite"
    rng = np.random.default_rng(11)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, age REAL NOT NULL, dose REAL NOT NULL, "
               "label INTEGER NOT NULL, split TEXT NOT NULL)")
    rows = []
    for i in range(120):
        age, dose = 50 + 12 * rng.standard_normal(), 2 + 0.5 * rng.standard_normal()
        rows.append((age, dose, int((age - 50) / 12 + (dose - 2) / 0.5 > 0), "test" if i % 5 == 0 else "train"))
    db.executemany("INSERT INTO samples (age, dose, label, split) VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return str(path)


class Coordinator:
    """One TLS listener; `script(conn)` runs on the first accepted connection in a thread."""

    def __init__(self, pki, script):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(pki / "coordinator.crt", pki / "coordinator.key")
        ctx.load_verify_locations(pki / "ca.crt")
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx, self.script = ctx, script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.error, self.result = None, {}
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            self.listener.settimeout(20)
            raw, _ = self.listener.accept()
            raw.settimeout(20)
            with self.ctx.wrap_socket(raw, server_side=True) as tls:
                self.script(Connection(tls), self.result)
        except BaseException as e:   # reported by the test
            self.error = e
        finally:
            self.listener.close()


class Connection:
    def __init__(self, tls):
        self.tls, self.fb, self.queue = tls, ba.FrameBuffer(), []

    def send(self, data):
        self.tls.sendall(data)

    def read(self, skip_heartbeats=True):
        """The next message; heartbeat requests are answered and skipped."""
        while True:
            while self.queue:
                m = self.queue.pop(0)
                if skip_heartbeats and m["type"] == "heartbeat":
                    if not m["reply"]:
                        self.send(ba.encode_heartbeat(m["sequence"], m["timestampNanos"], True))
                    continue
                return m
            data = self.tls.recv(1 << 20)
            if not data:
                raise EOFError("the agent closed the connection")
            self.queue.extend(self.fb.feed(data))


def run_agent(pki, database, port, *extra, timeout=60):
    argv = [sys.executable, AGENT, "--coordinator", f"127.0.0.1:{port}", "--server-name", "localhost",
            "--cert", str(pki / "agents" / "agent-01.crt"), "--key", str(pki / "agents" / "agent-01.key"),
            "--ca", str(pki / "ca.crt"), "--database", database, "--rng-seed", "1", "--max-connect-attempts", "1",
            *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


PARAMS = [("weight", np.array([[0.5, -0.5], [0.25, 0.0]], np.float32)), ("bias", np.array([0.0, 0.125], np.float32))]


def welcome(**options):
    return ba.encode_welcome("agent-01", 1, 1000, 64 << 20, ba.MODEL_SOFTMAX, 2, 2, **options)


def test_a_whole_session(pki, database):
    tx, ty, ex, ey, features = ba.load_samples(database)
    stats = ba.data_statistics(tx, ty, ey)
    pre = ba.Preprocessing(tuple(ba.Transform(c.mean, (c.m2 / c.count) ** 0.5, c.mean) for c in stats.features), ba.IDENTITY, ())

    def script(conn, out):
        out["hello"] = conn.read()
        conn.send(welcome(feature_names=tuple(features)))
        conn.send(ba.encode_task(1, 0, ba.TASK_STATISTICS, 0, 0, 0, 0, 0, []))
        out["statistics"] = conn.read()
        conn.send(ba.encode_task(2, 6, ba.TASK_EVALUATE, 0, 0, 0, 0, 0, PARAMS, preprocessing=pre))
        out["evaluate"] = conn.read()
        conn.send(ba.encode_task(3, 6, ba.TASK_TRAIN, 0.1, 8, 2, 43, 0.0, PARAMS))   # no option: pre still holds
        out["train"] = conn.read()
        conn.send(ba.encode_ack(3, ba.ACK_RECEIVED, 6, 0, "", extra_options=[(7, b"a later revision")]))
        conn.send(ba.encode_ack(3, ba.ACK_COMMITTED, 7, 0, ""))
        conn.send(ba.encode_goodbye(0, 0, "the federation is over"))
        out["end"] = conn.read()    # close_notify: EOF

    coordinator = Coordinator(pki, script)
    proc = run_agent(pki, database, coordinator.port)
    coordinator.thread.join(10)
    assert isinstance(coordinator.error, EOFError), (coordinator.error, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    r = coordinator.result
    hello = r["hello"]
    assert hello["featureNames"] == ("age", "dose") and hello["capabilities"] == ba.CAP_ALL
    assert (hello["featureCount"], hello["trainSampleCount"], hello["evalSampleCount"]) == (2, len(ty), len(ey))

    s = r["statistics"]
    assert (s["taskID"], s["sampleCount"], s["delta"], s["evalSampleCount"]) == (1, 0, [], len(ey))
    assert s["statistics"] == stats and "evaluation" not in s
    assert s["statistics"].features[0].mean == pytest.approx(float(np.mean(tx[:, 0].astype(np.float64))))

    rows = ba.apply_preprocessing(pre, ex, ey, ba.MODEL_SOFTMAX)
    w, b = PARAMS[0][1], PARAMS[1][1]
    e = r["evaluate"]
    loss, acc = ba.evaluate(ba.MODEL_SOFTMAX, w, b, rows.x, rows.y)
    assert (e["taskID"], e["baseVersion"], e["sampleCount"], e["delta"]) == (2, 6, 0, [])
    assert e["evalLoss"] == pytest.approx(loss, rel=1e-6) and e["evalAccuracy"] == pytest.approx(acc)
    assert e["evaluation"] == ba.evaluation_statistics(ba.MODEL_SOFTMAX, w, b, rows)

    t = r["train"]
    train_rows = ba.apply_preprocessing(pre, tx, ty, ba.MODEL_SOFTMAX)
    nw, nb, train_loss = ba.train(ba.MODEL_SOFTMAX, w, b, train_rows.x, train_rows.y, 0.1, 8, 2, 43, 0.0)
    assert (t["taskID"], t["baseVersion"], t["sampleCount"]) == (3, 6, len(ty))
    np.testing.assert_array_equal(t["delta"][0][1], nw - w)        # trained on the preprocessed rows
    np.testing.assert_array_equal(t["delta"][1][1], nb - b)
    assert t["trainLoss"] == pytest.approx(train_loss, rel=1e-6)
    assert t["evaluation"] == e["evaluation"]                       # the task's parameters before training
    assert "ack received" in proc.stderr and "federation ended" in proc.stderr


def test_lying_statistics_over_the_wire(pki, database):
    def script(conn, out):
        out["hello"] = conn.read()
        conn.send(welcome())
        conn.send(ba.encode_task(1, 0, ba.TASK_STATISTICS, 0, 0, 0, 0, 0, []))
        out["statistics"] = conn.read()
        conn.send(ba.encode_goodbye(2, 0, "target reached"))
        out["end"] = conn.read()

    coordinator = Coordinator(pki, script)
    proc = run_agent(pki, database, coordinator.port, "--behaviour", "scaled-count", "--lie-statistics")
    coordinator.thread.join(10)
    assert proc.returncode == 0, proc.stderr
    tx, ty, ex, ey, _ = ba.load_samples(database)
    stats = coordinator.result["statistics"]["statistics"]
    assert all(c.mean == 1e12 and c.count == 1000 * len(ty) for c in stats.features)
    assert coordinator.result["hello"]["trainSampleCount"] == 1000 * len(ty)


def test_an_unknown_critical_option_is_refused_with_unsupported_option(pki, database):
    def script(conn, out):
        out["hello"] = conn.read()
        conn.send(welcome(extra_options=[(0x8002, b"\x01")]))
        out["answer"] = conn.read()

    coordinator = Coordinator(pki, script)
    proc = run_agent(pki, database, coordinator.port)
    coordinator.thread.join(10)
    assert coordinator.error is None, coordinator.error
    answer = coordinator.result["answer"]
    assert (answer["type"], answer["code"]) == ("error", 10) and "0x8002" in answer["message"]
    assert proc.returncode == 1                       # --max-connect-attempts 1


def test_a_preprocessing_the_agent_cannot_apply_is_not_run(pki, database):
    bad = ba.Preprocessing((ba.Transform(0.0, 0.0, 0.0), ba.IDENTITY), ba.IDENTITY, ())

    def script(conn, out):
        out["hello"] = conn.read()
        conn.send(welcome())
        conn.send(ba.encode_task(4, 6, ba.TASK_EVALUATE, 0, 0, 0, 0, 0, PARAMS, preprocessing=bad))
        out["answer"] = conn.read()

    coordinator = Coordinator(pki, script)
    proc = run_agent(pki, database, coordinator.port)
    coordinator.thread.join(10)
    assert isinstance(coordinator.error, (EOFError, ConnectionError, ssl.SSLError)), coordinator.error   # closed, no answer
    assert "answer" not in coordinator.result
    assert "cannot apply its preprocessing" in proc.stderr and proc.returncode == 1
