"""Framing (§11.2): round trips, the exact byte layout, and every check on what is read and written."""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest

from strata_trainer.protocol import MAX_HEADER, ProtocolError, decode_message, encode_message, read_message, write_message


def frame(header: object, body: bytes = b"", *, header_length: int | None = None, body_length: int | None = None) -> bytes:
    """A frame built by hand, so that tests can break any part of it."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    h = len(raw) if header_length is None else header_length
    b = len(body) if body_length is None else body_length
    return struct.pack("<IQ", h, b) + raw + body


def spec(name: str, shape: list[int], dtype: str = "float32") -> dict[str, object]:
    return {"name": name, "dtype": dtype, "shape": shape}


class OneByteReader(io.RawIOBase):
    """A stream that returns one byte per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.at >= len(self.data) or len(buffer) == 0:
            return 0
        buffer[0] = self.data[self.at]
        self.at += 1
        return 1


# --- round trips -------------------------------------------------------------------------------------------


def test_round_trip_keeps_header_arrays_values_and_order() -> None:
    arrays: dict[str, Any] = {
        "z.weight": np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5,
        "a.bias": np.array([1e-30, -3.4e38, 7.0], dtype=np.float32),
        "scalar": np.float32(4.25),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    message = decode_message(encode_message({"type": "train", "id": 7, "task": 3, "extra": {"k": [1, 2]}}, arrays))
    assert message.type == "train" and message.id == 7
    assert message.header["task"] == 3 and message.header["extra"] == {"k": [1, 2]}
    assert list(message.arrays) == ["z.weight", "a.bias", "scalar", "empty"]
    for name, value in arrays.items():
        assert message.arrays[name].dtype == np.float32
        assert message.arrays[name].shape == np.shape(value)
        np.testing.assert_array_equal(message.arrays[name], value)
    assert message.header["arrays"] == [
        spec("z.weight", [2, 3]), spec("a.bias", [3]), spec("scalar", []), spec("empty", [0, 3])
    ]


def test_exact_bytes_little_endian() -> None:
    data = encode_message({"type": "t", "id": 1}, {"w": np.array([1.0, -2.0])})
    header = b'{"type":"t","id":1,"arrays":[{"name":"w","dtype":"float32","shape":[2]}]}'
    assert data == struct.pack("<IQ", len(header), 8) + header + bytes.fromhex("0000803f000000c0")


def test_encode_converts_to_float32_c_order() -> None:
    matrix = np.arange(6, dtype=np.float64).reshape(2, 3).T  # Fortran-ordered view
    message = decode_message(encode_message({"type": "t"}, {"m": matrix, "i": np.array([1, 2], dtype=np.int64), "b": np.array([True])}))
    np.testing.assert_array_equal(message.arrays["m"], matrix)
    np.testing.assert_array_equal(message.arrays["i"], [1.0, 2.0])
    np.testing.assert_array_equal(message.arrays["b"], [1.0])


def test_message_without_arrays_lists_none_and_given_arrays_key_is_replaced() -> None:
    assert "arrays" not in json.loads(encode_message({"type": "ready", "id": 1})[12:])
    replaced = decode_message(encode_message({"type": "t", "arrays": [spec("bogus", [9])]}, {"x": np.ones(2)}))
    assert replaced.header["arrays"] == [spec("x", [2])]
    cleared = encode_message({"type": "t", "arrays": [spec("bogus", [9])]})
    assert "arrays" not in json.loads(cleared[12:])


def test_received_arrays_are_writable() -> None:
    message = decode_message(encode_message({"type": "t"}, {"x": np.ones(3)}))
    message.arrays["x"][0] = 5.0
    assert message.arrays["x"][0] == 5.0


def test_consecutive_messages_then_eof() -> None:
    stream = io.BytesIO()
    write_message(stream, {"type": "a", "id": 1}, {"x": np.ones(2)})
    write_message(stream, {"type": "b", "id": 2})
    stream.seek(0)
    first, second = read_message(stream), read_message(stream)
    assert first is not None and first.type == "a" and list(first.arrays) == ["x"]
    assert second is not None and second.type == "b" and second.arrays == {}
    assert read_message(stream) is None
    assert read_message(io.BytesIO(b"")) is None


def test_short_reads_are_completed() -> None:
    data = encode_message({"type": "t", "id": 3}, {"x": np.arange(5), "y": np.ones((2, 2))})
    message = read_message(io.BufferedReader(OneByteReader(data), buffer_size=1))
    assert message is not None and message.id == 3
    np.testing.assert_array_equal(message.arrays["x"], np.arange(5))


def test_unicode_header_round_trip() -> None:
    message = decode_message(encode_message({"type": "t", "message": "température ≥ 3 — ok"}))
    assert message.header["message"] == "température ≥ 3 — ok"


# --- malformed input ---------------------------------------------------------------------------------------


def read_error(data: bytes, **kwargs: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        read_message(io.BytesIO(data), **kwargs)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize("length", [0, MAX_HEADER + 1, 2**32 - 1])
def test_header_length_out_of_range(length: int) -> None:
    error = read_error(struct.pack("<IQ", length, 0) + b"{}")
    assert "header length" in str(error) and not error.synchronized


def test_largest_header_is_accepted() -> None:
    padding = MAX_HEADER - len(b'{"type":"t","p":""}')
    raw = b'{"type":"t","p":"' + b"x" * padding + b'"}'
    assert len(raw) == MAX_HEADER
    message = read_message(io.BytesIO(frame(raw)))
    assert message is not None and len(message.header["p"]) == padding


def test_body_over_limit() -> None:
    error = read_error(frame({"type": "t", "arrays": [spec("x", [4])]}, b"\0" * 16), max_body=15)
    assert "over the limit" in str(error) and not error.synchronized


@pytest.mark.parametrize("cut", [1, 11, 12, 20])
def test_eof_inside_a_frame(cut: int) -> None:
    data = frame({"type": "t", "id": 1, "arrays": [spec("x", [2])]}, b"\0" * 8)
    error = read_error(data[: len(data) - cut] if cut != 20 else data[:5])
    assert "end of file" in str(error) and not error.synchronized


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[" * 100000 + b"]" * 100000, "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"id": 4}', '"type"'),
        (b'{"type": 5, "id": 4}', '"type"'),
        (b'{"type": "t", "id": 4, "arrays": {}}', "not a list"),
        (b'{"type": "t", "id": 4, "arrays": [7]}', "not an object"),
        (b'{"type": "t", "id": 4, "arrays": [{"dtype": "float32", "shape": []}]}', "no name"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "", "dtype": "float32", "shape": []}]}', "no name"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "x", "dtype": "float64", "shape": [1]}]}', "float32 is the only dtype"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "x", "shape": [1]}]}', "float32 is the only dtype"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "x", "dtype": "float32"}]}', "no valid shape"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "x", "dtype": "float32", "shape": [-1]}]}', "whole numbers"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "x", "dtype": "float32", "shape": [1.5]}]}', "whole numbers"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "x", "dtype": "float32", "shape": [true]}]}', "whole numbers"),
        (b'{"type": "t", "id": 4, "arrays": [{"name": "x", "dtype": "float32", "shape": [1]},'
         b' {"name": "x", "dtype": "float32", "shape": [1]}]}', "listed twice"),
    ],
)
def test_bad_header_is_reported_and_skipped(header: bytes, needle: str) -> None:
    body = b"\0" * 8
    stream = io.BytesIO(frame(header, body) + encode_message({"type": "next", "id": 5}))
    with pytest.raises(ProtocolError, match=needle) as caught:
        read_message(stream)
    assert caught.value.synchronized
    assert caught.value.request_id == (4 if b'"id": 4' in header else None)
    following = read_message(stream)  # the bad frame was consumed whole
    assert following is not None and following.type == "next"


@pytest.mark.parametrize("body_length", [0, 7, 9, 32])
def test_body_length_must_equal_the_arrays_size(body_length: int) -> None:
    header = {"type": "train", "id": 9, "arrays": [spec("w", [2, 3]), spec("s", [])]}  # 28 bytes
    stream = io.BytesIO(frame(header, b"\1" * body_length) + encode_message({"type": "next"}))
    with pytest.raises(ProtocolError, match="body length") as caught:
        read_message(stream)
    assert caught.value.synchronized and caught.value.request_id == 9
    following = read_message(stream)
    assert following is not None and following.type == "next"


def test_huge_shape_does_not_allocate() -> None:
    header = {"type": "t", "id": 1, "arrays": [spec("x", [2**40, 2**40])]}
    error = read_error(frame(header, b""))
    assert "body length 0" in str(error)


def test_decode_rejects_trailing_bytes_and_empty_input() -> None:
    with pytest.raises(ProtocolError, match="follow"):
        decode_message(encode_message({"type": "t"}) + b"\0")
    with pytest.raises(ProtocolError, match="empty"):
        decode_message(b"")


# --- what may be written -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"x": np.array([1.0, np.nan])}, "NaN or infinite"),
        ({"x": np.array([np.inf])}, "NaN or infinite"),
        ({"x": np.array([1e39])}, "NaN or infinite"),  # finite float64, infinite as float32
        ({"x": np.array(["a"])}, "not a real number type"),
        ({"x": np.array([1 + 2j])}, "not a real number type"),
        ({"x": np.array([object()])}, "not a real number type"),
        ({"": np.ones(1)}, "non-empty string"),
        ({3: np.ones(1)}, "non-empty string"),
    ],
)
def test_encode_refuses_bad_arrays(arrays: dict, needle: str) -> None:
    stream = io.BytesIO()
    with pytest.raises(ProtocolError, match=needle):
        write_message(stream, {"type": "trained", "id": 1}, arrays)
    assert stream.getvalue() == b""  # nothing half-written


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ({"type": "trained", "metrics": {"train_loss": float("nan")}}, "JSON"),
        ({"type": "trained", "value": object()}, "JSON"),
        ({"id": 1}, '"type"'),
        ({"type": "t", "padding": "x" * MAX_HEADER}, "over the limit"),
    ],
)
def test_encode_refuses_bad_headers(header: dict, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        encode_message(header)


def test_crc_of_known_message_is_stable() -> None:
    # Guards the wire format against accidental changes (key order, separators, byte order).
    data = encode_message({"type": "trained", "id": 2, "metrics": {"train_loss": 0.5}}, {"w": np.eye(2)})
    assert data[:12] == struct.pack("<IQ", len(data) - 12 - 16, 16)
    assert zlib.crc32(data) == zlib.crc32(
        struct.pack("<IQ", len(data) - 28, 16)
        + b'{"type":"trained","id":2,"metrics":{"train_loss":0.5},"arrays":[{"name":"w","dtype":"float32","shape":[2,2]}]}'
        + np.eye(2, dtype="<f4").tobytes()
    )
