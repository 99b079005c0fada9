"""docs/PROTOCOL.md against the Python client, independently of the Swift codec: every hex example of §6 (the
fenced block after a line `<!-- example: NAME -->`; on each line the hex bytes come first, everything after the
first run of two or more spaces is annotation) must decode with byzantine_agent.py's decoder to exactly one
message, consuming every byte, and re-encode to the same bytes; the examples this file knows must hold the
fields their prose states; a "(N bytes)" in the prose line before a marker must be the block's size. The split
vectors of §8 are checked against byzantine_agent.deterministic_test. The same checks run on
Tests/adversary/option-examples.md, examples of the options of §2 proposed for §6.
Run: python3 -m pytest Tests/adversary -q"""

import os
import re
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import byzantine_agent as ba  # noqa: E402

DOCUMENT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "PROTOCOL.md")
OPTION_EXAMPLES = os.path.join(HERE, "option-examples.md")
MARKER = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->$")
STATED = re.compile(r"\((\d[\d,]*) bytes( each)?\)")


class Example:
    def __init__(self, source, name, line, data, stated):
        self.source, self.name, self.line, self.data, self.stated = source, name, line, data, stated

    def __repr__(self):
        return f"{os.path.basename(self.source)}:{self.line}:{self.name}"


def parse_examples(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        if not m:
            i += 1
            continue
        name, line = m.group(1), i + 1
        prev = i - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        sizes = STATED.findall(lines[prev]) if prev >= 0 and not MARKER.match(lines[prev].strip()) else []
        stated = int(sizes[-1][0].replace(",", "")) if sizes else None
        i += 1
        assert i < len(lines) and lines[i].strip().startswith("```"), f"{path}:{line}: no fenced block after the marker"
        i += 1
        data = bytearray()
        while True:
            assert i < len(lines), f"{path}:{line}: example {name}: the fenced block does not end"
            if lines[i].strip().startswith("```"):
                i += 1
                break
            content = lines[i].lstrip(" ")
            hex_part = content.split("  ", 1)[0]
            for token in hex_part.split():
                assert re.fullmatch(r"[0-9a-fA-F]{2}", token), f"{path}:{i + 1}: {token!r} is not a hex byte"
                data.append(int(token, 16))
            i += 1
        out.append(Example(path, name, line, bytes(data), stated))
    return out


DOC_EXAMPLES = parse_examples(DOCUMENT)
OPTION_EXAMPLE_LIST = parse_examples(OPTION_EXAMPLES) if os.path.exists(OPTION_EXAMPLES) else []
ALL = DOC_EXAMPLES + OPTION_EXAMPLE_LIST


def decode_one(data):
    fb = ba.FrameBuffer()
    messages = fb.feed(data)
    assert len(messages) == 1, f"{len(messages)} messages"
    assert not fb.buf, f"{len(fb.buf)} bytes left after the frame"
    return messages[0]


def f32(v):
    return float(np.float32(v))


def tensor_values(m, key):
    return [(name, list(t.shape), [float(v) for v in t.ravel()]) for name, t in m[key]]


PARAMS_TRAIN = [("weight", [2, 2], [0.5, -0.5, 0.25, 0.0]), ("bias", [2], [0.0, 0.125])]
PARAMS_EVAL = [("weight", [2, 2], [1.0, -1.0, 0.5, 0.0]), ("bias", [2], [0.0, 0.25])]
DELTA = [("weight", [2, 2], [0.125, -0.125, -0.0625, 0.0625]), ("bias", [2], [0.03125, -0.03125])]

# What the prose of §6 says each example holds (fields not listed are not compared).
# The payload of task-bias-only, which the two part examples carry (§2 "Messages in parts").
TASK_BIAS_ONLY_PAYLOAD = ba.encode_task(1, 0, 1, 0.5, 10, 1, 7, 0.0, [("bias", np.array([1.0, -2.0], dtype=np.float32))])[8:]

EXPECTED = {
    "part-first": {"type": "part", "messageType": 3, "totalLength": 64, "offset": 0, "data": TASK_BIAS_ONLY_PAYLOAD[:40]},
    "part-last": {"type": "part", "messageType": 3, "totalLength": 64, "offset": 40, "data": TASK_BIAS_ONLY_PAYLOAD[40:]},
    "ack-committed": {"type": "ack", "taskID": 7, "status": 2, "modelVersion": 4, "code": 0, "reason": ""},
    "task-bias-only": {"type": "task", "taskID": 1, "baseVersion": 0, "kind": 1, "learningRate": 0.5, "batchSize": 10,
                       "epochs": 1, "seed": 7, "proximalMu": 0.0, "parameters": [("bias", [2], [1.0, -2.0])]},
    "hello": {"type": "hello", "agentVersion": "strata-agent/1.0", "featureCount": 2, "trainSampleCount": 80,
              "evalSampleCount": 20, "pendingUpdateCount": 1},
    "welcome": {"type": "welcome", "clientID": "hospital-a", "sessionID": 12, "heartbeatIntervalMillis": 2000,
                "maxFrameBytes": 64 << 20, "modelKind": 1, "featureCount": 2, "outputCount": 2},
    "task-train": {"type": "task", "taskID": 42, "baseVersion": 5, "kind": 1, "learningRate": f32(0.01), "batchSize": 10,
                   "epochs": 2, "seed": 43, "proximalMu": 0.0, "parameters": PARAMS_TRAIN},
    "task-evaluate": {"type": "task", "taskID": 57, "baseVersion": 6, "kind": 2, "learningRate": 0.0, "batchSize": 0,
                      "epochs": 0, "seed": 0, "proximalMu": 0.0, "parameters": PARAMS_EVAL},
    "update-train": {"type": "update", "taskID": 42, "baseVersion": 5, "sampleCount": 80, "trainLoss": 0.625,
                     "evalSampleCount": 20, "evalLoss": 0.6875, "evalAccuracy": 0.75, "trainMillis": 37, "delta": DELTA},
    "update-evaluate": {"type": "update", "taskID": 57, "baseVersion": 6, "sampleCount": 0, "trainLoss": 0.0,
                        "evalSampleCount": 20, "evalLoss": 0.5, "evalAccuracy": f32(0.8), "trainMillis": 3, "delta": []},
    "update-failed": {"type": "update", "taskID": 58, "baseVersion": 6, "sampleCount": 0, "trainLoss": 0.0,
                      "evalSampleCount": 0, "evalLoss": 0.0, "evalAccuracy": 0.0, "trainMillis": 0, "delta": [],
                      "failure": "trainer exited"},
    "ack-received": {"type": "ack", "taskID": 42, "status": 1, "modelVersion": 17, "code": 0, "reason": ""},
    "ack-refused": {"type": "ack", "taskID": 44, "status": 3, "modelVersion": 17, "code": 107, "reason": "two updates queued"},
    "heartbeat-request": {"type": "heartbeat", "sequence": 3, "timestampNanos": 1234567890, "reply": False},
    "heartbeat-reply": {"type": "heartbeat", "sequence": 3, "timestampNanos": 1234567890, "reply": True},
    "error": {"type": "error", "code": 8, "message": "no hello within 10 s"},
    "goodbye-replaced": {"type": "goodbye", "reason": 4, "retryAfterMillis": 30000, "message": "replaced by a newer session"},
    "goodbye-target": {"type": "goodbye", "reason": 2, "retryAfterMillis": 0, "message": "target reached"},
    # option-examples.md
    "hello-options": {"type": "hello", "agentVersion": "strata-agent/2.0", "featureCount": 2, "trainSampleCount": 80,
                      "evalSampleCount": 20, "pendingUpdateCount": 0, "featureNames": ("age", "dose"), "capabilities": 7},
    "welcome-preprocessing": {"type": "welcome", "clientID": "hospital-a", "sessionID": 13, "heartbeatIntervalMillis": 2000,
                              "maxFrameBytes": 64 << 20, "modelKind": 1,
                              "featureCount": 2, "outputCount": 2, "featureNames": ("age", "dose"),
                              "preprocessing": ba.Preprocessing((ba.Transform(50.0, 12.5, 50.0), ba.Transform(2.0, 0.5, 2.0)),
                                                                ba.IDENTITY, ())},
    "task-statistics": {"type": "task", "taskID": 3, "baseVersion": 0, "kind": 3, "learningRate": 0.0, "batchSize": 0,
                        "epochs": 0, "seed": 0, "proximalMu": 0.0, "parameters": []},
    "update-statistics": {"type": "update", "taskID": 3, "baseVersion": 0, "sampleCount": 0, "trainLoss": 0.0,
                          "evalSampleCount": 20, "evalLoss": 0.0, "evalAccuracy": 0.0, "trainMillis": 1,
                          "delta": [], "statistics": ba.Statistics(
                              (ba.Column(78, 2, 50.0, 12187.5, 21.0, 88.0), ba.Column(80, 0, 2.0, 20.0, 1.0, 3.0)),
                              ba.Column(80, 0, 0.25, 15.0, 0.0, 1.0))},
    "task-evaluate-preprocessing": {"type": "task", "taskID": 58, "baseVersion": 6, "kind": 2, "learningRate": 0.0,
                                    "batchSize": 0, "epochs": 0, "seed": 0, "proximalMu": 0.0, "parameters": PARAMS_EVAL,
                                    "preprocessing": ba.Preprocessing((ba.Transform(50.0, 12.5, 50.0), ba.Transform(2.0, 0.5, 2.0)),
                                                                      ba.IDENTITY, ())},
    "update-evaluation-statistics": {"type": "update", "taskID": 58, "baseVersion": 6, "sampleCount": 0, "trainLoss": 0.0,
                                     "evalSampleCount": 20, "evalLoss": 0.5, "evalAccuracy": 0.75, "trainMillis": 3,
                                     "delta": [], "evaluation": ba.ClassificationEvaluation(
                                         ((15, 14, 12), (5, 6, 3)), (1, 1, 1, 2), (6, 6, 2, 1))},
    "task-difference": {"type": "task", "taskID": 43, "baseVersion": 6, "kind": 1, "learningRate": f32(0.01), "batchSize": 10,
                        "epochs": 2, "seed": 44, "proximalMu": 0.0, "parameters": [],
                        "referencedParameters": ba.ReferencedParameters(42, ba.CompressedDelta(ba.ENCODING_Q8, (
                            ba.Q8Tensor("weight", (2, 2), 256, ((-0.0078125, 2.0 ** -13),), bytes([0, 255, 128, 64])),
                            ba.Q8Tensor("bias", (2,), 256, ((0.0, 0.0),), bytes([0, 0])))))},
    "welcome-encoding": {"type": "welcome", "clientID": "hospital-a", "sessionID": 12, "heartbeatIntervalMillis": 2000,
                         "maxFrameBytes": 64 << 20, "modelKind": 1, "featureCount": 2,
                         "outputCount": 2, "updateEncoding": ba.UpdateEncoding(ba.ENCODING_TOP_K, 0.25)},
    "update-q8": {"type": "update", "taskID": 42, "baseVersion": 5, "sampleCount": 80, "trainLoss": 0.625, "evalSampleCount": 20,
                  "evalLoss": 0.6875, "evalAccuracy": 0.75, "trainMillis": 37, "delta": [],
                  "compressedDelta": ba.CompressedDelta(ba.ENCODING_Q8, (
                      ba.Q8Tensor("weight", (2, 2), 256, ((-1.0, 0.0078125),), bytes([0, 255, 128, 192])),
                      ba.Q8Tensor("bias", (2,), 256, ((-0.25, 0.0078125),), bytes([0, 255])))),
                  "denseDelta": [("weight", [2, 2], [-1.0, 0.9921875, 0.0, 0.5]), ("bias", [2], [-0.25, 1.7421875])]},
    "update-top-k": {"type": "update", "taskID": 42, "baseVersion": 5, "sampleCount": 80, "trainLoss": 0.625, "evalSampleCount": 20,
                  "evalLoss": 0.6875, "evalAccuracy": 0.75, "trainMillis": 37, "delta": [],
                     "compressedDelta": ba.CompressedDelta(ba.ENCODING_TOP_K, (
                         ba.TopKTensor("weight", (2, 2), (0, 1), (0.125, -0.125)), ba.TopKTensor("bias", (2,), (0,), (0.03125,)))),
                     "denseDelta": [("weight", [2, 2], [0.125, -0.125, 0.0, 0.0]), ("bias", [2], [0.03125, 0.0])]},
}

OPTION_FIELDS = ("featureNames", "capabilities", "preprocessing", "statistics", "evaluation", "updateEncoding", "compressedDelta",
                 "referencedParameters")


def comparable(m):
    out = dict(m)
    for key in ("parameters", "delta"):
        if key in out:
            out[key] = tensor_values(m, key)
    if "compressedDelta" in out:
        out["denseDelta"] = [(name, list(t.shape), [float(v) for v in t.ravel()]) for name, t in ba.dense_delta(out["compressedDelta"])]
    return out


def test_the_document_has_examples_of_every_message_type():
    assert len(DOC_EXAMPLES) >= 8
    names = [e.name for e in DOC_EXAMPLES]
    assert len(names) == len(set(names)), "an example name appears twice"
    types = {decode_one(e.data)["type"] for e in DOC_EXAMPLES}
    assert types == set(ba.TYPE_NAMES.values())


@pytest.mark.parametrize("example", ALL, ids=repr)
def test_example_decodes_and_reencodes_byte_for_byte(example):
    assert example.data[:3] == b"ST\x02", "magic and version 2"
    m = decode_one(example.data)
    assert "skippedOptions" not in m, "an example with an option this client does not know"
    assert ba.encode_message(m) == example.data
    if example.stated is not None:
        assert example.stated == len(example.data), f"the prose says {example.stated} bytes, the block has {len(example.data)}"


@pytest.mark.parametrize("example", [e for e in ALL if e.name in EXPECTED], ids=repr)
def test_example_holds_what_its_prose_says(example):
    m = comparable(decode_one(example.data))
    want = EXPECTED[example.name]
    for key, value in want.items():
        assert m.get(key) == value, f"{key}: {m.get(key)!r} != {value!r}"
    # Options a message has are exactly those listed.
    for field in OPTION_FIELDS:
        assert (field in m) == (field in want), field


def test_the_part_examples_carry_the_task_example():
    by_name = {e.name: e for e in DOC_EXAMPLES}
    assembler = ba.PartAssembler(limit=64)
    assert assembler.take(decode_one(by_name["part-first"].data)) is None
    task = assembler.take(decode_one(by_name["part-last"].data))
    assert ba.encode_message(task) == by_name["task-bias-only"].data
    assert ba.split_into_parts(by_name["task-bias-only"].data, 63) == [by_name["part-first"].data, by_name["part-last"].data]


def test_every_known_example_is_present():
    names = {e.name for e in ALL}
    missing = set(EXPECTED) - names
    assert not missing, f"examples missing: {sorted(missing)}"


def test_a_wrong_byte_in_an_example_is_noticed():
    """Every byte of an example matters to the decoder or to the prose's expectations (as in the Swift test)."""
    for example in [e for e in ALL if e.name in EXPECTED]:
        want = EXPECTED[example.name]
        for i in range(len(example.data)):
            bad = bytearray(example.data)
            bad[i] ^= 0x01
            try:
                m = comparable(decode_one(bytes(bad)))
            except (ba.ProtocolError, AssertionError):
                continue
            same = all(m.get(k) == v for k, v in want.items()) and \
                all((f in m) == (f in want) for f in OPTION_FIELDS)
            assert not same, f"{example!r}: flipping byte {i} went unnoticed"


def test_split_vectors_of_section_8():
    text = open(DOCUMENT, encoding="utf-8").read()
    block = re.search(r"<!-- vectors: split -->\s*```\n(.*?)```", text, re.S)
    assert block, "no split vectors in §8"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert lines
    for line in lines:
        m = re.fullmatch(r"splitSeed (\d+), testFraction ([\d.]+), row keys (\d+)-(\d+) -> evaluation rows: ([\d ]+)", line.strip())
        assert m, line
        seed, fraction, first, last = int(m.group(1)), float(m.group(2)), int(m.group(3)), int(m.group(4))
        got = [k for k in range(first, last + 1) if ba.deterministic_test(k, seed, fraction)]
        assert got == [int(v) for v in m.group(5).split()], line
