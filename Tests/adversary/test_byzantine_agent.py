"""The pure parts of byzantine_agent.py: frames against docs/PROTOCOL.md's worked examples, validation,
the lies each behaviour tells, and the local training. Run: python3 -m pytest Tests/adversary -q"""

import os
import sqlite3
import struct
import sys
import threading
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byzantine_agent as ba  # noqa: E402

# docs/PROTOCOL.md §6, byte for byte.
ACK_HEX = """
53 54 02 05 17 00 00 00
07 00 00 00 00 00 00 00
02
04 00 00 00 00 00 00 00
00 00
00 00
00 00
"""
TASK_HEX = """
53 54 02 03 40 00 00 00
01 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00
01
00 00 00 3f
0a 00 00 00
01 00 00 00
07 00 00 00 00 00 00 00
00 00 00 00
01 00
04 00 62 69 61 73
01
02 00 00 00
00 00 80 3f 00 00 00 c0
00 00
"""


def hexbytes(text):
    return bytes.fromhex(" ".join(text.split()))


# ------------------------------------------------------------------------------------ worked examples

def test_ack_example_encodes_byte_for_byte():
    data = ba.encode_ack(7, ba.ACK_COMMITTED, 4, 0, "")
    assert len(data) == 31
    assert data == hexbytes(ACK_HEX)


def test_ack_example_decodes():
    (m,) = ba.FrameBuffer().feed(hexbytes(ACK_HEX))
    assert m == {"type": "ack", "taskID": 7, "status": 2, "modelVersion": 4, "code": 0, "reason": ""}


def test_task_example_encodes_byte_for_byte():
    data = ba.encode_task(1, 0, ba.TASK_TRAIN, 0.5, 10, 1, 7, 0.0, [("bias", np.array([1.0, -2.0], dtype=np.float32))])
    assert len(data) == 72
    assert data == hexbytes(TASK_HEX)


def test_task_example_decodes():
    (m,) = ba.FrameBuffer().feed(hexbytes(TASK_HEX))
    assert (m["type"], m["taskID"], m["baseVersion"], m["kind"]) == ("task", 1, 0, ba.TASK_TRAIN)
    assert (m["learningRate"], m["batchSize"], m["epochs"], m["seed"], m["proximalMu"]) == (0.5, 10, 1, 7, 0.0)
    ((name, values),) = m["parameters"]
    assert name == "bias" and values.shape == (2,) and values.dtype == np.float32
    assert values.tolist() == [1.0, -2.0]


def test_frames_split_anywhere_and_back_to_back():
    stream = hexbytes(ACK_HEX) + hexbytes(TASK_HEX) + ba.encode_heartbeat(3, 99, False)
    for cut in range(len(stream) + 1):
        fb = ba.FrameBuffer()
        got = fb.feed(stream[:cut]) + fb.feed(stream[cut:])
        assert [m["type"] for m in got] == ["ack", "task", "heartbeat"]


# ----------------------------------------------------------------------------------------- round trips

def test_agent_messages_round_trip():
    hello = ba.encode_hello("byz/1", 60, 188000, 47, 2)
    assert hello[:8] == struct.pack("<2sBBI", b"ST", 2, 1, len(hello) - 8)
    (m,) = ba.FrameBuffer().feed(hello)
    assert m == {"type": "hello", "agentVersion": "byz/1", "featureCount": 60, "trainSampleCount": 188000,
                 "evalSampleCount": 47, "pendingUpdateCount": 2}

    w = np.arange(12, dtype=np.float32).reshape(6, 2)
    update = ba.encode_update(9, 4, 188, 0.25, 1 << 62, 0.0, 1.0, 12, [("weight", w), ("bias", np.zeros(2, np.float32))])
    (u,) = ba.FrameBuffer().feed(update)
    assert (u["taskID"], u["baseVersion"], u["sampleCount"], u["evalSampleCount"]) == (9, 4, 188, 1 << 62)
    assert (u["trainLoss"], u["evalLoss"], u["evalAccuracy"], u["trainMillis"]) == (0.25, 0.0, 1.0, 12)
    assert [n for n, _ in u["delta"]] == ["weight", "bias"]
    assert np.array_equal(u["delta"][0][1], w)        # row-major: row = feature

    evaluation = ba.encode_update(10, 4, 0, 0.0, 47, 0.5, 0.75, 1, [])
    (e,) = ba.FrameBuffer().feed(evaluation)
    assert e["delta"] == [] and e["sampleCount"] == 0
    assert len(evaluation) == 8 + 8 + 8 + 8 + 4 + 8 + 4 + 4 + 4 + 2 + 2   # ... no tensors, no options


def test_heartbeat_flags():
    (req,) = ba.FrameBuffer().feed(ba.encode_heartbeat(5, 123456789, False))
    (rep,) = ba.FrameBuffer().feed(ba.encode_heartbeat(5, 123456789, True))
    assert (req["reply"], rep["reply"], rep["sequence"], rep["timestampNanos"]) == (False, True, 5, 123456789)
    bad = ba.frame(ba.HEARTBEAT, struct.pack("<QQB", 1, 2, 2))
    with pytest.raises(ba.ProtocolError) as e:
        ba.FrameBuffer().feed(bad)
    assert e.value.code == 1


def test_new_codes_and_goodbye_reasons_are_accepted():
    (g,) = ba.FrameBuffer().feed(ba.encode_goodbye(4, 5000, "replaced by a newer session"))
    assert (g["reason"], g["retryAfterMillis"]) == (4, 5000)
    assert ba.GOODBYE_NAMES[4] == "replaced"
    (g,) = ba.FrameBuffer().feed(ba.encode_goodbye(77, 0, "a reason from the future"))
    assert g["reason"] == 77                      # unknown reasons still end the session by retryAfter
    (a,) = ba.FrameBuffer().feed(ba.encode_ack(3, ba.ACK_REFUSED, 0, 107, "over share"))
    assert ba.code_name(a["code"]) == "over-share"
    (a,) = ba.FrameBuffer().feed(ba.encode_ack(3, ba.ACK_REFUSED, 0, 9, "sample count"))
    assert ba.code_name(a["code"]) == "out-of-range"
    (err,) = ba.FrameBuffer().feed(ba.encode_error(9, "out of range"))
    assert (err["code"], err["message"]) == (9, "out of range")
    assert ba.code_name(4242) == "code-4242"


def test_welcome_decodes():
    (w,) = ba.FrameBuffer().feed(ba.encode_welcome("agent-09", 17, 2000, 64 << 20, 1, 60, 10))
    assert w == {"type": "welcome", "clientID": "agent-09", "sessionID": 17, "heartbeatIntervalMillis": 2000,
                 "maxFrameBytes": 64 << 20, "modelKind": 1, "featureCount": 60, "outputCount": 10}


# ------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("header,code", [
    (struct.pack("<2sBBI", b"SX", 2, 5, 0), 1),      # bad magic
    (struct.pack("<2sBBI", b"ST", 1, 5, 0), 2),      # version 1: refused by a version-2 peer
    (struct.pack("<2sBBI", b"ST", 3, 5, 0), 2),      # unsupported version
    (struct.pack("<2sBBI", b"ST", 2, 10, 0), 4),     # unknown message type (9 is part)
    (struct.pack("<2sBBI", b"ST", 2, 3, 1 << 30), 3),  # too large: refused before any payload arrives
])
def test_header_validation(header, code):
    with pytest.raises(ba.ProtocolError) as e:
        ba.FrameBuffer(max_frame=64 << 20).feed(header)
    assert e.value.code == code


def test_payload_must_be_consumed_exactly():
    ack = bytearray(hexbytes(ACK_HEX))
    longer = ba.frame(ba.ACK, bytes(ack[8:]) + b"\x00")
    with pytest.raises(ba.ProtocolError, match="left over"):
        ba.FrameBuffer().feed(longer)
    shorter = ba.frame(ba.ACK, bytes(ack[8:-1]))
    with pytest.raises(ba.ProtocolError, match="past the end"):
        ba.FrameBuffer().feed(shorter)


def test_bad_enum_utf8_and_oversized_tensor_are_malformed():
    cases = [
        ba.frame(ba.ACK, struct.pack("<QBQH", 1, 4, 0, 0) + b"\x00\x00"),                 # ack status 4
        ba.frame(ba.ERROR, struct.pack("<H", 1) + struct.pack("<H", 2) + b"\xff\xfe"),    # invalid UTF-8
        ba.frame(ba.TASK, hexbytes(TASK_HEX)[8:-8] + b""),                                # tensor runs past the end
        ba.frame(ba.TASK, struct.pack("<QQBfIIQf", 1, 0, 4, 0, 0, 0, 0, 0) + b"\x00\x00\x00\x00"),  # task kind 4
    ]
    for data in cases:
        with pytest.raises(ba.ProtocolError) as e:
            ba.FrameBuffer().feed(data)
        assert e.value.code == 1


def test_huge_tensor_dimensions_are_refused_before_allocating():
    payload = struct.pack("<QQBfIIQf", 1, 0, 1, 0, 0, 0, 0, 0) + struct.pack("<H", 1) + ba.p_string("weight") + \
        struct.pack("<BII", 2, 1 << 31, 1 << 31)
    with pytest.raises(ba.ProtocolError, match="past the end"):
        ba.FrameBuffer().feed(ba.frame(ba.TASK, payload))


# --------------------------------------------------------------------------------------------- options

PRE = ba.Preprocessing((ba.Transform(1.5, 2.0, 1.5), ba.Transform(-3.0, 0.25, 0.0)), ba.Transform(10.0, 4.0, 10.0), ("cat", "dog"))
STATS = ba.Statistics((ba.Column(80, 2, 1.5, 320.0, -4.0, 9.0), ba.EMPTY_COLUMN),
                      ba.Column(80, 0, 0.5, 20.0, 0.0, 1.0))
TEXT_STATS = ba.Statistics((ba.Column(3, 0, 2.0, 2.0, 1.0, 3.0),), (("dog", 7), ("cat", 3), ("é", 1)))
EVAL2 = ba.ClassificationEvaluation(((12, 10, 9), (8, 10, 7)), tuple(range(100)), tuple(range(100, 200)))
EVAL3 = ba.ClassificationEvaluation(((1, 2, 1), (2, 1, 1), (0, 0, 0)), (), ())
REG = ba.RegressionEvaluation(20, -1.5, 7.25, 9.0, 400.0, 8100.5)


def test_every_option_round_trips():
    hello = ba.encode_hello("byz/2", 2, 80, 20, 0, feature_names=("x0", "ünïcode"), capabilities=ba.CAP_ALL)
    (h,) = ba.FrameBuffer().feed(hello)
    assert (h["featureNames"], h["capabilities"]) == (("x0", "ünïcode"), 7)
    (w,) = ba.FrameBuffer().feed(ba.encode_welcome("a", 1, 2000, 64 << 20, 1, 2, 2, feature_names=("x0", "x1"), preprocessing=PRE))
    assert (w["featureNames"], w["preprocessing"]) == (("x0", "x1"), PRE)
    (t,) = ba.FrameBuffer().feed(ba.encode_task(3, 0, ba.TASK_EVALUATE, 0, 0, 0, 0, 0, [], preprocessing=PRE))
    assert t["preprocessing"] == PRE and t["kind"] == ba.TASK_EVALUATE
    for statistics, evaluation in [(STATS, EVAL2), (TEXT_STATS, EVAL3), (None, REG), (STATS, None)]:
        frame = ba.encode_update(4, 0, 0, 0.0, 20, 0.0, 0.0, 1, [], statistics=statistics, evaluation=evaluation)
        (u,) = ba.FrameBuffer().feed(frame)
        assert (u.get("statistics"), u.get("evaluation")) == (statistics, evaluation)
        assert ba.encode_message(u) == frame
    # Empty columns keep their infinities; f64 values survive bit for bit.
    (u,) = ba.FrameBuffer().feed(ba.encode_update(4, 0, 0, 0.0, 20, 0.0, 0.0, 1, [], statistics=STATS))
    assert u["statistics"].features[1] == ba.Column(0, 0, 0.0, 0.0, float("inf"), float("-inf"))


def test_option_layouts_byte_for_byte():
    # update option 1, one feature, numbers: u32 n, 48-byte column, u8 1, 48-byte column
    s = ba.p_statistics(ba.Statistics((ba.Column(1, 2, 0.5, 0.0, 0.5, 0.5),), ba.Column(1, 0, 1.0, 0.0, 1.0, 1.0)))
    assert s == struct.pack("<I", 1) + struct.pack("<QQdddd", 1, 2, 0.5, 0.0, 0.5, 0.5) + b"\x01" + \
        struct.pack("<QQdddd", 1, 0, 1.0, 0.0, 1.0, 1.0)
    assert ba.p_statistics(TEXT_STATS)[4 + 48:] == b"\x02" + struct.pack("<I", 3) + \
        b"\x03\x00dog" + struct.pack("<Q", 7) + b"\x03\x00cat" + struct.pack("<Q", 3) + b"\x02\x00\xc3\xa9" + struct.pack("<Q", 1)
    p = ba.p_preprocessing(ba.Preprocessing((ba.Transform(1.0, 2.0, 3.0),), ba.IDENTITY, ()))
    assert p == struct.pack("<I", 1) + struct.pack("<ddd", 1.0, 2.0, 3.0) + struct.pack("<ddd", 0.0, 1.0, 0.0) + struct.pack("<I", 0)
    e = ba.p_evaluation(ba.ClassificationEvaluation(((2, 1, 1), (1, 2, 1)), (0, 1), (1, 0)))
    assert e == b"\x01" + struct.pack("<I", 2) + struct.pack("<6Q", 2, 1, 1, 1, 2, 1) + struct.pack("<H", 2) + struct.pack("<4Q", 0, 1, 1, 0)
    assert ba.p_evaluation(REG) == b"\x02" + struct.pack("<Q5d", 20, -1.5, 7.25, 9.0, 400.0, 8100.5)
    assert ba.p_capabilities(ba.CAP_ALL) == struct.pack("<Q", 7)
    assert ba.p_names(["a"]) == struct.pack("<I", 1) + b"\x01\x00a"


def test_options_are_written_in_ascending_key_order():
    frame = ba.encode_hello("v", 1, 1, 1, 0, feature_names=("x",), capabilities=3, extra_options=[(0x8003, b"z"), (7, b"")])
    r = ba.Reader(frame[8:])
    r.string("v"), r.take(4 + 8 + 8 + 4, "fixed")
    keys = []
    for _ in range(r.u16("count")):
        keys.append(r.u16("key"))
        r.take(r.u32("length"), "value")
    assert keys == [1, 2, 7, 0x8003]
    # No option: the section is the two bytes 00 00.
    assert ba.encode_heartbeat(1, 2, False)[-2:] == b"\x00\x00"


def test_unknown_options_are_skipped_unless_critical():
    (a,) = ba.FrameBuffer().feed(ba.encode_ack(1, ba.ACK_RECEIVED, 2, 0, "", extra_options=[(5, b"future"), (0x7fff, b"")]))
    assert a["skippedOptions"] == [5, 0x7fff] and a["taskID"] == 1
    # hello's key 1 is known, welcome's key 2 is not: keys are per message type.
    (w,) = ba.FrameBuffer().feed(ba.encode_welcome("a", 1, 2000, 1 << 20, 1, 2, 2, extra_options=[(2, b"\x01")]))
    assert w["skippedOptions"] == [2] and "featureNames" not in w
    for data in (ba.encode_ack(1, ba.ACK_RECEIVED, 2, 0, "", extra_options=[(0x8005, b"")]),
                 ba.encode_welcome("a", 1, 2000, 1 << 20, 1, 2, 2, extra_options=[(0x8002, b"")]),
                 ba.encode_task(1, 0, ba.TASK_TRAIN, 0.1, 1, 1, 1, 0, [], extra_options=[(0x8007, b"x")]),
                 ba.encode_heartbeat(1, 2, False, extra_options=[(0x8001, b"")])):   # a task's key is not heartbeat's
        with pytest.raises(ba.ProtocolError) as e:
            ba.FrameBuffer().feed(data)
        assert e.value.code == 10


def raw_options(*entries):
    return struct.pack("<H", len(entries)) + b"".join(struct.pack("<HI", k, len(v)) + v for k, v in entries)


def hello_with(options_section):
    return ba.frame(ba.HELLO, ba.p_string("v") + struct.pack("<IQQI", 1, 1, 1, 0) + options_section)


@pytest.mark.parametrize("section,what", [
    (b"", "no options section at all"),
    (b"\x00", "half a count"),
    (raw_options((1, ba.p_names(["x"])))[:-1], "value shorter than its length"),
    (raw_options((9, b""), (9, b"")), "an unknown key twice"),
    (raw_options((2, ba.p_capabilities(1)), (2, ba.p_capabilities(1))), "a known key twice"),
    (raw_options((2, b"\x01\x00\x00\x00")), "capabilities of 4 bytes"),
    (raw_options((2, ba.p_capabilities(1) + b"\x00")), "a byte left over in a known option"),
    (raw_options((1, struct.pack("<I", 1 << 30))), "a name count the value cannot hold"),
    (raw_options((1, struct.pack("<I", 1) + b"\x02\x00\xff\xfe")), "a name that is not UTF-8"),
    (raw_options() + b"\x00", "a byte after the options section"),
])
def test_malformed_options(section, what):
    with pytest.raises(ba.ProtocolError) as e:
        ba.FrameBuffer().feed(hello_with(section))
    assert e.value.code == 1, what


@pytest.mark.parametrize("value", [
    struct.pack("<I", 0xFFFFFFFF),                                                       # statistics: 2^32-1 columns
    struct.pack("<I", 0) + b"\x03",                                                      # unknown label kind
    struct.pack("<I", 0) + b"\x02" + struct.pack("<I", 70000),                           # over 65535 labels
    struct.pack("<I", 0) + b"\x02" + struct.pack("<I", 2) + b"\x01\x00a" + struct.pack("<Q", 1),  # 2 labels, 1 sent
])
def test_bad_statistics_values_are_malformed_before_allocating(value):
    update = ba.frame(ba.UPDATE, struct.pack("<QQQfQffI", 1, 0, 0, 0, 1, 0, 0, 0) + b"\x00\x00" + raw_options((1, value)))
    with pytest.raises(ba.ProtocolError) as e:
        ba.FrameBuffer().feed(update)
    assert e.value.code == 1


@pytest.mark.parametrize("value", [
    b"\x03",                                                                             # unknown evaluation kind
    b"\x01" + struct.pack("<I", 1 << 28),                                                # classes past the end
    b"\x01" + struct.pack("<I", 2) + bytes(48) + struct.pack("<H", 1025) + bytes(1025 * 16),  # over 1024 bins
    b"\x01" + struct.pack("<I", 2) + bytes(48) + struct.pack("<H", 100) + bytes(100 * 16 - 8),  # bins past the end
    b"\x02" + bytes(47),                                                                  # regression one byte short
])
def test_bad_evaluation_values_are_malformed(value):
    update = ba.frame(ba.UPDATE, struct.pack("<QQQfQffI", 1, 0, 0, 0, 1, 0, 0, 0) + b"\x00\x00" + raw_options((2, value)))
    with pytest.raises(ba.ProtocolError) as e:
        ba.FrameBuffer().feed(update)
    assert e.value.code == 1


def test_bad_preprocessing_values_are_malformed():
    good = ba.p_preprocessing(PRE)
    for value in (good[:-1], good + b"\x00", struct.pack("<I", 1 << 30), good[:4 + 48 + 24] + struct.pack("<I", 70000)):
        task = ba.frame(ba.TASK, struct.pack("<QQBfIIQf", 1, 0, 2, 0, 0, 0, 0, 0) + b"\x00\x00" + raw_options((0x8001, value)))
        with pytest.raises(ba.ProtocolError) as e:
            ba.FrameBuffer().feed(task)
        assert e.value.code == 1


# ------------------------------------------------------------------------------------------------ lies

SHAPES = [("weight", (60, 10)), ("bias", (10,))]


def honest_delta(seed=0):
    rng = np.random.default_rng(seed)
    return [(n, (rng.standard_normal(s) * 0.01).astype(np.float32)) for n, s in SHAPES]


def test_large_norm_delta_has_the_norm_and_shapes_and_a_random_direction():
    a = ba.random_direction_delta(SHAPES, 9900.0, np.random.default_rng(1))
    b = ba.random_direction_delta(SHAPES, 9900.0, np.random.default_rng(2))
    assert [(n, t.shape, t.dtype) for n, t in a] == [("weight", (60, 10), np.float32), ("bias", (10,), np.float32)]
    assert ba.delta_norm(a) == pytest.approx(9900.0, rel=1e-5)
    assert ba.delta_norm(a) < 10000.0                   # under the coordinator's default --max-update-norm
    va = np.concatenate([t.ravel() for _, t in a]).astype(np.float64)
    vb = np.concatenate([t.ravel() for _, t in b]).astype(np.float64)
    assert abs(va @ vb) / (9900.0 ** 2) < 0.3           # different directions
    assert ba.delta_norm(ba.random_direction_delta(SHAPES, 5000.0, np.random.default_rng(1))) == pytest.approx(5000.0, rel=1e-5)


@pytest.mark.parametrize("behaviour,factor", [("honest", 1.0), ("large-norm", 1.0), ("sign-flip", -10.0),
                                              ("scaled-count", -1.0), ("lying-eval", -10.0)])
def test_attack_delta_factor(behaviour, factor):
    honest = honest_delta()
    sent = ba.attack_delta(behaviour, honest, scale=10.0)
    for (n1, h), (n2, s) in zip(honest, sent):
        assert n1 == n2 and s.dtype == np.float32 and s.shape == h.shape
        np.testing.assert_allclose(s, factor * h, rtol=1e-6)


def test_sign_flip_scale_flag():
    honest = honest_delta()
    sent = ba.attack_delta("sign-flip", honest, scale=3.0)
    assert ba.delta_norm(sent) == pytest.approx(3.0 * ba.delta_norm(honest), rel=1e-5)
    assert float(np.sum(sent[0][1] * honest[0][1])) < 0


def test_sample_counts_and_evaluation_lies():
    assert ba.attack_sample_count("scaled-count", 188, 1000) == 188000
    for b in ("honest", "large-norm", "sign-flip", "lying-eval"):
        assert ba.attack_sample_count(b, 188, 1000) == 188
    assert ba.attack_evaluation("lying-eval", (47, 0.5, 0.8)) == (1 << 62, 0.0, 1.0)
    for b in ("honest", "large-norm", "sign-flip", "scaled-count"):
        assert ba.attack_evaluation(b, (47, 0.5, 0.8)) == (47, 0.5, 0.8)


# --------------------------------------------------------------- whole answers, without a network

def fake_agent(behaviour, n_train=40, n_test=10, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    true_w = rng.standard_normal((features, classes)).astype(np.float32)
    x = rng.standard_normal((n_train + n_test, features)).astype(np.float32)
    y = (x @ true_w).argmax(axis=1).astype(np.float32)
    agent = object.__new__(ba.Agent)
    agent.behaviour = behaviour
    agent.args = types.SimpleNamespace(norm=9900.0, scale=10.0, count_scale=1000, eval_count=1 << 62, lie_in_hello=False,
                                       capabilities=ba.CAP_ALL, lie_statistics=None)
    agent.prepared_cache, agent.prepared_lock = {}, threading.Lock()
    agent.rng = np.random.default_rng(7)
    agent.tx, agent.ty, agent.ex, agent.ey = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    agent.features = [f"x{i}" for i in range(features)]
    agent.client, agent.log_debug = "agent-test", False
    agent.log = lambda *a, **k: None
    welcome = {"modelKind": ba.MODEL_SOFTMAX, "featureCount": features, "outputCount": classes}
    params = [("weight", np.zeros((features, classes), np.float32)), ("bias", np.zeros(classes, np.float32))]
    task = {"taskID": 5, "baseVersion": 3, "kind": ba.TASK_TRAIN, "learningRate": 0.1, "batchSize": 10, "epochs": 2,
            "seed": 11, "proximalMu": 0.0, "parameters": params}
    return agent, welcome, task


def answer(behaviour, kind=ba.TASK_TRAIN):
    agent, welcome, task = fake_agent(behaviour)
    task["kind"] = kind
    (u,) = ba.FrameBuffer().feed(agent.answer(task, welcome))
    return u


def test_answers_per_behaviour():
    honest = answer("honest")
    assert (honest["taskID"], honest["baseVersion"], honest["sampleCount"], honest["evalSampleCount"]) == (5, 3, 40, 10)
    assert [n for n, _ in honest["delta"]] == ["weight", "bias"]
    h = np.concatenate([t.ravel() for _, t in honest["delta"]])
    assert 0 < np.linalg.norm(h) < 10

    flip = answer("sign-flip")
    f = np.concatenate([t.ravel() for _, t in flip["delta"]])
    np.testing.assert_allclose(f, -10 * h, rtol=1e-5, atol=1e-6)   # same seed, same data: same training

    scaled = answer("scaled-count")
    s = np.concatenate([t.ravel() for _, t in scaled["delta"]])
    np.testing.assert_allclose(s, -h, rtol=1e-5, atol=1e-6)
    assert scaled["sampleCount"] == 40_000

    big = answer("large-norm")
    assert big["sampleCount"] == 40
    assert ba.delta_norm(big["delta"]) == pytest.approx(9900.0, rel=1e-5)

    liar = answer("lying-eval")
    assert (liar["evalSampleCount"], liar["evalLoss"], liar["evalAccuracy"]) == (1 << 62, 0.0, 1.0)
    liar_eval = answer("lying-eval", ba.TASK_EVALUATE)
    assert (liar_eval["sampleCount"], liar_eval["delta"], liar_eval["evalSampleCount"], liar_eval["evalAccuracy"]) == (0, [], 1 << 62, 1.0)
    honest_eval = answer("honest", ba.TASK_EVALUATE)
    assert honest_eval["evalSampleCount"] == 10 and 0 <= honest_eval["evalAccuracy"] <= 1 and honest_eval["delta"] == []


# ------------------------------------------------------------------------------------------- training

def test_training_lowers_the_loss_and_evaluate_is_cross_entropy():
    agent, _, _ = fake_agent("honest", n_train=400, n_test=100)
    w0, b0 = np.zeros((6, 3), np.float32), np.zeros(3, np.float32)
    loss0, acc0 = ba.evaluate(ba.MODEL_SOFTMAX, w0, b0, agent.ex, agent.ey)
    assert loss0 == pytest.approx(np.log(3), rel=1e-5)
    w, b, mean_loss = ba.train(ba.MODEL_SOFTMAX, w0, b0, agent.tx, agent.ty, 0.1, 10, 5, 1, 0.0)
    loss1, acc1 = ba.evaluate(ba.MODEL_SOFTMAX, w, b, agent.ex, agent.ey)
    assert loss1 < loss0 and acc1 > 0.8 and 0 < mean_loss < np.log(3)
    assert w.dtype == np.float32 and b.dtype == np.float32
    # Deterministic for the seed; zero epochs leave the model alone.
    w2, b2, _ = ba.train(ba.MODEL_SOFTMAX, w0, b0, agent.tx, agent.ty, 0.1, 10, 5, 1, 0.0)
    assert np.array_equal(w, w2) and np.array_equal(b, b2)
    w3, b3, l3 = ba.train(ba.MODEL_SOFTMAX, w0, b0, agent.tx, agent.ty, 0.1, 10, 0, 1, 0.0)
    assert np.array_equal(w3, w0) and l3 == 0.0


def test_one_full_batch_step_is_the_mean_gradient():
    x = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    y = np.array([0.0, 1.0], np.float32)
    w0, b0 = np.zeros((2, 2), np.float32), np.zeros(2, np.float32)
    w, b, loss = ba.train(ba.MODEL_SOFTMAX, w0, b0, x, y, 1.0, 2, 1, 0, 0.0)
    # p = 0.5 everywhere; dz = p - onehot; gW = x^T dz / 2; step -gW.
    dz = np.array([[-0.5, 0.5], [0.5, -0.5]], np.float32)
    np.testing.assert_allclose(w, -(x.T @ dz) / 2, rtol=1e-6)
    np.testing.assert_allclose(b, -dz.sum(axis=0) / 2, atol=1e-7)
    assert loss == pytest.approx(np.log(2), rel=1e-6)


def test_proximal_term_pulls_towards_the_start():
    agent, _, _ = fake_agent("honest", n_train=200)
    w0, b0 = np.zeros((6, 3), np.float32), np.zeros(3, np.float32)
    free, _, _ = ba.train(ba.MODEL_SOFTMAX, w0, b0, agent.tx, agent.ty, 0.1, 10, 5, 1, 0.0)
    prox, _, _ = ba.train(ba.MODEL_SOFTMAX, w0, b0, agent.tx, agent.ty, 0.1, 10, 5, 1, 1.0)
    assert np.linalg.norm(prox) < np.linalg.norm(free)


# ----------------------------------------------------------------------------------------------- data

def test_load_samples_like_strata_agent(tmp_path):
    path = tmp_path / "client.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, x0 REAL NOT NULL, note TEXT, x1 REAL NOT NULL, "
               "label INTEGER NOT NULL, split TEXT NOT NULL)")
    rows = [(1.0, "a", 2.0, 0, "train"), (3.0, "b", 4.0, 1, "test"), (5.0, "c", 6.0, 2, "train")]
    db.executemany("INSERT INTO samples (x0, note, x1, label, split) VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    tx, ty, ex, ey, features = ba.load_samples(str(path))
    assert features == ["x0", "x1"]                      # not id (primary key), note (text), label, split
    assert tx.tolist() == [[1.0, 2.0], [5.0, 6.0]] and ty.tolist() == [0.0, 2.0]
    assert ex.tolist() == [[3.0, 4.0]] and ey.tolist() == [1.0]


def test_deterministic_split_fraction():
    share = np.mean([ba.deterministic_test(k, 0, 0.2) for k in range(1, 20001)])
    assert 0.18 < share < 0.22
    assert ba.deterministic_test(12345, 0, 0.2) == ba.deterministic_test(12345, 0, 0.2)
