#!/usr/bin/env python3
"""A Strata agent written from docs/PROTOCOL.md alone, that can lie (Byzantine test helper).

Speaks protocol 2 over mutual TLS 1.3 with a certificate from the dev PKI (Certs/strata-pki.sh): hello (with
option 1, its feature names, and option 2, capabilities statistics | preprocessing | evaluation statistics) /
welcome, answers every task, heartbeats (its own every interval, and replies to the coordinator's), handles
ack, goodbye and error frames, resends unacknowledged updates after a reconnect (kept in memory only: this
helper has no state file). Every message it sends ends with an options section; in every message it receives
it skips unknown options and refuses unknown critical ones (unsupported-option). It reads its rows from a
SQLite database written by strata-datagen, the way strata-agent reads them by default (table `samples`, label
column `label`, split column `split`, features = every numeric column but label, split and the primary key, in
table order, rows ordered by rowid). It answers statistics tasks (kind 3) with a summary of its training rows
(update option 1), applies the federation's preprocessing (welcome or task option 0x8001) to its rows before
training and evaluating, sends evaluation statistics (update option 2) with every evaluation, and trains
honestly with NumPy mini-batch SGD close to Sources/StrataCore/Trainer.swift (softmax or linear regression;
per-epoch shuffle, mean batch gradient, optional proximal term). Not bit-exact: the shuffle uses NumPy's
generator seeded from (task seed, epoch), not Strata's xoshiro256**.

Behaviours (--behaviour):
  honest        trains and reports honestly (for checking this client against strata-agent)
  large-norm    answers every train task at once with a delta in a random direction of L2 norm --norm
                (default 9900 = 0.99 x the coordinator's default --max-update-norm 10000) and its real
                row count as sampleCount
  sign-flip     trains honestly, sends -SCALE x delta (--scale, default 10)
  scaled-count  sends the sign-flipped delta (scale 1) with sampleCount, and the hello's trainSampleCount,
                multiplied by --count-scale (default 1000)
  lying-eval    answers evaluate tasks (and the eval fields of its train updates) with accuracy 1.0,
                loss 0.0 and evalSampleCount --eval-count (default 2^62); trains like sign-flip
                (--lie-in-hello also puts that count into the hello's evalSampleCount)
  --lie-statistics [MEAN]  (with any behaviour) answers statistics tasks with mean MEAN (default 1e12) and
                standard deviation |MEAN| for every feature, its real row counts, min/max widened to hold them
Under scaled-count the statistics claim --count-scale times the rows too; under lying-eval the evaluation
statistics claim a perfect model on --eval-count rows. Every answer is sent as soon as it is computed (no
artificial delay).

Exit status: 0 the coordinator ended the federation (goodbye with retryAfter 0); 1 an error retrying cannot
fix (refused certificate or role, evicted, incompatible data, too many failed connection attempts);
2 bad arguments. One line per event on stderr.

Example:
  Tests/adversary/byzantine_agent.py --coordinator 127.0.0.1:7300 --cert pki/agents/agent-09.crt \\
      --key pki/agents/agent-09.key --ca pki/ca.crt --database data/client-09.sqlite --behaviour sign-flip
"""

import argparse
import math
import os
import queue
import random
import re
import select
import socket
import sqlite3
import ssl
import struct
import sys
import threading
import time
from collections import namedtuple

import numpy as np

# ------------------------------------------------------------------------------------------ protocol v2

MAGIC = b"ST"
VERSION = 2
HEADER = struct.Struct("<2sBBI")          # magic, version, type, payload length
DEFAULT_MAX_FRAME = 64 << 20

HELLO, WELCOME, TASK, UPDATE, ACK, HEARTBEAT, ERROR, GOODBYE, PART = range(1, 10)
TYPE_NAMES = {1: "hello", 2: "welcome", 3: "task", 4: "update", 5: "ack", 6: "heartbeat", 7: "error", 8: "goodbye", 9: "part"}
TYPES_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}

TASK_TRAIN, TASK_EVALUATE, TASK_STATISTICS = 1, 2, 3
TASK_KIND_NAMES = {1: "train", 2: "evaluate", 3: "statistics"}
ACK_RECEIVED, ACK_COMMITTED, ACK_REFUSED = 1, 2, 3
ACK_STATUS_NAMES = {1: "received", 2: "committed", 3: "refused"}
MODEL_SOFTMAX, MODEL_LINEAR, MODEL_MLP, MODEL_CUSTOM = 1, 2, 3, 4
MAX_HIDDEN_LAYERS, MAX_WIDTH, MAX_MODEL_VALUES = 16, 65536, 2**31 - 1

# Options (§2): keys are numbered per message type; bit 15 marks a key the receiver must understand.
CRITICAL = 0x8000
OPT_HELLO_FEATURE_NAMES = 1
OPT_HELLO_CAPABILITIES = 2
OPT_WELCOME_FEATURE_NAMES = 1
OPT_WELCOME_UPDATE_ENCODING = 3
OPT_WELCOME_MAX_MESSAGE_BYTES = 4
OPT_WELCOME_TASK_DIFFERENCES = 5
OPT_WELCOME_PREPROCESSING = 0x8001
OPT_WELCOME_MODEL_LAYERS = 0x8010
OPT_WELCOME_MODEL_MANIFEST = 0x8011
OPT_TASK_PREPROCESSING = 0x8001
OPT_TASK_REFERENCED_PARAMETERS = 0x8002
OPT_UPDATE_STATISTICS = 1
OPT_UPDATE_EVALUATION = 2
OPT_UPDATE_LOSS_SQUARES = 5                     # f64: Σ of the evaluation rows' squared losses (§7.5)
OPT_UPDATE_FAILURE = 0x8003
OPT_UPDATE_COMPRESSED_DELTA = 0x8004
ENCODING_Q8, ENCODING_TOP_K = 1, 2              # compressed deltas (§3 update, *compressed delta*)
MAX_Q8_BLOCK = 65536
# hello option 2 bits
CAP_STATISTICS, CAP_PREPROCESSING, CAP_EVALUATION_STATISTICS, CAP_COMPRESSED_DELTAS = 1 << 0, 1 << 1, 1 << 2, 1 << 3
CAP_COMPRESSED_TASKS = 1 << 4
CAP_MESSAGE_PARTS = 1 << 5                      # tasks and updates larger than a frame travel as part frames (type 9)
CAP_ALL = CAP_STATISTICS | CAP_PREPROCESSING | CAP_EVALUATION_STATISTICS
LABELS_NUMBERS, LABELS_TEXT = 1, 2              # statistics: label kind
EVAL_CLASSIFICATION, EVAL_REGRESSION = 1, 2     # evaluation statistics: kind
MAX_LABELS = 65535
MAX_SCORE_BINS = 1024
SCORE_BINS = 100                                # what the reference sends for 2 classes (§7.5)

CODE_NAMES = {
    0: "none",
    1: "malformed-frame", 2: "unsupported-version", 3: "frame-too-large", 4: "unknown-message-type",
    5: "unexpected-message", 6: "not-authorized", 7: "incompatible-data", 8: "heartbeat-timeout",
    9: "out-of-range", 10: "unsupported-option",
    100: "shape-mismatch", 101: "non-finite-value", 102: "norm-too-large", 103: "unknown-task",
    104: "too-stale", 105: "wrong-client", 106: "invalid-update", 107: "over-share",
    200: "shutting-down", 201: "internal-error", 202: "evicted", 203: "not-ready", 204: "too-many-connections",
}
GOODBYE_NAMES = {0: "normal", 1: "shutting-down", 2: "target-reached", 3: "evicted", 4: "replaced"}
# Error codes after which reconnecting cannot help.
FATAL_CODES = {6, 7, 202}

BEHAVIOURS = ("honest", "large-norm", "sign-flip", "scaled-count", "lying-eval")


def code_name(code):
    return CODE_NAMES.get(code, f"code-{code}")


class ProtocolError(Exception):
    """A frame we cannot accept; `code` is the error code to send before closing."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# Option values (§2). Plain tuples: equal when their fields are.
Column = namedtuple("Column", "count missing mean m2 min max")          # one column's summary (48 bytes)
Transform = namedtuple("Transform", "center scale fill")                 # one column's preprocessing
Preprocessing = namedtuple("Preprocessing", "features target labels")    # tuple of Transform, Transform, tuple of str
Layers = namedtuple("Layers", "activation hidden")                       # an MLP's: 1 relu / 2 tanh, tuple of widths
TensorShape = namedtuple("TensorShape", "name shape")                    # a custom model's tensor: str, tuple of dims
# labels: a Column (label kind 1, numbers) or a tuple of (label, count) (label kind 2, text)
Statistics = namedtuple("Statistics", "features labels")
# classes: tuple of (support, predicted, correct); positive / negative: the score histograms (empty unless 2 classes)
ClassificationEvaluation = namedtuple("ClassificationEvaluation", "classes positive negative")
RegressionEvaluation = namedtuple("RegressionEvaluation", "count sum_r sum_abs_r sum_r2 sum_y sum_y2")
# welcome option 3: ENCODING_Q8 / ENCODING_TOP_K (or a number this client does not know), the top-k fraction
UpdateEncoding = namedtuple("UpdateEncoding", "encoding fraction")
# update option 0x8004: the encoding and its tensors, each kept as it travelled so that it re-encodes exactly
CompressedDelta = namedtuple("CompressedDelta", "encoding tensors")
# q8: block size, then per block (low, step), then one code per value
Q8Tensor = namedtuple("Q8Tensor", "name shape block_size blocks codes")
# top-k: the kept flat indices (ascending) and their values
TopKTensor = namedtuple("TopKTensor", "name shape indices values")
# task option 0x8002: the train task's parameters = those of task `reference` (as this agent rebuilt them) + difference
ReferencedParameters = namedtuple("ReferencedParameters", "reference difference")

EMPTY_COLUMN = Column(0, 0, 0.0, 0.0, math.inf, -math.inf)
IDENTITY = Transform(0.0, 1.0, 0.0)


class Reader:
    """Reads primitive fields from one payload; every read is bounds-checked (malformed-frame)."""

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def left(self):
        return len(self.data) - self.pos

    def take(self, n, field):
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError(1, f"{field} runs past the end of the payload")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, f): return self.take(1, f)[0]

    def flag(self, f):
        v = self.u8(f)
        if v > 1:
            raise ProtocolError(1, f"{f} must be 0 or 1, got {v}")
        return v == 1
    def u16(self, f): return struct.unpack("<H", self.take(2, f))[0]
    def u32(self, f): return struct.unpack("<I", self.take(4, f))[0]
    def u64(self, f): return struct.unpack("<Q", self.take(8, f))[0]
    def f32(self, f): return struct.unpack("<f", self.take(4, f))[0]
    def f64(self, f): return struct.unpack("<d", self.take(8, f))[0]

    def count(self, f, minimum_bytes, limit=0xFFFFFFFF):
        """A u32 element count, refused when its elements (at least `minimum_bytes` each) cannot fit in
        the bytes left: checked before anything is allocated for them."""
        n = self.u32(f)
        if n > limit:
            raise ProtocolError(1, f"{f} {n} over the limit {limit}")
        if n * minimum_bytes > self.left():
            raise ProtocolError(1, f"{f} {n} runs past the end of the payload")
        return n

    def string(self, f):
        raw = self.take(self.u16(f + ".length"), f)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(1, f"{f} is not valid UTF-8") from None

    def tensor(self, f):
        name = self.string(f + ".name")
        rank = self.u8(f + ".rank")
        if rank > 8:
            raise ProtocolError(1, f"{f} rank {rank} > 8")
        shape = tuple(self.u32(f + ".dim") for _ in range(rank))
        count = 1
        for d in shape:
            count *= d               # Python integers: no overflow
        if count * 4 > self.left():  # checked before allocating
            raise ProtocolError(1, f"{f} '{name}' of shape {shape} runs past the end of the payload")
        values = np.frombuffer(self.take(count * 4, f), dtype="<f4").astype(np.float32).reshape(shape)
        return name, values

    def tensors(self, f):
        count = self.u16(f + ".count")
        if count > 1024:
            raise ProtocolError(1, f"{f}: {count} tensors > 1024")
        return [self.tensor(f) for _ in range(count)]

    # -- option values ---------------------------------------------------------------------------

    def column(self, f):
        return Column(self.u64(f + ".count"), self.u64(f + ".missing"), self.f64(f + ".mean"), self.f64(f + ".m2"),
                      self.f64(f + ".min"), self.f64(f + ".max"))

    def transform(self, f):
        return Transform(self.f64(f + ".center"), self.f64(f + ".scale"), self.f64(f + ".fill"))

    def names(self, f):
        return tuple(self.string(f"{f}[{i}]") for i in range(self.count(f + ".count", 2)))

    def capabilities(self, f):
        return self.u64(f)

    def update_encoding(self, f):
        encoding, fraction = self.u8(f + ".encoding"), self.f32(f + ".fraction")
        if encoding == ENCODING_TOP_K and not (0 < fraction <= 1):
            raise ProtocolError(1, f"{f}: top-k fraction {fraction} not in (0, 1]")
        if encoding == ENCODING_Q8 and struct.pack("<f", fraction) != bytes(4):
            raise ProtocolError(1, f"{f}: q8 takes no fraction (0), not {fraction}")
        return UpdateEncoding(encoding, fraction)

    def referenced_parameters(self, f):
        reference = self.u64(f + ".referenceTaskID")
        return ReferencedParameters(reference, self.compressed_delta(f + ".difference"))

    def compressed_delta(self, f):
        encoding = self.u8(f + ".encoding")
        if encoding not in (ENCODING_Q8, ENCODING_TOP_K):
            raise ProtocolError(1, f"{f}: unknown encoding {encoding}")
        count = self.u16(f + ".count")
        if count > 1024:
            raise ProtocolError(1, f"{f}: {count} tensors > 1024")
        tensors = []
        for i in range(count):
            g = f"{f}[{i}]"
            name = self.string(g + ".name")
            rank = self.u8(g + ".rank")
            if rank > 8:
                raise ProtocolError(1, f"{g} rank {rank} > 8")
            shape = tuple(self.u32(g + ".dim") for _ in range(rank))
            n = math.prod(shape)
            if n > 0xFFFFFFFF:
                raise ProtocolError(1, f"{g}: more than 2^32 - 1 values")
            if encoding == ENCODING_Q8:
                block = self.u32(g + ".blockSize")
                if not 1 <= block <= MAX_Q8_BLOCK:
                    raise ProtocolError(1, f"{g}: block size {block}")
                nblocks = -(-n // block)
                if nblocks * 8 + n > self.left():
                    raise ProtocolError(1, f"{g}: runs past the end of the payload")
                blocks = tuple((self.f32(g + ".low"), self.f32(g + ".step")) for _ in range(nblocks))
                tensors.append(Q8Tensor(name, shape, block, blocks, self.take(n, g + ".codes")))
            else:
                k = self.u32(g + ".k")
                if k > n or 8 * k > self.left():
                    raise ProtocolError(1, f"{g}: k {k} of {n} values")
                indices = struct.unpack(f"<{k}I", self.take(4 * k, g + ".indices"))
                if any(b <= a for a, b in zip(indices, indices[1:])) or (k and indices[-1] >= n):
                    raise ProtocolError(1, f"{g}: indices not ascending or not below {n}")
                tensors.append(TopKTensor(name, shape, indices, struct.unpack(f"<{k}f", self.take(4 * k, g + ".values"))))
        return CompressedDelta(encoding, tuple(tensors))

    def layers(self, f):
        activation = self.u8(f + ".activation")
        if activation not in (1, 2):
            raise ProtocolError(1, f"{f}: unknown activation {activation}")
        count = self.u16(f + ".count")
        if not 1 <= count <= MAX_HIDDEN_LAYERS:
            raise ProtocolError(1, f"{f}: {count} hidden layers (1 to {MAX_HIDDEN_LAYERS})")
        hidden = tuple(self.u32(f"{f}.hidden[{i}]") for i in range(count))
        if any(not 1 <= w <= MAX_WIDTH for w in hidden):
            raise ProtocolError(1, f"{f}: a width outside 1 to {MAX_WIDTH}")
        return Layers(activation, hidden)

    def manifest(self, f):
        count = self.u16(f + ".count")
        if not 1 <= count <= 1024:
            raise ProtocolError(1, f"{f}: {count} tensors (1 to 1024)")
        tensors, names, total = [], set(), 0
        for i in range(count):
            name = self.string(f"{f}[{i}].name")
            if not name or name in names:
                raise ProtocolError(1, f"{f}[{i}]: empty or repeated tensor name {name!r}")
            names.add(name)
            rank = self.u8(f"{f}[{i}].rank")
            if rank > 8:
                raise ProtocolError(1, f"{f}[{i}]: rank {rank} (at most 8)")
            shape = tuple(self.u32(f"{f}[{i}].shape") for _ in range(rank))
            n = 1
            for d in shape:
                n *= d
            total += n
            if total > MAX_MODEL_VALUES:
                raise ProtocolError(1, f"{f}: more than 2^31 - 1 values")
            tensors.append(TensorShape(name, shape))
        return tuple(tensors)

    def preprocessing(self, f):
        features = tuple(self.transform(f"{f}.features[{j}]") for j in range(self.count(f + ".n", 24)))
        target = self.transform(f + ".target")
        labels = tuple(self.string(f"{f}.labels[{k}]") for k in range(self.count(f + ".m", 2, MAX_LABELS)))
        return Preprocessing(features, target, labels)

    def statistics(self, f):
        features = tuple(self.column(f"{f}.features[{j}]") for j in range(self.count(f + ".n", 48)))
        kind = self.u8(f + ".labelKind")
        if kind == LABELS_NUMBERS:
            labels = self.column(f + ".label")
        elif kind == LABELS_TEXT:
            m = self.count(f + ".m", 10, MAX_LABELS)
            labels = tuple((self.string(f"{f}.labels[{k}]"), self.u64(f"{f}.counts[{k}]")) for k in range(m))
        else:
            raise ProtocolError(1, f"{f}: unknown label kind {kind}")
        return Statistics(features, labels)

    def evaluation(self, f):
        kind = self.u8(f + ".kind")
        if kind == EVAL_CLASSIFICATION:
            classes = tuple((self.u64(f + ".support"), self.u64(f + ".predicted"), self.u64(f + ".correct"))
                            for _ in range(self.count(f + ".c", 24)))
            bins = self.u16(f + ".bins")
            if bins > MAX_SCORE_BINS:
                raise ProtocolError(1, f"{f}: {bins} bins > {MAX_SCORE_BINS}")
            if bins * 16 > self.left():
                raise ProtocolError(1, f"{f}: {bins} bins run past the end of the payload")
            positive = tuple(self.u64(f + ".positive") for _ in range(bins))
            negative = tuple(self.u64(f + ".negative") for _ in range(bins))
            return ClassificationEvaluation(classes, positive, negative)
        if kind == EVAL_REGRESSION:
            return RegressionEvaluation(self.u64(f + ".count"), *(self.f64(f + ".sum") for _ in range(5)))
        raise ProtocolError(1, f"{f}: unknown evaluation kind {kind}")

    def options(self, message):
        """The options section (§2): {key: raw value bytes}. A key twice is malformed-frame; an unknown key is
        skipped unless it is critical (bit 15): unsupported-option. Known keys are decoded by the caller."""
        known = KNOWN_OPTIONS[message]
        out, skipped = {}, []
        for i in range(self.u16(f"{message}.options.count")):
            key = self.u16(f"{message}.options[{i}].key")
            value = self.take(self.u32(f"{message}.options[{i}].length"), f"{message}.options[{i}].value")
            if key in out or key in skipped:
                raise ProtocolError(1, f"{message} option 0x{key:04x} appears twice")
            if key in known:
                out[key] = value
            elif key & CRITICAL:
                raise ProtocolError(10, f"{message} carries critical option 0x{key:04x}, which this agent does not understand")
            else:
                skipped.append(key)
        return out, skipped

    def done(self, what):
        if self.pos != len(self.data):
            raise ProtocolError(1, f"{len(self.data) - self.pos} bytes left over after {what}")


def p_string(s):
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return struct.pack("<H", len(raw)) + raw


def p_tensors(tensors):
    """tensors: list of (name, ndarray); values written as little-endian float32, row-major."""
    out = [struct.pack("<H", len(tensors))]
    for name, values in tensors:
        values = np.ascontiguousarray(values, dtype="<f4")
        out.append(p_string(name))
        out.append(struct.pack("<B", values.ndim))
        out.append(b"".join(struct.pack("<I", d) for d in values.shape))
        out.append(values.tobytes())
    return b"".join(out)


def p_column(c):
    return struct.pack("<QQdddd", c.count, c.missing, c.mean, c.m2, c.min, c.max)


def p_transform(t):
    return struct.pack("<ddd", t.center, t.scale, t.fill)


def p_names(names):
    return struct.pack("<I", len(names)) + b"".join(p_string(n) for n in names)


def p_capabilities(bits):
    return struct.pack("<Q", bits)


def p_update_encoding(e):
    return struct.pack("<Bf", e.encoding, e.fraction)


def p_compressed_delta(c):
    out = [struct.pack("<BH", c.encoding, len(c.tensors))]
    for t in c.tensors:
        out.append(p_string(t.name) + struct.pack("<B", len(t.shape)) + b"".join(struct.pack("<I", d) for d in t.shape))
        if c.encoding == ENCODING_Q8:
            out.append(struct.pack("<I", t.block_size) + b"".join(struct.pack("<ff", *b) for b in t.blocks) + bytes(t.codes))
        else:
            out.append(struct.pack(f"<I{len(t.indices)}I{len(t.values)}f", len(t.indices), *t.indices, *t.values))
    return b"".join(out)


def p_referenced_parameters(r):
    return struct.pack("<Q", r.reference) + p_compressed_delta(r.difference)


def dense_delta(c):
    """The (name, float32 array) tensors a compressed delta stands for: q8 value = low + code * step of its
    block (computed in float32); top-k: the kept values at their indices, zeros elsewhere."""
    out = []
    for t in c.tensors:
        n = math.prod(t.shape)
        if c.encoding == ENCODING_Q8:
            codes = np.frombuffer(t.codes, dtype=np.uint8).astype(np.float32)
            lows = np.repeat(np.array([b[0] for b in t.blocks], dtype=np.float32), t.block_size)[:n]
            steps = np.repeat(np.array([b[1] for b in t.blocks], dtype=np.float32), t.block_size)[:n]
            values = lows + codes * steps
        else:
            values = np.zeros(n, dtype=np.float32)
            values[list(t.indices)] = np.array(t.values, dtype=np.float32)
        out.append((t.name, values.reshape(t.shape)))
    return out


def p_layers(layers):
    return struct.pack("<BH", layers.activation, len(layers.hidden)) + struct.pack(f"<{len(layers.hidden)}I", *layers.hidden)


def p_manifest(tensors):
    return struct.pack("<H", len(tensors)) + b"".join(
        p_string(t.name) + struct.pack("<B", len(t.shape)) + struct.pack(f"<{len(t.shape)}I", *t.shape) for t in tensors)


def p_preprocessing(p):
    return (struct.pack("<I", len(p.features)) + b"".join(p_transform(t) for t in p.features) + p_transform(p.target)
            + struct.pack("<I", len(p.labels)) + b"".join(p_string(s) for s in p.labels))


def p_statistics(s):
    out = struct.pack("<I", len(s.features)) + b"".join(p_column(c) for c in s.features)
    if isinstance(s.labels, Column):
        return out + struct.pack("<B", LABELS_NUMBERS) + p_column(s.labels)
    return (out + struct.pack("<BI", LABELS_TEXT, len(s.labels))
            + b"".join(p_string(label) + struct.pack("<Q", n) for label, n in s.labels))


def p_evaluation(e):
    if isinstance(e, RegressionEvaluation):
        return struct.pack("<BQddddd", EVAL_REGRESSION, *e)
    if len(e.positive) != len(e.negative):
        raise ValueError("score histograms of different sizes")
    return (struct.pack("<BI", EVAL_CLASSIFICATION, len(e.classes)) + b"".join(struct.pack("<QQQ", *c) for c in e.classes)
            + struct.pack("<H", len(e.positive)) + struct.pack(f"<{len(e.positive)}Q", *e.positive)
            + struct.pack(f"<{len(e.negative)}Q", *e.negative))


# Per message: the option keys this client knows, with the field name of the decoded message, the value's
# decoder (a Reader method) and encoder.
OPTIONS = {
    "hello": {OPT_HELLO_FEATURE_NAMES: ("featureNames", Reader.names, p_names),
              OPT_HELLO_CAPABILITIES: ("capabilities", Reader.capabilities, p_capabilities)},
    "welcome": {OPT_WELCOME_FEATURE_NAMES: ("featureNames", Reader.names, p_names),
                OPT_WELCOME_UPDATE_ENCODING: ("updateEncoding", Reader.update_encoding, p_update_encoding),
                OPT_WELCOME_MAX_MESSAGE_BYTES: ("maxMessageBytes", lambda r, f: r.u64(f), lambda v: struct.pack("<Q", v)),
                OPT_WELCOME_TASK_DIFFERENCES: ("taskDifferences", Reader.flag, lambda v: struct.pack("<B", 1 if v else 0)),
                OPT_WELCOME_PREPROCESSING: ("preprocessing", Reader.preprocessing, p_preprocessing),
                OPT_WELCOME_MODEL_LAYERS: ("modelLayers", Reader.layers, p_layers),
                OPT_WELCOME_MODEL_MANIFEST: ("modelManifest", Reader.manifest, p_manifest)},
    "task": {OPT_TASK_PREPROCESSING: ("preprocessing", Reader.preprocessing, p_preprocessing),
             OPT_TASK_REFERENCED_PARAMETERS: ("referencedParameters", Reader.referenced_parameters, p_referenced_parameters)},
    "update": {OPT_UPDATE_STATISTICS: ("statistics", Reader.statistics, p_statistics),
               OPT_UPDATE_EVALUATION: ("evaluation", Reader.evaluation, p_evaluation),
               OPT_UPDATE_LOSS_SQUARES: ("lossSquares", lambda r, f: r.f64(f), lambda v: struct.pack("<d", v)),
               OPT_UPDATE_FAILURE: ("failure", Reader.string, p_string),
               OPT_UPDATE_COMPRESSED_DELTA: ("compressedDelta", Reader.compressed_delta, p_compressed_delta)},
    "ack": {}, "heartbeat": {}, "error": {}, "goodbye": {}, "part": {},
}
KNOWN_OPTIONS = {message: set(keys) for message, keys in OPTIONS.items()}


def p_options(message, fields, extra=()):
    """The options section of `message` from the known option fields present (not None) in `fields`, plus
    `extra` raw (key, value bytes) pairs (e.g. unknown keys, for tests); ascending order of key."""
    entries = [(key, encode(fields[name])) for key, (name, _, encode) in OPTIONS[message].items()
               if fields.get(name) is not None]
    entries += [(key, bytes(value)) for key, value in extra]
    entries.sort(key=lambda e: e[0])
    return struct.pack("<H", len(entries)) + b"".join(struct.pack("<HI", k, len(v)) + v for k, v in entries)


def frame(msg_type, payload):
    return HEADER.pack(MAGIC, VERSION, msg_type, len(payload)) + payload


def encode_hello(agent_version, feature_count, train_count, eval_count, pending_count, feature_names=None,
                 capabilities=None, extra_options=()):
    return frame(HELLO, p_string(agent_version) + struct.pack("<IQQI", feature_count, train_count, eval_count, pending_count)
                 + p_options("hello", {"featureNames": feature_names, "capabilities": capabilities}, extra_options))


def encode_update(task_id, base_version, sample_count, train_loss, eval_count, eval_loss, eval_accuracy, train_millis, delta,
                  statistics=None, evaluation=None, extra_options=(), failure=None, compressed_delta=None, loss_squares=None):
    head = struct.pack("<QQQfQffI", task_id, base_version, sample_count, train_loss, eval_count, eval_loss,
                       eval_accuracy, min(train_millis, 0xFFFFFFFF))
    return frame(UPDATE, head + p_tensors(delta)
                 + p_options("update", {"statistics": statistics, "evaluation": evaluation, "failure": failure,
                                        "compressedDelta": compressed_delta, "lossSquares": loss_squares}, extra_options))


def encode_heartbeat(sequence, timestamp_nanos, reply, extra_options=()):
    return frame(HEARTBEAT, struct.pack("<QQB", sequence, timestamp_nanos, 1 if reply else 0) + p_options("heartbeat", {}, extra_options))


def encode_error(code, message, extra_options=()):
    return frame(ERROR, struct.pack("<H", code) + p_string(message) + p_options("error", {}, extra_options))


def encode_goodbye(reason, retry_after_millis, message, extra_options=()):
    return frame(GOODBYE, struct.pack("<HI", reason, retry_after_millis) + p_string(message) + p_options("goodbye", {}, extra_options))


def encode_part(message_type, total_length, offset, data, extra_options=()):
    """One part frame (type 9) of a task or update whose payload is `total_length` bytes: `data` starts at `offset`."""
    return frame(PART, struct.pack("<BQQI", message_type, total_length, offset, len(data)) + bytes(data) + p_options("part", {}, extra_options))


def split_into_parts(frame_bytes, max_payload):
    """The part frames of one encoded task or update frame, each payload at most `max_payload` bytes (§2)."""
    msg_type, length = HEADER.unpack(frame_bytes[:HEADER.size])[2:]
    payload = frame_bytes[HEADER.size:]
    chunk = max_payload - 21 - 2
    return [encode_part(msg_type, length, offset, payload[offset:offset + chunk]) for offset in range(0, length, chunk)]


class PartAssembler:
    """Puts a message in parts back together (§2): parts in order, nothing between them, the total within `limit`."""

    def __init__(self, limit):
        self.limit, self.open = limit, None

    def take(self, m):
        """The message to deliver for decoded message `m` (a dict), or None while parts are missing."""
        if m["type"] != "part":
            if self.open is not None:
                raise ProtocolError(1, f"a {m['type']} message between the parts of a message")
            return m
        if self.open is None:
            if m["offset"] != 0:
                raise ProtocolError(1, "a message's first part starts at offset 0")
            if m["totalLength"] > self.limit:
                raise ProtocolError(3, f"a message of {m['totalLength']} bytes in parts, over the limit {self.limit}")
            self.open = (m["messageType"], m["totalLength"], bytearray())
        msg_type, total, data = self.open
        if (m["messageType"], m["totalLength"], m["offset"]) != (msg_type, total, len(data)):
            raise ProtocolError(1, "a part out of order or of another message")
        data += m["data"]
        if len(data) < total:
            return None
        self.open = None
        return decode_payload(msg_type, bytes(data))


# The coordinator's messages: encoders too, for the tests (the worked examples in PROTOCOL.md).
def encode_ack(task_id, status, model_version, code, reason, extra_options=()):
    return frame(ACK, struct.pack("<QBQH", task_id, status, model_version, code) + p_string(reason) + p_options("ack", {}, extra_options))


def encode_task(task_id, base_version, kind, lr, batch, epochs, seed, mu, parameters, preprocessing=None, extra_options=(),
                referenced_parameters=None):
    return frame(TASK, struct.pack("<QQBfIIQf", task_id, base_version, kind, lr, batch, epochs, seed, mu) + p_tensors(parameters)
                 + p_options("task", {"preprocessing": preprocessing, "referencedParameters": referenced_parameters}, extra_options))


def encode_welcome(client_id, session_id, heartbeat_ms, max_frame, model_kind, features, outputs, feature_names=None,
                   preprocessing=None, extra_options=(), model_layers=None, model_manifest=None, update_encoding=None,
                   max_message_bytes=None, task_differences=None):
    return frame(WELCOME, p_string(client_id) + struct.pack("<QIIBII", session_id, heartbeat_ms, max_frame, model_kind, features, outputs)
                 + p_options("welcome", {"featureNames": feature_names, "preprocessing": preprocessing,
                                         "modelLayers": model_layers, "modelManifest": model_manifest,
                                         "updateEncoding": update_encoding, "maxMessageBytes": max_message_bytes,
                                         "taskDifferences": task_differences}, extra_options))


def encode_message(m):
    """The frame of a decoded message (the dict decode_payload returns): decode and encode are inverses."""
    t = m["type"]
    if t == "hello":
        return encode_hello(m["agentVersion"], m["featureCount"], m["trainSampleCount"], m["evalSampleCount"],
                            m["pendingUpdateCount"], m.get("featureNames"), m.get("capabilities"))
    if t == "welcome":
        return encode_welcome(m["clientID"], m["sessionID"], m["heartbeatIntervalMillis"], m["maxFrameBytes"], m["modelKind"],
                              m["featureCount"], m["outputCount"], m.get("featureNames"), m.get("preprocessing"),
                              model_layers=m.get("modelLayers"), model_manifest=m.get("modelManifest"),
                              update_encoding=m.get("updateEncoding"), max_message_bytes=m.get("maxMessageBytes"),
                              task_differences=m.get("taskDifferences"))
    if t == "task":
        return encode_task(m["taskID"], m["baseVersion"], m["kind"], m["learningRate"], m["batchSize"], m["epochs"], m["seed"],
                           m["proximalMu"], m["parameters"], m.get("preprocessing"),
                           referenced_parameters=m.get("referencedParameters"))
    if t == "update":
        return encode_update(m["taskID"], m["baseVersion"], m["sampleCount"], m["trainLoss"], m["evalSampleCount"],
                             m["evalLoss"], m["evalAccuracy"], m["trainMillis"], m["delta"], m.get("statistics"), m.get("evaluation"),
                             failure=m.get("failure"), compressed_delta=m.get("compressedDelta"),
                             loss_squares=m.get("lossSquares"))
    if t == "ack":
        return encode_ack(m["taskID"], m["status"], m["modelVersion"], m["code"], m["reason"])
    if t == "heartbeat":
        return encode_heartbeat(m["sequence"], m["timestampNanos"], m["reply"])
    if t == "error":
        return encode_error(m["code"], m["message"])
    if t == "goodbye":
        return encode_goodbye(m["reason"], m["retryAfterMillis"], m["message"])
    if t == "part":
        return encode_part(m["messageType"], m["totalLength"], m["offset"], m["data"])
    raise ValueError(f"unknown message type {t!r}")


def decode_header(header, max_frame=DEFAULT_MAX_FRAME):
    """(type, payload length) from the 8 header bytes, validated before any payload is read."""
    magic, version, msg_type, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError(1, f"bad magic {magic!r}")
    if version != VERSION:
        raise ProtocolError(2, f"frame version {version}, expected {VERSION}")
    if msg_type not in TYPE_NAMES:
        raise ProtocolError(4, f"unknown message type {msg_type}")
    if length > max_frame:
        raise ProtocolError(3, f"payload of {length} bytes over the limit {max_frame}")
    return msg_type, length


def decode_payload(msg_type, payload):
    """A dict with 'type' (name) and the message's fields, in PROTOCOL.md's names. Known options present
    appear under their names (featureNames, capabilities, preprocessing, statistics, evaluation); the keys
    of unknown, non-critical options that were skipped under 'skippedOptions' (only when there were some)."""
    r = Reader(payload)
    name = TYPE_NAMES[msg_type]
    m = {"type": name}
    if msg_type == HELLO:
        m.update(agentVersion=r.string("hello.agentVersion"), featureCount=r.u32("f"), trainSampleCount=r.u64("f"),
                 evalSampleCount=r.u64("f"), pendingUpdateCount=r.u32("f"))
    elif msg_type == WELCOME:
        m.update(clientID=r.string("welcome.clientID"), sessionID=r.u64("welcome.sessionID"),
                 heartbeatIntervalMillis=r.u32("welcome.heartbeat"), maxFrameBytes=r.u32("welcome.maxFrameBytes"),
                 modelKind=r.u8("welcome.modelKind"), featureCount=r.u32("welcome.featureCount"),
                 outputCount=r.u32("welcome.outputCount"))
        if m["modelKind"] not in (MODEL_SOFTMAX, MODEL_LINEAR, MODEL_MLP, MODEL_CUSTOM):
            raise ProtocolError(1, f"unknown model kind {m['modelKind']}")
    elif msg_type == TASK:
        m.update(taskID=r.u64("task.taskID"), baseVersion=r.u64("task.baseVersion"), kind=r.u8("task.kind"))
        if m["kind"] not in TASK_KIND_NAMES:
            raise ProtocolError(1, f"unknown task kind {m['kind']}")
        m.update(learningRate=r.f32("task.learningRate"), batchSize=r.u32("task.batchSize"), epochs=r.u32("task.epochs"),
                 seed=r.u64("task.seed"), proximalMu=r.f32("task.proximalMu"), parameters=r.tensors("task.parameters"))
    elif msg_type == UPDATE:
        m.update(taskID=r.u64("u"), baseVersion=r.u64("u"), sampleCount=r.u64("u"), trainLoss=r.f32("u"),
                 evalSampleCount=r.u64("u"), evalLoss=r.f32("u"), evalAccuracy=r.f32("u"), trainMillis=r.u32("u"),
                 delta=r.tensors("update.delta"))
    elif msg_type == ACK:
        m.update(taskID=r.u64("ack.taskID"), status=r.u8("ack.status"))
        if m["status"] not in ACK_STATUS_NAMES:
            raise ProtocolError(1, f"unknown ack status {m['status']}")
        m.update(modelVersion=r.u64("ack.modelVersion"), code=r.u16("ack.code"), reason=r.string("ack.reason"))
    elif msg_type == HEARTBEAT:
        m.update(sequence=r.u64("heartbeat.sequence"), timestampNanos=r.u64("heartbeat.timestampNanos"),
                 flags=r.u8("heartbeat.flags"))
        if m["flags"] & ~1:
            raise ProtocolError(1, f"heartbeat flags 0x{m['flags']:x}: reserved bits set")
        m["reply"] = bool(m["flags"] & 1)
    elif msg_type == ERROR:
        m.update(code=r.u16("error.code"), message=r.string("error.message"))
    elif msg_type == PART:
        m.update(messageType=r.u8("part.messageType"), totalLength=r.u64("part.totalLength"), offset=r.u64("part.offset"),
                 length=r.u32("part.length"))
        if m["messageType"] not in (TASK, UPDATE):
            raise ProtocolError(1, f"type {m['messageType']} cannot travel in parts")
        if m["length"] == 0 or m["offset"] >= m["totalLength"] or m["length"] > m["totalLength"] - m["offset"]:
            raise ProtocolError(1, "a part's bytes lie outside its message")
        m["data"] = r.take(m.pop("length"), "part.data")
    elif msg_type == GOODBYE:
        # An unknown reason is accepted (the protocol grows reasons, e.g. 4 replaced): retryAfter decides.
        m.update(reason=r.u16("goodbye.reason"), retryAfterMillis=r.u32("goodbye.retryAfterMillis"),
                 message=r.string("goodbye.message"))
    options, skipped = r.options(name)
    r.done(name)
    for key, value in options.items():
        field, decode, _ = OPTIONS[name][key]
        v = Reader(value)
        m[field] = decode(v, f"{name}.{field}")
        v.done(f"{name} option 0x{key:04x} ({field})")
    if skipped:
        m["skippedOptions"] = skipped
    if name == "task" and "referencedParameters" in m and (m["kind"] != TASK_TRAIN or m["parameters"]):
        raise ProtocolError(1, "task: option 0x8002 comes only with a train task whose parameters field is empty")
    if name == "update" and "compressedDelta" in m and m["delta"]:
        raise ProtocolError(1, "update: a compressed delta (option 0x8004) comes with an empty tensors field")
    if name == "welcome" and ((m["modelKind"] == MODEL_MLP) != ("modelLayers" in m)
                              or (m["modelKind"] == MODEL_CUSTOM) != ("modelManifest" in m)):
        raise ProtocolError(1, "welcome: model kind 3 comes with option 0x8010 and kind 4 with 0x8011, no other kind with either")
    return m


class FrameBuffer:
    """Accumulates received bytes and yields whole decoded messages."""

    def __init__(self, max_frame=DEFAULT_MAX_FRAME):
        self.buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= HEADER.size:
            msg_type, length = decode_header(bytes(self.buf[:HEADER.size]), self.max_frame)
            if len(self.buf) < HEADER.size + length:
                break
            payload = bytes(self.buf[HEADER.size:HEADER.size + length])
            del self.buf[:HEADER.size + length]
            out.append(decode_payload(msg_type, payload))
        return out

# ---------------------------------------------------------------------------------------------- data

def numeric_affinity(declared):
    """SQLite's affinity rules, as SampleDataSource.hasNumericAffinity."""
    t = (declared or "").upper()
    if "INT" in t:
        return True
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return False
    if t == "" or "BLOB" in t:
        return False
    return True


def deterministic_test(row_key, seed=0, fraction=0.2):
    """SampleDataSource.deterministicTest (used only when the table has no split column)."""
    m = (1 << 64) - 1
    z = (row_key + seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    z ^= z >> 31
    return (z >> 11) / float(1 << 53) < fraction


NUMERAL = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
TRUE_WORDS, FALSE_WORDS = {"true", "t", "yes"}, {"false", "f", "no"}
F32_MAX = float(np.finfo(np.float32).max)
MISSING = object()


def read_value(v):
    """A stored value as §8 reads it: a float (INTEGER, REAL, a TEXT numeral), ('bool', 0 | 1) for a true/false word,
    MISSING (NULL, empty or blank TEXT), or None when it is none of these (other text, a blob, a non-finite number
    or one beyond float32)."""
    if v is None:
        return MISSING
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return MISSING
        if NUMERAL.fullmatch(v):
            v = float(s)
        elif s.lower() in TRUE_WORDS or s.lower() in FALSE_WORDS:
            return ("bool", 1.0 if s.lower() in TRUE_WORDS else 0.0)
        else:
            return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) and abs(v) <= F32_MAX else None


def class_name(v):
    """A label as a class name (§8 Labels): text stripped; a number written by its value, without a decimal point
    when it is an integer."""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def load_samples(path, table="samples", label="label", split="split", test_fraction=0.2, null_policy="refuse"):
    """(train_x, train_y, test_x, test_y, feature_names), as strata-agent reads a table by default (§8).

    Feature columns: every column but the label, the split and primary-key columns, in declaration order, of
    numeric affinity (their values must be numbers), or of another type when every value is a number or missing
    and one at least is present. Values: INTEGER, REAL, TEXT numerals, true/false words (1 / 0); NULL and blank
    TEXT are missing; anything else stops. Missing values (null_policy): refuse stops at the first (label, then
    features, then split), skip leaves the row out, impute keeps missing features as NaN (counted in the
    statistics, replaced by the preprocessing's fill, §7.0) and leaves out rows whose label or split is missing.
    Labels are float32 numbers when every present label is one, else an object array of class names (text
    labels: class k is the preprocessing's label[k]). Not done here: §8's refusal of identifier-like columns."""
    if not os.path.exists(path):
        raise SystemExit(f"byzantine_agent: no database at {path}")
    if null_policy not in ("refuse", "skip", "impute"):
        raise ValueError(f"null policy {null_policy!r}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cols = db.execute(f'PRAGMA table_info("{table}")').fetchall()   # cid, name, type, notnull, default, pk
        if not cols:
            raise SystemExit(f"byzantine_agent: no table '{table}' in {path}")
        names = [c[1] for c in cols]
        if label not in names:
            raise SystemExit(f"byzantine_agent: no label column '{label}' in {table} (columns {names})")
        use_split = split if split in names else None
        candidates = [(c[1], numeric_affinity(c[2])) for c in cols if c[1] != label and c[1] != use_split and c[5] == 0]
        order = f' FROM "{table}" ORDER BY rowid'
        rows = db.execute(f'SELECT rowid, "{label}"' + (f', "{use_split}"' if use_split else "") + order).fetchall()
        # Columns holding only numbers and NULLs are converted at once; the others value by value (§8).
        texty = db.execute("SELECT " + ", ".join(f"""SUM(typeof("{n}") IN ('text', 'blob'))""" for n, _ in candidates)
                           + f' FROM "{table}"').fetchone() if candidates else ()
        plain = [n for (n, _), t in zip(candidates, texty) if not t]
        block = db.execute("SELECT " + ", ".join(f'"{n}"' for n in plain) + order).fetchall() if plain else []
        with np.errstate(invalid="ignore"):
            plain_values = np.array(block, dtype=np.float64).reshape(len(rows), len(plain))
        other = {n: [r[0] for r in db.execute(f'SELECT "{n}"' + order)] for (n, _), t in zip(candidates, texty) if t}
    finally:
        db.close()
    columns = []       # (name, float64 values, NaN = missing) of the feature columns
    for name, numeric in candidates:
        if name in other:
            raw = other[name]
            read = [read_value(v) for v in raw]
            bad = next((i for i, v in enumerate(read) if v is None), None)
            words = any(isinstance(v, tuple) for v in read)
            if bad is None and words and any(not isinstance(v, tuple) and v is not MISSING and v not in (0.0, 1.0) for v in read):
                raise SystemExit(f"byzantine_agent: column '{name}' mixes true/false words with numbers other than 0 and 1")
            values = np.array([np.nan if v is MISSING else v[1] if isinstance(v, tuple) else (v if v is not None else 0.0)
                               for v in read], dtype=np.float64)
        else:
            values = plain_values[:, plain.index(name)]
            bad = np.flatnonzero(np.isinf(values) | (np.abs(np.nan_to_num(values)) > F32_MAX))
            bad = int(bad[0]) if bad.size else None
            raw = values
        if numeric and bad is not None:
            raise SystemExit(f"byzantine_agent: row {rows[bad][0]} column '{name}' holds {raw[bad]!r}, not a number")
        if bad is not None or (len(values) and np.all(np.isnan(values))):
            continue   # a text column that is not all numbers, or without any value: not a feature
        columns.append((name, values))
    features = [name for name, _ in columns]
    x = np.column_stack([values for _, values in columns]) if columns else np.zeros((len(rows), 0))
    missing_feature = np.isnan(x).any(axis=1)
    labels = [r[1] for r in rows]
    present = [read_value(v) for v in labels]
    numbers = all(v is MISSING or isinstance(v, float) for v in present)
    missing_label = np.array([v is MISSING for v in present], dtype=bool)
    is_test = np.zeros(len(rows), dtype=bool)
    missing_split = np.zeros(len(rows), dtype=bool)
    for i, r in enumerate(rows):
        if not use_split:
            is_test[i] = deterministic_test(r[0] & ((1 << 64) - 1), 0, test_fraction)
            continue
        v = "" if r[2] is None else str(r[2]).strip().lower()
        if v in ("test", "eval", "evaluation", "validation", "val"):
            is_test[i] = True
        elif v == "":
            missing_split[i] = True
        elif v not in ("train", "training"):
            raise SystemExit(f"byzantine_agent: row {r[0]} split value {r[2]!r} is neither train nor test")
    if null_policy == "refuse" and (missing_label.any() or missing_feature.any() or missing_split.any()):
        i = int(np.flatnonzero(missing_label | missing_feature | missing_split)[0])
        column = label if missing_label[i] else features[int(np.flatnonzero(np.isnan(x[i]))[0])] if missing_feature[i] else use_split
        raise SystemExit(f"byzantine_agent: row {rows[i][0]} column '{column}' is missing (--null-policy skip or impute)")
    out = missing_label | missing_split | (missing_feature if null_policy == "skip" else False)
    if out.any():
        sys.stderr.write(f"byzantine_agent: {int(out.sum())} rows left out for a missing value (label {int(missing_label.sum())}, "
                         f"split {int((missing_split & ~missing_label).sum())}, features {int((out & ~missing_label & ~missing_split).sum())})\n")
    keep = ~out
    x = x[keep].astype(np.float32).reshape(int(keep.sum()), len(features))
    if numbers:
        y = np.array([v if v is not MISSING else 0.0 for v in present], dtype=np.float32)[keep]
    else:
        y = np.array([class_name(v) for v in labels], dtype=object)[keep]
    is_test = is_test[keep]
    return x[~is_test], y[~is_test], x[is_test], y[is_test], features


def text_labels(y):
    return y.dtype == object


# ----------------------------------------------------------------------- statistics and preprocessing (pure)

def column_summary(values):
    """The *column* of §2 for one column's values (NaN = missing): count, missing, mean, M2 (the sum of squared
    deviations from the mean), min, max, in float64. Two passes (the mean, then the deviations, with the
    rounding of the first pass corrected)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    present = v[~np.isnan(v)]
    n, missing = int(present.size), int(v.size - present.size)
    if n == 0:
        return Column(0, missing, 0.0, 0.0, math.inf, -math.inf)
    mean = float(np.mean(present))
    d = present - mean
    s = float(np.sum(d))
    mean += s / n
    m2 = max(0.0, float(np.sum(d * d)) - s * s / n)
    return Column(n, missing, mean, m2, float(present.min()), float(present.max()))


def data_statistics(train_x, train_y, eval_y):
    """update option 1 (§3 statistics task): one *column* per feature over the training rows, as read (before any
    preprocessing); the label: numbers → a *column* over the training rows; text → each distinct label of the
    training and evaluation rows with its row count (sorted by UTF-8 bytes; the document allows any order)."""
    features = tuple(column_summary(train_x[:, j]) for j in range(train_x.shape[1]))
    if text_labels(train_y) or text_labels(eval_y):
        counts = {}
        for v in list(train_y) + list(eval_y):
            counts[str(v)] = counts.get(str(v), 0) + 1
        if len(counts) > MAX_LABELS:
            raise ValueError(f"{len(counts)} distinct labels, more than {MAX_LABELS}")
        return Statistics(features, tuple(sorted(counts.items(), key=lambda kv: kv[0].encode("utf-8"))))
    return Statistics(features, column_summary(train_y))


def preprocessing_problem(pre, feature_count, model_kind, outputs):
    """Why this agent cannot apply `pre` (None when it can): the feature count must be the data's, every
    center / fill finite and every scale finite and > 0; a vocabulary must fit the model's classes."""
    if len(pre.features) != feature_count:
        return f"preprocessing for {len(pre.features)} features, the data has {feature_count}"
    for j, t in enumerate(list(pre.features) + [pre.target]):
        what = "the target" if j == len(pre.features) else f"feature {j}"
        if not (math.isfinite(t.center) and math.isfinite(t.fill) and math.isfinite(t.scale) and t.scale > 0):
            return f"{what}'s transform {tuple(t)} is not usable (finite center and fill, finite scale > 0)"
    if pre.labels and model_kind == MODEL_SOFTMAX and len(pre.labels) > outputs:
        return f"{len(pre.labels)} labels in the vocabulary, the model has {outputs} classes"
    if pre.labels and model_kind == MODEL_LINEAR:
        return "a label vocabulary for a linear regression"
    return None


# Rows as the model sees them: x float32 (preprocessed), y float32 (class index, or the standardised target),
# target_raw float64 (the regression target as read; None for classes), dropped (rows whose text label is not in
# the vocabulary, or any text label without one).
Rows = namedtuple("Rows", "x y target_raw dropped")


def apply_preprocessing(pre, x, y, model_kind):
    """§7.0: feature j becomes ((x_j, or fill when missing) − center) / scale; text labels become their index in
    the vocabulary (a label not in it: the row is not used); numbers are used as read, except a regression
    target, trained as (y − center) / scale. pre None: rows as read (a missing value becomes 0)."""
    features = pre.features if pre is not None else [IDENTITY] * x.shape[1]
    center = np.array([t.center for t in features], dtype=np.float64)
    scale = np.array([t.scale for t in features], dtype=np.float64)
    fill = np.array([t.fill for t in features], dtype=np.float64)
    x64 = x.astype(np.float64)
    x64 = np.where(np.isnan(x64), fill, x64)
    xp = ((x64 - center) / scale).astype(np.float32)
    if text_labels(y):
        vocabulary = {label: k for k, label in enumerate(pre.labels)} if pre is not None else {}
        index = np.array([vocabulary.get(str(v), -1) for v in y], dtype=np.int64)
        keep = index >= 0
        return Rows(xp[keep], index[keep].astype(np.float32), None, int(np.sum(~keep)))
    if model_kind == MODEL_LINEAR:
        target = pre.target if pre is not None else IDENTITY
        raw = y.astype(np.float64)
        return Rows(xp, ((raw - target.center) / target.scale).astype(np.float32), raw, 0)
    return Rows(xp, y.astype(np.float32), None, 0)


def evaluation_statistics(kind, w, b, rows, target=IDENTITY, bins=SCORE_BINS):
    """update option 2 (§2, §7.5) for the parameters (w, b) on preprocessed rows. Classification: per class the
    rows labelled k, predicted k (arg-max, lowest index on ties) and both; with 2 classes, `bins` bins of the
    predicted probability of class 1 (bin ⌊p·bins⌋, p = 1 in the last) for rows labelled 1, then labelled 0.
    Regression: count, Σr, Σ|r|, Σr², Σy, Σy² with r = ŷ − y in the target's units (ŷ mapped back)."""
    z = rows.x @ w + b
    if kind == MODEL_LINEAR:
        y = rows.target_raw if rows.target_raw is not None else rows.y.astype(np.float64)
        pred = z[:, 0].astype(np.float64) * target.scale + target.center
        r = pred - y
        return RegressionEvaluation(len(y), float(np.sum(r)), float(np.sum(np.abs(r))), float(np.sum(r * r)),
                                    float(np.sum(y)), float(np.sum(y * y)))
    c = w.shape[1]
    labels = rows.y.astype(np.int64)
    predicted = z.argmax(axis=1) if len(labels) else np.zeros(0, np.int64)
    support = np.bincount(labels, minlength=c)
    pred_counts = np.bincount(predicted, minlength=c)
    correct = np.bincount(labels[predicted == labels], minlength=c)
    classes = tuple((int(support[k]), int(pred_counts[k]), int(correct[k])) for k in range(c))
    if c != 2:
        return ClassificationEvaluation(classes, (), ())
    z64 = z.astype(np.float64)
    with np.errstate(over="ignore"):
        p1 = 1.0 / (1.0 + np.exp(z64[:, 0] - z64[:, 1]))    # softmax probability of class 1
    b_of = np.minimum(np.floor(p1 * bins), bins - 1).astype(np.int64)
    positive = np.bincount(b_of[labels == 1], minlength=bins)
    negative = np.bincount(b_of[labels == 0], minlength=bins)
    return ClassificationEvaluation(classes, tuple(int(v) for v in positive), tuple(int(v) for v in negative))

# --------------------------------------------------------------------------------------------- model

def split_params(tensors):
    d = dict(tensors)
    return d["weight"].astype(np.float32), d["bias"].astype(np.float32)


def parameters_problem(tensors, features, outputs):
    """Why a train or evaluate task's tensors do not fit welcome's model (None when they do): exactly "weight"
    [features, outputs] then "bias" [outputs] (§3 task)."""
    want = [("weight", (features, outputs)), ("bias", (outputs,))]
    got = [(name, tuple(t.shape)) for name, t in tensors]
    return None if got == want else f"tensors {got}, the model's are {want}"


def evaluate(kind, w, b, x, y):
    """(loss, accuracy) as Trainer.evaluate: mean cross-entropy and argmax accuracy (softmax); 0.5 * mse, 0 (linear)."""
    n = len(y)
    if n == 0:
        return 0.0, 0.0
    z = x @ w + b
    if kind == MODEL_LINEAR:
        r = z[:, 0].astype(np.float64) - y
        return float(0.5 * np.mean(r * r)), 0.0
    labels = y.astype(np.int64)
    m = z.max(axis=1, keepdims=True)
    s = np.exp(z - m).sum(axis=1)
    loss = np.log(s) - (z[np.arange(n), labels] - m[:, 0])
    with np.errstate(invalid="ignore"):
        acc = float(np.mean(z.argmax(axis=1) == labels))
    return float(np.mean(loss.astype(np.float64))), acc


def train(kind, w, b, x, y, lr, batch, epochs, seed, mu):
    """Mini-batch SGD as Trainer.train: per epoch a seeded shuffle, batches of `batch` (the last smaller),
    step along the mean batch gradient (+ mu (p - p_start)). Returns (w, b, mean loss over all visited samples)."""
    w = w.astype(np.float32).copy()
    b = b.astype(np.float32).copy()
    n = len(y)
    batch = max(1, int(batch))
    if n == 0 or epochs <= 0:
        return w, b, 0.0
    w0, b0 = w.copy(), b.copy()
    lr = np.float32(lr)
    mu = np.float32(mu)
    labels = y.astype(np.int64)
    loss_sum = 0.0
    for epoch in range(int(epochs)):
        order = np.random.default_rng([int(seed) & ((1 << 64) - 1), epoch]).permutation(n)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            xb = x[idx]
            z = xb @ w + b
            if kind == MODEL_LINEAR:
                g = z - y[idx][:, None]
                loss_sum += float(0.5 * np.sum(g.astype(np.float64) ** 2))
            else:
                yb = labels[idx]
                z -= z.max(axis=1, keepdims=True)
                e = np.exp(z)
                s = e.sum(axis=1)
                loss_sum += float(np.sum(np.log(s) - z[np.arange(len(idx)), yb]))
                g = e / s[:, None]
                g[np.arange(len(idx)), yb] -= 1
            scale = np.float32(1.0 / len(idx))
            gw = (xb.T @ g) * scale
            gb = g.sum(axis=0) * scale
            if mu != 0:
                gw += mu * (w - w0)
                gb += mu * (b - b0)
            w -= lr * gw
            b -= lr * gb
    return w, b, loss_sum / (n * int(epochs))


# ------------------------------------------------------------------------------------ the lies (pure)

def random_direction_delta(shapes, norm, rng):
    """Tensors of the given (name, shape) whose concatenation is a random direction of L2 norm `norm`."""
    sizes = [int(np.prod(s, dtype=np.int64)) for _, s in shapes]
    v = rng.standard_normal(sum(sizes))
    v *= norm / np.linalg.norm(v)
    out, at = [], 0
    for (name, shape), size in zip(shapes, sizes):
        out.append((name, v[at:at + size].astype(np.float32).reshape(shape)))
        at += size
    return out


def delta_norm(delta):
    return float(np.sqrt(sum(float(np.sum(np.asarray(t, dtype=np.float64) ** 2)) for _, t in delta)))


def attack_delta(behaviour, honest, scale=10.0):
    """The delta sent for an honestly trained `honest` delta (list of (name, array))."""
    if behaviour in ("sign-flip", "lying-eval"):
        factor = -float(scale)
    elif behaviour == "scaled-count":
        factor = -1.0
    else:
        factor = 1.0
    return [(n, (np.asarray(t, dtype=np.float32) * np.float32(factor)).astype(np.float32)) for n, t in honest]


def attack_sample_count(behaviour, real, count_scale=1000):
    return real * int(count_scale) if behaviour == "scaled-count" else real


def attack_evaluation(behaviour, honest, eval_count=1 << 62):
    """(evalSampleCount, evalLoss, evalAccuracy) reported for an honest (count, loss, accuracy)."""
    if behaviour == "lying-eval":
        return int(eval_count), 0.0, 1.0
    return honest


def attack_statistics(behaviour, honest, count_scale=1000, lie_mean=None):
    """The statistics (update option 1) sent for the honest ones. scaled-count claims count_scale times the rows
    (count, missing and M2 scaled: the same variance over more rows, a heavier weight in the merge). lie_mean
    (--lie-statistics) replaces every feature's mean by lie_mean with a standard deviation of |lie_mean|, a
    plausible count, and min / max widened to hold them: a summary no validation of §3 can tell from an
    honest one (mean within [min, max], m2 >= 0, even m2 <= count (max - min)^2 / 4), absurd next to the
    other agents'. The label summary stays honest."""
    features, labels = honest.features, honest.labels
    if lie_mean is not None:
        spread = abs(lie_mean)
        features = tuple(c if c.count == 0 else
                         Column(c.count, c.missing, float(lie_mean), c.count * spread * spread,
                                min(c.min, lie_mean - spread), max(c.max, lie_mean + spread)) for c in features)
    if behaviour == "scaled-count":
        k = int(count_scale)

        def scaled(c):
            return Column(c.count * k, c.missing * k, c.mean, c.m2 * k, c.min, c.max)
        features = tuple(scaled(c) for c in features)
        labels = scaled(labels) if isinstance(labels, Column) else tuple((label, n * k) for label, n in labels)
    return Statistics(features, labels)


def attack_evaluation_statistics(behaviour, honest, eval_count=1 << 62):
    """The evaluation statistics (update option 2) sent for the honest ones. lying-eval claims a perfect model
    on eval_count rows, consistent with its accuracy 1.0: every row predicted right (split over the classes as
    the honest support is), every class-1 row in the top score bin and every class-0 row in the bottom one;
    for a regression no residual at all."""
    if behaviour != "lying-eval" or honest is None:
        return honest
    if isinstance(honest, RegressionEvaluation):
        return RegressionEvaluation(int(eval_count), 0.0, 0.0, 0.0, 0.0, float(eval_count))
    c = len(honest.classes)
    total = sum(s for s, _, _ in honest.classes)
    shares = [s / total if total else 1.0 / c for s, _, _ in honest.classes]
    support = [int(eval_count * share) for share in shares]
    support[int(np.argmax(shares))] += int(eval_count) - sum(support)
    classes = tuple((n, n, n) for n in support)
    if not honest.positive:
        return ClassificationEvaluation(classes, (), ())
    bins = len(honest.positive)
    positive = tuple(support[1] if i == bins - 1 else 0 for i in range(bins))
    negative = tuple(support[0] if i == 0 else 0 for i in range(bins))
    return ClassificationEvaluation(classes, positive, negative)


# ------------------------------------------------------------------------------------------- session

class Fatal(Exception):
    """Retrying cannot help: exit 1."""


class SessionLost(Exception):
    """The connection ended or failed: reconnect with backoff."""


class Agent:
    def __init__(self, args):
        self.args = args
        self.behaviour = args.behaviour
        self.client = os.path.splitext(os.path.basename(args.cert))[0]
        self.rng = np.random.default_rng(args.rng_seed if args.rng_seed is not None else None)
        self.log_debug = args.log_level == "debug"
        self.tx, self.ty, self.ex, self.ey, self.features = load_samples(
            args.database, args.table, args.label_column, args.split_column, args.test_fraction, args.null_policy)
        self.prepared_cache = {}     # (preprocessing, model kind) -> (training Rows, evaluation Rows)
        self.prepared_lock = threading.Lock()
        self.pending = {}            # taskID -> update frame bytes, until committed or refused
        self.pending_lock = threading.Lock()
        host, _, port = args.coordinator.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.server_name = args.server_name or self.host
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(args.cert, args.key)
        ctx.load_verify_locations(args.ca)
        ctx.check_hostname = True
        self.ctx = ctx
        self.log("start", behaviour=self.behaviour, train=len(self.ty), test=len(self.ey), features=len(self.features),
                 **({"lieStatistics": args.lie_statistics} if args.lie_statistics is not None else {}))

    def log(self, event, level="info", **fields):
        if level == "debug" and not self.log_debug:
            return
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        sys.stderr.write(f"{stamp} {level} byzantine-agent[{self.client} {self.behaviour}] {event}{' ' + extra if extra else ''}\n")
        sys.stderr.flush()

    # -- connection loop --------------------------------------------------------------------------

    def run(self):
        failures = 0
        while True:
            welcomed = [False]
            try:
                outcome = self.session(welcomed)
            except Fatal as e:
                self.log("giving up", level="error", error=e)
                return 1
            except (SessionLost, OSError, ssl.SSLError, ProtocolError) as e:
                if welcomed[0]:
                    failures = 0
                failures += 1
                if self.args.max_connect_attempts and failures >= self.args.max_connect_attempts:
                    self.log("giving up", level="error", attempts=failures, error=repr(e))
                    return 1
                delay = min(10.0, 0.2 * 2 ** (failures - 1)) * (0.5 + 0.5 * random.random())
                self.log("connection lost; reconnecting", level="warning", error=repr(e), delay=f"{delay:.2f}s")
                time.sleep(delay)
                continue
            kind, value, message = outcome
            if kind == "finished":
                self.log("federation ended", message=repr(message))
                return 0
            failures = 0
            self.log("coordinator asked to come back later", delay=f"{value:.2f}s", message=repr(message))
            time.sleep(value)

    def connect(self):
        raw = socket.create_connection((self.host, self.port), timeout=self.args.connect_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(self.args.io_timeout)
        try:
            sock = self.ctx.wrap_socket(raw, server_hostname=self.server_name)
        except Exception:
            raw.close()
            raise
        subject = dict(x[0] for x in sock.getpeercert().get("subject", ()))
        if subject.get("organizationalUnitName") != "coordinator":
            sock.close()
            raise Fatal(f"the server's certificate has role {subject.get('organizationalUnitName')!r}, not coordinator")
        return sock

    def session(self, welcomed):
        sock = self.connect()
        ended = threading.Event()
        worker = None
        try:
            with self.pending_lock:
                resend = list(self.pending.items())
            train_count = attack_sample_count(self.behaviour, len(self.ty), self.args.count_scale)
            eval_count = self.hello_eval_count()
            sock.sendall(encode_hello(self.args.agent_version, len(self.features), train_count, eval_count, len(resend),
                                      feature_names=self.features, capabilities=self.args.capabilities))
            self.log("hello sent", trainSampleCount=train_count, evalSampleCount=eval_count, pending=len(resend), level="debug")
            fb = FrameBuffer(self.args.max_frame_bytes)
            first, early = self.read_first(sock, fb)
            if first["type"] == "error":
                if first["code"] in FATAL_CODES:
                    raise Fatal(f"coordinator refused: {code_name(first['code'])} ({first['code']}): {first['message']}")
                raise SessionLost(f"coordinator error {code_name(first['code'])} ({first['code']}): {first['message']}")
            if first["type"] == "goodbye":
                return self.goodbye_outcome(first)
            if first["type"] != "welcome":
                raise SessionLost(f"{first['type']} before welcome")
            welcome = first
            welcomed[0] = True
            self.check_compatible(welcome)
            # The preprocessing in force for this session's tasks (§3 task, §7.0): welcome's, until a task brings one.
            welcome["current"] = welcome.get("preprocessing")
            self.log("connected", client=welcome["clientID"], session=welcome["sessionID"],
                     heartbeatMs=welcome["heartbeatIntervalMillis"], resending=len(resend),
                     preprocessing="welcome" if welcome.get("preprocessing") is not None else "none",
                     featureNames=len(welcome.get("featureNames") or ()))
            for task_id, data in resend:
                sock.sendall(data)
                self.log("update resent", task=task_id)
            out = queue.Queue()
            wake_r, wake_w = socket.socketpair()
            tasks = queue.Queue()
            worker = threading.Thread(target=self.worker, args=(welcome, tasks, out, wake_w, ended), daemon=True)
            worker.start()
            try:
                return self.loop(sock, fb, early, welcome, tasks, out, wake_r)
            finally:
                ended.set()
                tasks.put(None)
                wake_r.close()
                wake_w.close()
        except ProtocolError as e:
            self.log("protocol error from coordinator", level="error", code=code_name(e.code), error=e)
            try:
                sock.sendall(encode_error(e.code, str(e)))
            except OSError:
                pass
            raise SessionLost(str(e)) from e
        finally:
            ended.set()
            self.close(sock)

    def close(self, sock):
        try:
            sock.settimeout(3)
            sock.unwrap()          # close_notify
        except (OSError, ValueError, ssl.SSLError):
            pass
        try:
            sock.close()
        except OSError:
            pass

    def read_first(self, sock, fb):
        deadline = time.monotonic() + self.args.welcome_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionLost("no reply to hello in time")
            sock.settimeout(remaining)
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                raise SessionLost("no reply to hello in time") from None
            finally:
                sock.settimeout(self.args.io_timeout)
            if not data:
                raise SessionLost("connection closed before welcome")
            msgs = fb.feed(data)
            if msgs:
                return msgs[0], msgs[1:]

    def check_compatible(self, welcome):
        if welcome["modelKind"] not in (MODEL_SOFTMAX, MODEL_LINEAR):
            raise Fatal(f"model kind {welcome['modelKind']}: this client trains softmax (1) and linear (2) models only")
        if welcome["featureCount"] != len(self.features):
            raise Fatal(f"the federation's model has {welcome['featureCount']} features but the data has {len(self.features)}")
        if welcome["modelKind"] == MODEL_SOFTMAX and not text_labels(self.ty):
            for y in (self.ty, self.ey):
                if len(y) and (y.min() < 0 or y.max() >= welcome["outputCount"] or np.any(y != np.round(y))):
                    raise Fatal(f"labels outside 0..<{welcome['outputCount']}")
        names = welcome.get("featureNames")
        if names and list(names) != list(self.features):
            self.log("the federation's feature names differ from this agent's", level="warning",
                     federation=",".join(names), agent=",".join(self.features))
        if welcome.get("preprocessing") is not None:
            problem = self.preprocessing_problem(welcome["preprocessing"], welcome)
            if problem:
                raise Fatal(f"cannot apply the federation's preprocessing: {problem}")

    def preprocessing_problem(self, pre, welcome):
        if not self.args.capabilities & CAP_PREPROCESSING:
            return "this agent did not announce capability bit 1 (preprocessing)"
        problem = preprocessing_problem(pre, len(self.features), welcome["modelKind"], welcome["outputCount"])
        if problem is None and pre.labels and not text_labels(self.ty):
            problem = f"a vocabulary of {len(pre.labels)} text labels, but this agent's labels are numbers"
        return problem

    def prepared(self, pre, kind):
        """(training Rows, evaluation Rows) under preprocessing `pre` (None: as read), computed once per preprocessing."""
        key = (pre, kind)
        with self.prepared_lock:
            if key not in self.prepared_cache:
                train_rows = apply_preprocessing(pre, self.tx, self.ty, kind)
                eval_rows = apply_preprocessing(pre, self.ex, self.ey, kind)
                if train_rows.dropped or eval_rows.dropped:
                    self.log("rows not used: their label is not in the federation's vocabulary", level="warning",
                             train=train_rows.dropped, eval=eval_rows.dropped)
                self.prepared_cache = {key: (train_rows, eval_rows)}    # one preprocessing at a time
            return self.prepared_cache[key]

    def goodbye_outcome(self, m):
        reason = GOODBYE_NAMES.get(m["reason"], f"reason-{m['reason']}")
        self.log("goodbye", reason=reason, retryAfterMs=m["retryAfterMillis"], message=repr(m["message"]))
        if m["retryAfterMillis"] > 0:
            return ("retry", m["retryAfterMillis"] / 1000.0, m["message"])
        return ("finished", 0, m["message"])

    def loop(self, sock, fb, backlog, welcome, tasks, out, wake_r):
        interval = max(0.1, welcome["heartbeatIntervalMillis"] / 1000.0)
        last_heard = time.monotonic()
        next_beat = last_heard + interval
        sequence = 0
        while True:
            for m in backlog:
                last_heard = time.monotonic()
                result = self.dispatch(sock, m, welcome, tasks)
                if result is not None:
                    return result
            backlog = []
            # Whatever the worker finished goes out first.
            while True:
                try:
                    data, task_id = out.get_nowait()
                except queue.Empty:
                    break
                sock.sendall(data)
                self.log("update sent", task=task_id, level="debug")
            now = time.monotonic()
            if now - last_heard > 5 * interval:
                raise SessionLost(f"nothing received for {now - last_heard:.1f} s (5 heartbeat intervals)")
            if now >= next_beat:
                sequence += 1
                sock.sendall(encode_heartbeat(sequence, time.monotonic_ns(), False))
                self.log("heartbeat sent", level="debug", sequence=sequence)
                next_beat = now + interval
            if sock.pending() == 0:
                timeout = max(0.0, min(next_beat - time.monotonic(), 0.5))
                readable, _, _ = select.select([sock, wake_r], [], [], timeout)
                if wake_r in readable:
                    try:
                        wake_r.recv(4096)
                    except OSError:
                        pass
                if sock not in readable:
                    continue
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                raise SessionLost("read timed out in the middle of a TLS record") from None
            except ssl.SSLWantReadError:
                continue
            if not data:
                raise SessionLost("connection closed by the coordinator")
            backlog = fb.feed(data)

    def dispatch(self, sock, m, welcome, tasks):
        kind = m["type"]
        if kind == "task":
            if m.get("preprocessing") is not None:
                problem = self.preprocessing_problem(m["preprocessing"], welcome)
                if problem:   # §3: an agent that cannot apply it must not run the task; it closes the session
                    raise SessionLost(f"task {m['taskID']}: cannot apply its preprocessing ({problem}); task not run")
                if m["preprocessing"] != welcome["current"]:
                    self.log("preprocessing received", task=m["taskID"], features=len(m["preprocessing"].features),
                             labels=len(m["preprocessing"].labels))
                welcome["current"] = m["preprocessing"]
            m["current"] = welcome["current"]        # in force for this task, whenever it runs
            if m["kind"] != TASK_STATISTICS:
                problem = parameters_problem(m["parameters"], welcome["featureCount"], welcome["outputCount"])
                if problem:   # §3, §9: a task that does not match the model ends the session
                    raise SessionLost(f"task {m['taskID']} does not match the model: {problem}")
            if m["kind"] in (TASK_EVALUATE, TASK_STATISTICS):
                name = TASK_KIND_NAMES[m["kind"]]
                self.log("task", level="debug", task=m["taskID"], kind=name, base=m["baseVersion"])
                sock.sendall(self.answer(m, welcome))   # cheap: never waits behind training
                self.log("evaluation sent" if m["kind"] == TASK_EVALUATE else "statistics sent", task=m["taskID"],
                         version=m["baseVersion"])
            else:
                self.log("task", task=m["taskID"], kind="train", base=m["baseVersion"], level="debug")
                tasks.put(m)
        elif kind == "ack":
            status = ACK_STATUS_NAMES[m["status"]]
            if m["status"] in (ACK_COMMITTED, ACK_REFUSED):
                with self.pending_lock:
                    self.pending.pop(m["taskID"], None)
            if m["status"] == ACK_REFUSED:
                self.log("update refused by coordinator", level="warning", task=m["taskID"], code=m["code"],
                         name=code_name(m["code"]), reason=repr(m["reason"]))
            else:
                self.log(f"ack {status}", task=m["taskID"], version=m["modelVersion"])
        elif kind == "heartbeat":
            if not m["reply"]:
                sock.sendall(encode_heartbeat(m["sequence"], m["timestampNanos"], True))
                self.log("heartbeat answered", level="debug", sequence=m["sequence"])
            else:
                self.log("heartbeat reply", level="debug", sequence=m["sequence"],
                         rttMs=f"{(time.monotonic_ns() - m['timestampNanos']) / 1e6:.1f}")
        elif kind == "goodbye":
            return self.goodbye_outcome(m)
        elif kind == "error":
            text = f"coordinator sent error {code_name(m['code'])} ({m['code']}): {m['message']}"
            self.log("error", level="error", code=m["code"], name=code_name(m["code"]), message=repr(m["message"]))
            if m["code"] in FATAL_CODES:
                raise Fatal(text)
            raise SessionLost(text)
        else:   # hello, welcome, update: not for an agent in the established state
            sock.sendall(encode_error(5, f"unexpected {kind} message"))
            raise SessionLost(f"unexpected {kind} from the coordinator")
        return None

    def worker(self, welcome, tasks, out, wake_w, ended):
        while True:
            m = tasks.get()
            if m is None or ended.is_set():
                return
            try:
                data = self.answer(m, welcome)
            except Exception as e:     # never leave a task unanswered silently
                self.log("task failed", level="error", task=m["taskID"], error=repr(e))
                continue
            with self.pending_lock:
                self.pending[m["taskID"]] = data
            out.put((data, m["taskID"]))
            try:
                wake_w.send(b"x")
            except OSError:
                pass   # session over: the update stays pending and is resent after reconnecting

    def hello_eval_count(self):
        return self.args.eval_count if (self.behaviour == "lying-eval" and self.args.lie_in_hello) else len(self.ey)

    def answer(self, m, welcome):
        """The update frame for task `m`, honest or not according to the behaviour."""
        started = time.monotonic()
        kind = welcome["modelKind"]
        if m["kind"] == TASK_STATISTICS:
            # §3: sampleCount 0, no tensors, the rows' summary as read (before any preprocessing).
            stats = attack_statistics(self.behaviour, data_statistics(self.tx, self.ty, self.ey), self.args.count_scale,
                                      self.args.lie_statistics)
            self.log("statistics", task=m["taskID"], features=len(stats.features),
                     lie=self.args.lie_statistics if self.args.lie_statistics is not None else "no")
            return encode_update(m["taskID"], m["baseVersion"], 0, 0.0, self.hello_eval_count(), 0.0, 0.0,
                                 int((time.monotonic() - started) * 1000), [], statistics=stats)
        pre = m.get("current", m.get("preprocessing"))
        if text_labels(self.ty) and (pre is None or not pre.labels):
            raise SessionLost(f"task {m['taskID']}: text labels but no vocabulary from the federation; task not run")
        train_rows, eval_rows = self.prepared(pre, kind)
        target = pre.target if pre is not None else IDENTITY
        w, b = split_params(m["parameters"])
        loss, acc = evaluate(kind, w, b, eval_rows.x, eval_rows.y)
        ecount, eloss, eacc = attack_evaluation(self.behaviour, (len(eval_rows.y), loss, acc), self.args.eval_count)
        evaluation = None
        if self.args.capabilities & CAP_EVALUATION_STATISTICS:
            with np.errstate(all="ignore"):
                evaluation = attack_evaluation_statistics(
                    self.behaviour, evaluation_statistics(kind, w, b, eval_rows, target), self.args.eval_count)
        if m["kind"] == TASK_EVALUATE:
            return encode_update(m["taskID"], m["baseVersion"], 0, 0.0, ecount, eloss, eacc,
                                 int((time.monotonic() - started) * 1000), [], evaluation=evaluation)
        shapes = [(name, t.shape) for name, t in m["parameters"]]
        if self.behaviour == "large-norm":
            delta = random_direction_delta(shapes, self.args.norm, self.rng)
            train_loss = loss
        else:
            nw, nb, train_loss = train(kind, w, b, train_rows.x, train_rows.y, m["learningRate"], m["batchSize"],
                                       m["epochs"], m["seed"], m["proximalMu"])
            honest = {"weight": nw - w, "bias": nb - b}
            delta = attack_delta(self.behaviour, [(name, honest[name]) for name, _ in shapes], self.args.scale)
        count = attack_sample_count(self.behaviour, len(train_rows.y), self.args.count_scale)
        ms = int((time.monotonic() - started) * 1000)
        self.log("update", task=m["taskID"], base=m["baseVersion"], samples=count, norm=f"{delta_norm(delta):.3g}",
                 loss=f"{train_loss:.4f}", ms=ms)
        return encode_update(m["taskID"], m["baseVersion"], count, float(train_loss), ecount, eloss, eacc, ms, delta,
                             evaluation=evaluation)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coordinator", required=True, help="HOST:PORT of the coordinator's agent port")
    p.add_argument("--server-name", help="name the coordinator's certificate must carry (default: the host)")
    p.add_argument("--cert", required=True, help="this agent's certificate (role agent; CN = client id)")
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--database", required=True, help="SQLite database from strata-datagen")
    p.add_argument("--table", default="samples")
    p.add_argument("--label-column", default="label")
    p.add_argument("--split-column", default="split")
    p.add_argument("--test-fraction", type=float, default=0.2, help="used only without a split column")
    p.add_argument("--behaviour", "--behavior", choices=BEHAVIOURS, default="honest")
    p.add_argument("--norm", type=float, default=9900.0, help="L2 norm of a large-norm delta (default 9900)")
    p.add_argument("--scale", type=float, default=10.0, help="sign-flip / lying-eval: delta multiplied by -SCALE (default 10)")
    p.add_argument("--count-scale", type=int, default=1000, help="scaled-count: sample counts multiplied by this (default 1000)")
    p.add_argument("--eval-count", type=int, default=1 << 62, help="lying-eval: evalSampleCount reported (default 2^62)")
    p.add_argument("--lie-in-hello", action="store_true", help="lying-eval: the hello's evalSampleCount is --eval-count too")
    p.add_argument("--lie-statistics", type=float, nargs="?", const=1e12, default=None, metavar="MEAN",
                   help="answer statistics tasks with every feature's mean MEAN (default 1e12) and standard deviation "
                        "|MEAN|, real counts, min/max widened to hold them (any behaviour)")
    p.add_argument("--capabilities", type=lambda v: int(v, 0), default=CAP_ALL,
                   help="hello option 2 bit mask (default 7: statistics | preprocessing | evaluation statistics); "
                        "without bit 1 a received preprocessing is refused, without bit 2 no evaluation statistics are sent")
    p.add_argument("--null-policy", choices=("refuse", "skip", "impute"), default="refuse",
                   help="a missing value (NULL, blank text) stops the agent (refuse), leaves its row out (skip), or, "
                        "for a feature, is replaced by the federation's fill (impute) (§8)")
    p.add_argument("--rng-seed", type=int, help="seed of the large-norm directions (default: random)")
    p.add_argument("--agent-version", default="byzantine-agent.py/2")
    p.add_argument("--max-connect-attempts", type=int, default=30, help="consecutive failed connections before exit 1 (0: never)")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--welcome-timeout", type=float, default=15.0)
    p.add_argument("--io-timeout", type=float, default=10.0, help="bound on every blocking socket read/write")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME)
    p.add_argument("--log-level", choices=("debug", "info"), default="info")
    args = p.parse_args(argv)
    if ":" not in args.coordinator:
        p.error("--coordinator must be HOST:PORT")
    if not (0 <= args.eval_count < 1 << 64):
        p.error("--eval-count must fit in a u64")
    if not (0 <= args.capabilities < 1 << 64):
        p.error("--capabilities must fit in a u64")
    if args.lie_statistics is not None and not math.isfinite(args.lie_statistics):
        p.error("--lie-statistics must be finite")
    return args


def main(argv=None):
    args = parse_args(argv)
    agent = Agent(args)
    try:
        return agent.run()
    except KeyboardInterrupt:
        agent.log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
