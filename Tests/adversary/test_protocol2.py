"""What protocol 2 added to byzantine_agent.py, without a network: the statistics of a statistics task (against
NumPy), the preprocessing of §7.0, the evaluation statistics of §7.5, the lies told about them, and how a session
answers statistics tasks and carries a task's preprocessing to later tasks. Run: python3 -m pytest Tests/adversary -q"""

import math
import os
import sqlite3
import sys
import threading
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byzantine_agent as ba  # noqa: E402


def merge(a, b):
    """Chan et al.'s exact merge of two columns (what the coordinator does with the agents' summaries)."""
    if b.count == 0:
        return a._replace(missing=a.missing + b.missing)
    if a.count == 0:
        return b._replace(missing=a.missing + b.missing)
    n = a.count + b.count
    d = b.mean - a.mean
    return ba.Column(n, a.missing + b.missing, a.mean + d * b.count / n, a.m2 + b.m2 + d * d * a.count * b.count / n,
                     min(a.min, b.min), max(a.max, b.max))


def consistent(c, rows):
    """The coordinator's check of one column (§3 update, statistics task)."""
    if c.count + c.missing > rows:
        return False
    if c.count == 0:
        return True
    return all(math.isfinite(v) for v in c[2:]) and c.m2 >= 0 and c.min <= c.mean <= c.max


# ---------------------------------------------------------------------------------------- statistics

@pytest.mark.parametrize("offset,scale", [(0.0, 1.0), (1e6, 3.0), (-250.0, 1e-3), (1e9, 1.0)])
def test_column_summary_against_numpy(offset, scale):
    rng = np.random.default_rng(3)
    v = (offset + scale * rng.standard_normal(5000)).astype(np.float32)
    v[rng.random(5000) < 0.1] = np.nan
    c = ba.column_summary(v)
    v64 = v.astype(np.float64)
    present = v64[~np.isnan(v64)]
    assert (c.count, c.missing) == (present.size, 5000 - present.size)
    assert c.mean == pytest.approx(np.nanmean(v64), rel=1e-13, abs=1e-12)
    assert c.m2 / c.count == pytest.approx(np.nanvar(v64), rel=1e-9, abs=1e-15)   # population variance
    assert (c.min, c.max) == (np.nanmin(v64), np.nanmax(v64))
    assert type(c.count) is int and type(c.mean) is float


def test_column_summary_edge_cases():
    assert ba.column_summary(np.array([], np.float32)) == ba.Column(0, 0, 0.0, 0.0, math.inf, -math.inf)
    assert ba.column_summary(np.array([np.nan, np.nan], np.float32)) == ba.Column(0, 2, 0.0, 0.0, math.inf, -math.inf)
    assert ba.column_summary(np.array([2.5], np.float32)) == ba.Column(1, 0, 2.5, 0.0, 2.5, 2.5)
    assert ba.column_summary(np.full(7, 0.1, np.float32)).m2 == 0.0     # never negative from rounding


def test_agents_summaries_merge_to_the_pooled_statistics():
    rng = np.random.default_rng(5)
    parts = [(rng.standard_normal(n) * s + m).astype(np.float32) for n, s, m in ((300, 1.0, 4.0), (50, 10.0, -2.0), (1200, 0.1, 0.5))]
    merged = ba.EMPTY_COLUMN
    for p in parts:
        merged = merge(merged, ba.column_summary(p))
    pooled = np.concatenate(parts).astype(np.float64)
    assert merged.count == pooled.size
    assert merged.mean == pytest.approx(pooled.mean(), rel=1e-12)
    assert merged.m2 / merged.count == pytest.approx(pooled.var(), rel=1e-10)


def test_data_statistics_summarise_training_rows_as_read():
    rng = np.random.default_rng(1)
    tx = rng.standard_normal((40, 3)).astype(np.float32) * [1, 5, 100] + [0, 3, -7]
    tx[3, 1] = np.nan
    ty = rng.integers(0, 4, 40).astype(np.float32)
    ey = rng.integers(0, 4, 9).astype(np.float32)
    s = ba.data_statistics(tx, ty, ey)
    assert len(s.features) == 3
    for j, c in enumerate(s.features):
        assert c == ba.column_summary(tx[:, j])
    assert s.features[1].missing == 1 and s.features[1].count == 39
    assert isinstance(s.labels, ba.Column) and s.labels == ba.column_summary(ty)   # numbers: the training rows
    assert s.labels.mean == pytest.approx(float(np.mean(ty.astype(np.float64))))
    # text labels: every distinct label of training and evaluation rows with its count
    t = ba.data_statistics(tx[:3], np.array(["b", "a", "b"], dtype=object), np.array(["c", "b"], dtype=object))
    assert t.labels == (("a", 1), ("b", 3), ("c", 1))
    frame = ba.encode_update(1, 0, 0, 0.0, 2, 0.0, 0.0, 0, [], statistics=t)
    (u,) = ba.FrameBuffer().feed(frame)
    assert u["statistics"] == t


# -------------------------------------------------------------------------------------- preprocessing

PRE = ba.Preprocessing((ba.Transform(1.0, 2.0, 5.0), ba.Transform(-3.0, 0.5, -3.0)), ba.IDENTITY, ())


def test_preprocessing_standardises_and_fills():
    x = np.array([[1.0, -3.0], [3.0, np.nan], [np.nan, -2.0]], np.float32)
    y = np.array([0, 1, 1], np.float32)
    rows = ba.apply_preprocessing(PRE, x, y, ba.MODEL_SOFTMAX)
    expected = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 2.0]], np.float32)   # NaN -> fill, then (x - c) / s
    assert rows.x.dtype == np.float32 and np.array_equal(rows.x, expected)
    assert np.array_equal(rows.y, y) and rows.dropped == 0 and rows.target_raw is None
    # Against the formula on random data, in float64 then rounded once to float32.
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((100, 2)) * 30 + 7).astype(np.float32)
    pre = ba.Preprocessing((ba.Transform(7.1, 29.5, 7.1), ba.Transform(6.9, 31.0, 6.9)), ba.IDENTITY, ())
    got = ba.apply_preprocessing(pre, x, np.zeros(100, np.float32), ba.MODEL_SOFTMAX).x
    want = ((x.astype(np.float64) - [7.1, 6.9]) / [29.5, 31.0]).astype(np.float32)
    assert np.array_equal(got, want)
    # Without a preprocessing rows are used as read (a missing value becomes 0).
    raw = ba.apply_preprocessing(None, np.array([[1.5, np.nan]], np.float32), np.zeros(1, np.float32), ba.MODEL_SOFTMAX)
    assert raw.x.tolist() == [[1.5, 0.0]]


def test_preprocessing_of_labels_and_targets():
    x = np.zeros((4, 1), np.float32)
    pre = ba.Preprocessing((ba.IDENTITY,), ba.IDENTITY, ("cat", "dog", "émeu"))
    rows = ba.apply_preprocessing(pre, x, np.array(["dog", "émeu", "fox", "cat"], dtype=object), ba.MODEL_SOFTMAX)
    assert rows.y.tolist() == [1.0, 2.0, 0.0] and rows.dropped == 1 and len(rows.x) == 3   # fox: not used
    reg = ba.Preprocessing((ba.IDENTITY,), ba.Transform(100.0, 20.0, 100.0), ())
    y = np.array([80.0, 100.0, 150.0, 100.0], np.float32)
    rows = ba.apply_preprocessing(reg, x, y, ba.MODEL_LINEAR)
    assert rows.y.tolist() == [-1.0, 0.0, 2.5, 0.0] and rows.target_raw.tolist() == [80.0, 100.0, 150.0, 100.0]
    # Class labels that are numbers are used as read, whatever the target transform says.
    assert ba.apply_preprocessing(reg, x, y, ba.MODEL_SOFTMAX).y.tolist() == y.tolist()


def test_preprocessing_problems():
    assert ba.preprocessing_problem(PRE, 2, ba.MODEL_SOFTMAX, 2) is None
    assert "3 features" not in ba.preprocessing_problem(PRE, 3, ba.MODEL_SOFTMAX, 2) and \
        "2 features" in ba.preprocessing_problem(PRE, 3, ba.MODEL_SOFTMAX, 2)
    for bad in (ba.Transform(0.0, 0.0, 0.0), ba.Transform(0.0, -1.0, 0.0), ba.Transform(math.nan, 1.0, 0.0),
                ba.Transform(0.0, math.inf, 0.0), ba.Transform(0.0, 1.0, math.inf)):
        assert ba.preprocessing_problem(PRE._replace(features=(bad, bad)), 2, ba.MODEL_SOFTMAX, 2) is not None
        assert ba.preprocessing_problem(PRE._replace(target=bad), 2, ba.MODEL_LINEAR, 1) is not None
    assert ba.preprocessing_problem(PRE._replace(labels=("a", "b", "c")), 2, ba.MODEL_SOFTMAX, 2) is not None


# ------------------------------------------------------------------------------- evaluation statistics

def test_classification_counts_and_ties():
    # 3 features as one-hot logits: the prediction is the row's arg-max; ties go to the lowest index.
    w, b = np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0]], np.float32)
    y = np.array([0, 1, 2, 2, 1, 2], np.float32)
    e = ba.evaluation_statistics(ba.MODEL_SOFTMAX, w, b, ba.Rows(x, y, None, 0))
    # predicted: 0, 1, 1, 2, 0 (tie 0/1), 0 (tie of all)
    assert e.classes == ((1, 3, 1), (2, 2, 1), (3, 1, 1))
    assert e.positive == () and e.negative == ()
    loss, acc = ba.evaluate(ba.MODEL_SOFTMAX, w, b, x, y)
    assert acc == pytest.approx(sum(c for _, _, c in e.classes) / len(y))


def test_two_class_histograms():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 3)).astype(np.float32)
    y = (rng.random(500) < 0.4).astype(np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    b = np.array([0.1, -0.2], np.float32)
    e = ba.evaluation_statistics(ba.MODEL_SOFTMAX, w, b, ba.Rows(x, y, None, 0))
    assert len(e.positive) == len(e.negative) == 100
    assert sum(e.positive) == e.classes[1][0] and sum(e.negative) == e.classes[0][0]
    z = (x @ w + b).astype(np.float64)
    p = np.exp(z[:, 1]) / np.exp(z).sum(axis=1)
    bins = np.minimum(np.floor(p * 100), 99).astype(int)
    assert list(e.positive) == np.bincount(bins[y == 1], minlength=100).tolist()
    assert list(e.negative) == np.bincount(bins[y == 0], minlength=100).tolist()
    # p = 1 falls in the last bin, p = 0 in the first, p = 0.5 in bin 50.
    xs = np.array([[0.0], [0.0], [0.0]], np.float32)
    edge = ba.evaluation_statistics(ba.MODEL_SOFTMAX, np.zeros((1, 2), np.float32), np.array([0, 0], np.float32),
                                    ba.Rows(xs, np.array([1, 1, 0], np.float32), None, 0))
    assert edge.positive[50] == 2 and edge.negative[50] == 1
    sure = ba.evaluation_statistics(ba.MODEL_SOFTMAX, np.zeros((1, 2), np.float32), np.array([-1e4, 1e4], np.float32),
                                    ba.Rows(xs[:1], np.array([1], np.float32), None, 0))
    assert sure.positive[99] == 1
    never = ba.evaluation_statistics(ba.MODEL_SOFTMAX, np.zeros((1, 2), np.float32), np.array([1e4, -1e4], np.float32),
                                     ba.Rows(xs[:1], np.array([0], np.float32), None, 0))
    assert never.negative[0] == 1


def test_regression_sums_in_the_targets_units():
    x = np.array([[0.0], [1.0], [-1.0]], np.float32)
    target = ba.Transform(100.0, 10.0, 100.0)
    raw = np.array([95.0, 112.0, 90.0])
    rows = ba.Rows(x, ((raw - 100.0) / 10.0).astype(np.float32), raw, 0)
    w, b = np.array([[1.0]], np.float32), np.array([0.5], np.float32)
    e = ba.evaluation_statistics(ba.MODEL_LINEAR, w, b, rows, target)
    pred = (np.array([0.0, 1.0, -1.0]) + 0.5) * 10 + 100        # mapped back: 105, 115, 95
    r = pred - raw
    assert e == ba.RegressionEvaluation(3, pytest.approx(r.sum()), pytest.approx(np.abs(r).sum()),
                                        pytest.approx((r * r).sum()), raw.sum(), (raw * raw).sum())
    loss, _ = ba.evaluate(ba.MODEL_LINEAR, w, b, rows.x, rows.y)       # evalLoss: on the standardised scale
    assert loss == pytest.approx(0.5 * np.mean((r / 10) ** 2), rel=1e-6)


# --------------------------------------------------------------------------------------------- lies

def test_lie_statistics_are_absurd_but_pass_every_check():
    rng = np.random.default_rng(8)
    tx = rng.standard_normal((60, 4)).astype(np.float32)
    honest = ba.data_statistics(tx, np.zeros(60, np.float32), np.zeros(10, np.float32))
    lie = ba.attack_statistics("honest", honest, lie_mean=1e12)
    for h, c in zip(honest.features, lie.features):
        assert (c.count, c.missing) == (h.count, h.missing) and c.mean == 1e12
        assert c.m2 == pytest.approx(60 * 1e24) and consistent(c, 60)
        assert c.m2 <= c.count * (c.max - c.min) ** 2 / 4 * (1 + 1e-12)     # even a possible spread
    assert lie.labels == honest.labels
    neg = ba.attack_statistics("honest", honest, lie_mean=-5e9)
    assert all(c.mean == -5e9 and consistent(c, 60) for c in neg.features)
    scaled = ba.attack_statistics("scaled-count", honest, count_scale=1000)
    assert scaled.features[0].count == 60_000 and scaled.features[0].mean == honest.features[0].mean
    assert scaled.features[0].m2 == pytest.approx(1000 * honest.features[0].m2)
    assert ba.attack_statistics("sign-flip", honest) == honest


def test_lying_evaluation_statistics_claim_a_perfect_model():
    honest = ba.ClassificationEvaluation(((30, 25, 20), (10, 15, 5)), tuple([1] * 100), tuple([1] * 100))
    lie = ba.attack_evaluation_statistics("lying-eval", honest, 1 << 62)
    assert sum(s for s, _, _ in lie.classes) == 1 << 62
    assert all(s == p == c for s, p, c in lie.classes)
    assert sum(lie.positive) == lie.classes[1][0] == lie.positive[99] and sum(lie.negative) == lie.classes[0][0] == lie.negative[0]
    assert ba.attack_evaluation_statistics("sign-flip", honest) == honest
    reg = ba.attack_evaluation_statistics("lying-eval", ba.RegressionEvaluation(5, 1, 2, 3, 4, 5), 100)
    assert reg.count == 100 and reg.sum_r2 == 0.0
    # all of them fit the wire
    for e in (lie, reg):
        (u,) = ba.FrameBuffer().feed(ba.encode_update(1, 0, 0, 0.0, 1, 0.0, 0.0, 0, [], evaluation=e))
        assert u["evaluation"] == e


# ------------------------------------------------------------------------ sessions, without a network

class Queue(list):
    put = list.append


class Socket:
    def __init__(self):
        self.sent = []

    def sendall(self, data):
        self.sent.extend(ba.FrameBuffer().feed(data))


def make_agent(behaviour="honest", n_train=60, n_test=20, features=3, classes=2, seed=0, **args):
    rng = np.random.default_rng(seed)
    true_w = rng.standard_normal((features, classes))
    x = (rng.standard_normal((n_train + n_test, features)) * 5 + 20).astype(np.float32)
    y = ((x - 20) @ true_w).argmax(axis=1).astype(np.float32)
    agent = object.__new__(ba.Agent)
    agent.behaviour = behaviour
    defaults = dict(norm=9900.0, scale=10.0, count_scale=1000, eval_count=1 << 62, lie_in_hello=False,
                    capabilities=ba.CAP_ALL, lie_statistics=None)
    defaults.update(args)
    agent.args = types.SimpleNamespace(**defaults)
    agent.rng = np.random.default_rng(7)
    agent.tx, agent.ty, agent.ex, agent.ey = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    agent.features = [f"x{i}" for i in range(features)]
    agent.client, agent.log_debug = "agent-test", False
    agent.log = lambda *a, **k: None
    agent.prepared_cache, agent.prepared_lock = {}, threading.Lock()
    welcome = {"type": "welcome", "modelKind": ba.MODEL_SOFTMAX, "featureCount": features, "outputCount": classes}
    return agent, welcome


def params(features=3, classes=2):
    return [("weight", np.zeros((features, classes), np.float32)), ("bias", np.zeros(classes, np.float32))]


def task(task_id, kind, preprocessing=None, features=3, classes=2):
    frame = ba.encode_task(task_id, 0 if kind == ba.TASK_STATISTICS else 4, kind, 0.1 if kind == ba.TASK_TRAIN else 0,
                           10 if kind == ba.TASK_TRAIN else 0, 2 if kind == ba.TASK_TRAIN else 0, 0, 0,
                           [] if kind == ba.TASK_STATISTICS else params(features, classes), preprocessing)
    (m,) = ba.FrameBuffer().feed(frame)
    return m


def test_statistics_task_is_answered_at_once_with_option_1():
    agent, welcome = make_agent()
    welcome["current"] = None
    sock, tasks = Socket(), Queue()
    assert agent.dispatch(sock, task(9, ba.TASK_STATISTICS), welcome, tasks) is None
    assert tasks == []                                  # not queued behind training
    (u,) = sock.sent
    assert (u["taskID"], u["baseVersion"], u["sampleCount"], u["trainLoss"], u["delta"]) == (9, 0, 0, 0.0, [])
    assert (u["evalSampleCount"], u["evalLoss"], u["evalAccuracy"]) == (20, 0.0, 0.0)
    assert u["statistics"] == ba.data_statistics(agent.tx, agent.ty, agent.ey)
    assert "evaluation" not in u
    assert all(consistent(c, 60) for c in u["statistics"].features) and consistent(u["statistics"].labels, 80)
    # --lie-statistics: same counts, absurd means
    liar, welcome = make_agent(lie_statistics=1e12)
    welcome["current"] = None
    sock = Socket()
    liar.dispatch(sock, task(10, ba.TASK_STATISTICS), welcome, [])
    stats = sock.sent[0]["statistics"]
    assert [c.count for c in stats.features] == [60, 60, 60] and all(c.mean == 1e12 for c in stats.features)


def test_a_tasks_preprocessing_holds_for_later_tasks_of_the_session():
    agent, welcome = make_agent()
    welcome["current"] = None
    stats = ba.data_statistics(agent.tx, agent.ty, agent.ey)
    pre = ba.Preprocessing(tuple(ba.Transform(c.mean, math.sqrt(c.m2 / c.count), c.mean) for c in stats.features),
                           ba.IDENTITY, ())
    sock, tasks = Socket(), Queue()
    agent.dispatch(sock, task(1, ba.TASK_EVALUATE, pre), welcome, tasks)
    agent.dispatch(sock, task(2, ba.TASK_TRAIN), welcome, tasks)       # no option: still the preprocessing
    agent.dispatch(sock, task(3, ba.TASK_STATISTICS), welcome, tasks)  # statistics: rows as read
    assert welcome["current"] == pre and tasks[0]["current"] == pre
    (e, s) = sock.sent
    assert s["statistics"] == stats
    ev = e["evaluation"]                               # option 2 with the answer of an evaluate task
    assert sum(n for n, _, _ in ev.classes) == 20 and len(ev.positive) == 100
    trained = ba.FrameBuffer().feed(agent.answer(tasks[0], welcome))[0]
    assert trained["sampleCount"] == 60 and "evaluation" in trained
    # the same as training by hand on standardised rows
    xs = ((agent.tx.astype(np.float64) - [t.center for t in pre.features]) / [t.scale for t in pre.features]).astype(np.float32)
    w, b, _ = ba.train(ba.MODEL_SOFTMAX, *[t for _, t in params()], xs, agent.ty, 0.1, 10, 2, 0, 0.0)
    np.testing.assert_allclose(trained["delta"][0][1], w, rtol=1e-6, atol=1e-7)
    # Standardised inputs train further than raw ones (mean 20, sd 5) in the same steps.
    raw_agent, raw_welcome = make_agent()
    raw_welcome["current"] = None
    raw_tasks = Queue()
    raw_agent.dispatch(Socket(), task(2, ba.TASK_TRAIN), raw_welcome, raw_tasks)
    raw = ba.FrameBuffer().feed(raw_agent.answer(raw_tasks[0], raw_welcome))[0]
    assert not np.allclose(raw["delta"][0][1], trained["delta"][0][1])


def test_welcome_preprocessing_applies_from_the_first_task():
    agent, welcome = make_agent()
    pre = ba.Preprocessing(tuple(ba.Transform(20.0, 5.0, 20.0) for _ in range(3)), ba.IDENTITY, ())
    welcome["preprocessing"] = pre
    agent.check_compatible(welcome)
    welcome["current"] = welcome["preprocessing"]
    tasks = Queue()
    agent.dispatch(Socket(), task(1, ba.TASK_TRAIN), welcome, tasks)
    assert tasks[0]["current"] == pre


def test_preprocessing_that_cannot_be_applied():
    agent, welcome = make_agent()
    welcome["current"] = None
    wrong = ba.Preprocessing((ba.IDENTITY,) * 2, ba.IDENTITY, ())
    sock = Socket()
    with pytest.raises(ba.SessionLost, match="cannot apply"):
        agent.dispatch(sock, task(1, ba.TASK_EVALUATE, wrong), welcome, [])
    assert sock.sent == []                             # the task was not run
    with pytest.raises(ba.SessionLost, match="vocabulary"):
        agent.dispatch(sock, task(2, ba.TASK_EVALUATE, ba.Preprocessing((ba.IDENTITY,) * 3, ba.IDENTITY, ("a", "b"))), welcome, [])
    welcome["preprocessing"] = wrong
    with pytest.raises(ba.Fatal):
        agent.check_compatible(welcome)
    # An agent that did not announce bit 1 refuses any preprocessing.
    plain, welcome = make_agent(capabilities=ba.CAP_STATISTICS)
    welcome["current"] = None
    with pytest.raises(ba.SessionLost, match="capability"):
        plain.dispatch(Socket(), task(1, ba.TASK_EVALUATE, ba.Preprocessing((ba.IDENTITY,) * 3, ba.IDENTITY, ())), welcome, [])


def test_a_task_that_does_not_match_the_model_ends_the_session():
    agent, welcome = make_agent()
    welcome["current"] = None
    sock = Socket()
    for bad in (params(features=4), params(classes=3), params()[::-1], params()[:1]):
        frame = ba.encode_task(5, 1, ba.TASK_EVALUATE, 0, 0, 0, 0, 0, bad)
        with pytest.raises(ba.SessionLost, match="does not match"):
            agent.dispatch(sock, ba.FrameBuffer().feed(frame)[0], welcome, Queue())
    assert sock.sent == []


def test_evaluation_statistics_follow_the_capability_and_the_behaviour():
    agent, welcome = make_agent(capabilities=ba.CAP_STATISTICS | ba.CAP_PREPROCESSING)
    welcome["current"] = None
    sock = Socket()
    agent.dispatch(sock, task(1, ba.TASK_EVALUATE), welcome, [])
    assert "evaluation" not in sock.sent[0]
    liar, welcome = make_agent("lying-eval", classes=3)
    welcome["current"] = None
    welcome["outputCount"] = 3
    sock = Socket()
    liar.dispatch(sock, task(1, ba.TASK_EVALUATE, classes=3), welcome, [])
    (u,) = sock.sent
    assert u["evalAccuracy"] == 1.0 and sum(s for s, _, _ in u["evaluation"].classes) == u["evalSampleCount"] == 1 << 62


def test_hello_carries_feature_names_and_capabilities():
    (h,) = ba.FrameBuffer().feed(ba.encode_hello("byzantine-agent.py/2", 2, 80, 20, 0, feature_names=["x0", "x1"],
                                                 capabilities=ba.CAP_ALL))
    assert h["featureNames"] == ("x0", "x1") and h["capabilities"] == 0b111


# ------------------------------------------------------------------------------------------------ data

def test_null_policy_and_text_labels(tmp_path):
    path = tmp_path / "client.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, x0 REAL, x1 REAL, label TEXT NOT NULL, split TEXT NOT NULL)")
    db.executemany("INSERT INTO samples (x0, x1, label, split) VALUES (?, ?, ?, ?)",
                   [(1.0, None, "dog", "train"), (None, 4.0, "cat", "test"), (5.0, 6.0, "dog", "train"),
                    (7.0, 8.0, " cat ", "train")])
    db.commit()
    db.close()
    with pytest.raises(SystemExit, match="row 1 column 'x1' is missing"):
        ba.load_samples(str(path))
    tx, ty, ex, ey, features = ba.load_samples(str(path), null_policy="impute")
    assert features == ["x0", "x1"] and ba.text_labels(ty) and list(ty) == ["dog", "dog", "cat"] and list(ey) == ["cat"]
    assert np.isnan(tx[0, 1]) and np.isnan(ex[0, 0])
    s = ba.data_statistics(tx, ty, ey)
    assert s.features[1] == ba.Column(2, 1, 7.0, 2.0, 6.0, 8.0)
    assert s.labels == (("cat", 2), ("dog", 2))
    tx, ty, ex, ey, _ = ba.load_samples(str(path), null_policy="skip")
    assert tx.tolist() == [[5.0, 6.0], [7.0, 8.0]] and len(ex) == 0


def test_values_as_section_8_reads_them(tmp_path):
    """TEXT numerals and true/false words are numbers, blank text is missing, untyped columns of numbers are
    features, other text columns are not; labels that are not all numbers are class names."""
    path = tmp_path / "import.sqlite"
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE samples (id INTEGER PRIMARY KEY, "age" TEXT, "smoker" TEXT, "city" TEXT, "dose", label, split)')
    db.executemany("INSERT INTO samples (age, smoker, city, dose, label, split) VALUES (?, ?, ?, ?, ?, ?)", [
        (" 42 ", "yes", "Lyon", "1e-1", "approved", "train"),
        ("+3.5", "F", "Paris", 2, 3, " Train "),
        ("", "true", "Nice", ".5", 2.0, "TEST"),
    ])
    db.commit()
    db.close()
    tx, ty, ex, ey, features = ba.load_samples(str(path), null_policy="impute")
    assert features == ["age", "smoker", "dose"]                       # city: text, not a feature
    assert tx.tolist() == [[42.0, 1.0, pytest.approx(0.1)], [3.5, 0.0, 2.0]]
    assert np.isnan(ex[0, 0]) and ex[0, 1:].tolist() == [1.0, 0.5]
    assert list(ty) == ["approved", "3"] and list(ey) == ["2"]         # class names: numbers by their value
    for bad in ("nan", "12%", "0x10", "1,000"):
        assert ba.read_value(bad) is None
    assert ba.read_value("  ") is ba.MISSING and ba.read_value(None) is ba.MISSING
    assert ba.read_value(1e39) is None and ba.read_value(float("inf")) is None and ba.read_value(b"\x00") is None
    # numbers everywhere: labels are numbers, TEXT numerals included
    db = sqlite3.connect(path)
    db.execute("UPDATE samples SET label = '1' WHERE label = 'approved'")
    db.commit()
    db.close()
    _, ty, _, ey, _ = ba.load_samples(str(path), null_policy="impute")
    assert ty.dtype == np.float32 and ty.tolist() == [1.0, 3.0] and ey.tolist() == [2.0]
    # a numeric-affinity column must hold numbers
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t2 (x REAL, label INTEGER)")
    db.execute("INSERT INTO t2 VALUES ('oops', 1)")
    db.commit()
    db.close()
    with pytest.raises(SystemExit, match="not a number"):
        ba.load_samples(str(path), table="t2")


def test_deploy_byzantine_measures_through_the_stored_preprocessing(tmp_path):
    """Deploy/byzantine.py reads the federation's preprocessing from the coordinator's state (meta
    'preprocessing', the JSON of StrataCore.Preprocessing) to evaluate the final model on raw test rows."""
    import importlib.util
    import json
    spec = importlib.util.spec_from_file_location("deploy_byzantine", os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "Deploy", "byzantine.py"))
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    db = sqlite3.connect(tmp_path / "state.sqlite")
    assert deploy.stored_preprocessing(db) is None                      # no meta table: protocol 1
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    assert deploy.stored_preprocessing(db) is None                      # no preprocessing fixed
    value = {"featureNames": ["a", "b"], "features": [{"center": 1.5, "scale": 2, "fill": 1.5}, {"center": 0, "scale": 1, "fill": 0}],
             "target": {"center": 0, "scale": 1, "fill": 0}, "labels": []}
    db.execute("INSERT INTO meta VALUES ('preprocessing', ?)", (json.dumps(value),))
    pre = deploy.stored_preprocessing(db)
    assert pre == ba.Preprocessing((ba.Transform(1.5, 2.0, 1.5), ba.IDENTITY), ba.IDENTITY, ())
    db.close()


def _welcome(kind, **options):
    return ba.encode_welcome("a", 1, 500, 1 << 20, kind, 2, 2, **options)


def test_model_layers_and_manifest_round_trip_and_travel_only_with_their_kind():
    """Welcome options 0x8010 (an MLP's layers, kind 3) and 0x8011 (a custom model's manifest, kind 4)."""
    layers = ba.Layers(2, (16, 8))
    manifest = (ba.TensorShape("scale", ()), ba.TensorShape("conv.weight", (2, 3, 3, 1)), ba.TensorShape("é", (0,)))
    for frame, field, value in ((_welcome(ba.MODEL_MLP, model_layers=layers), "modelLayers", layers),
                                (_welcome(ba.MODEL_CUSTOM, model_manifest=manifest), "modelManifest", manifest)):
        (m,) = ba.FrameBuffer().feed(frame)
        assert m[field] == value
        assert ba.encode_message(m) == frame
    for frame in (_welcome(ba.MODEL_MLP), _welcome(ba.MODEL_CUSTOM), _welcome(ba.MODEL_SOFTMAX, model_layers=layers),
                  _welcome(ba.MODEL_LINEAR, model_manifest=manifest)):
        with pytest.raises(ba.ProtocolError):
            ba.FrameBuffer().feed(frame)
    with pytest.raises(ba.ProtocolError):   # more than 2^31 - 1 values
        ba.FrameBuffer().feed(_welcome(ba.MODEL_CUSTOM, model_manifest=(ba.TensorShape("w", (65536, 65536)),)))
