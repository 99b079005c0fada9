"""Framing of the local trainer interface (docs/PROTOCOL.md §11.2), with no knowledge of what messages mean.

A message is a 12-byte prefix (u32 LE header length ``H``, u64 LE body length ``B``), ``H`` bytes of UTF-8
JSON (one object) and ``B`` bytes of body: the float32 arrays the header lists in ``"arrays"``, little-endian,
C order, one after another. Everything read is checked before it is trusted, and everything written is
checked before the first byte goes out, so a bad value never leaves a half-written frame behind.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Optional, Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_HEADER",
    "Message",
    "ProtocolError",
    "decode_message",
    "encode_message",
    "read_message",
    "write_message",
]

#: The largest header either side accepts (§11.2: 1 ≤ H ≤ 16 MiB).
MAX_HEADER = 16 * 1024 * 1024
#: Deepest array shape accepted; NumPy itself stops at 64, real tensors are far shallower.
MAX_RANK = 32

_PREFIX = struct.Struct("<IQ")
_FLOAT32_LE = np.dtype("<f4")
_SKIP_CHUNK = 1 << 20

ArrayInput = Union[npt.ArrayLike, np.ndarray]


class ProtocolError(Exception):
    """A message that breaks §11.2.

    ``synchronized`` tells whether the stream is still at a message boundary (the whole frame was consumed,
    so the next message can be read); ``request_id`` is the offending message's ``"id"`` when it could be
    read, so that the receiver can answer it with an ``error`` reply.
    """

    def __init__(self, message: str, *, synchronized: bool = False, request_id: Optional[int] = None) -> None:
        super().__init__(message)
        self.synchronized = synchronized
        self.request_id = request_id


@dataclass
class Message:
    """One decoded message: its JSON header and its arrays, in the order the header lists them."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return str(self.header.get("type", ""))

    @property
    def id(self) -> Optional[int]:
        return _int_or_none(self.header.get("id"))


# ---------------------------------------------------------------------------------------------------------
# Reading


def read_message(stream: IO[bytes], *, max_body: Optional[int] = None) -> Optional[Message]:
    """Read one message from a binary stream; None on end of file at a message boundary.

    Raises ProtocolError for anything §11.2 forbids: a header length of 0 or over 16 MiB, a body over
    ``max_body`` (when given), end of file inside a message, a header that is not a JSON object with a
    string ``"type"``, an ``"arrays"`` list that is malformed, names an array twice or uses a dtype other
    than float32, and a body length other than the arrays' total size.
    """
    prefix = _read_exact(stream, _PREFIX.size, allow_eof=True)
    if prefix is None:
        return None
    header_length, body_length = _PREFIX.unpack(prefix)
    if not 1 <= header_length <= MAX_HEADER:
        raise ProtocolError(f"header length {header_length} is outside 1 … {MAX_HEADER}")
    if max_body is not None and body_length > max_body:
        raise ProtocolError(f"body length {body_length} is over the limit of {max_body} bytes")
    header_bytes = _read_exact(stream, header_length)
    assert header_bytes is not None  # _read_exact raises on EOF unless allow_eof

    # From here the frame's extent is known: on a bad header, skip the body so the stream stays usable.
    header: Any = None
    try:
        header = _parse_json(header_bytes)
        _check_header(header)
        specs = _parse_array_specs(header.get("arrays", []))
        expected = sum(4 * _element_count(shape) for _, shape in specs)
        if expected != body_length:
            raise ProtocolError(f"body length {body_length} differs from the {expected} bytes its arrays hold")
    except ProtocolError as error:
        _skip(stream, body_length)
        request_id = _int_or_none(header.get("id")) if isinstance(header, dict) else None
        raise ProtocolError(str(error), synchronized=True, request_id=request_id) from None

    body = bytearray(body_length)
    _read_into(stream, body)
    return Message(header=header, arrays=_split_body(body, specs))


def decode_message(data: bytes) -> Message:
    """Decode exactly one message from bytes (trailing bytes are an error)."""
    import io

    stream = io.BytesIO(data)
    message = read_message(stream)
    if message is None:
        raise ProtocolError("no message: the data is empty")
    if stream.tell() != len(data):
        raise ProtocolError(f"{len(data) - stream.tell()} bytes follow the message")
    return message


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ProtocolError(f"the header is not UTF-8: {error}") from None
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"the header is not JSON: {error}") from None


def _check_header(header: Any) -> None:
    if not isinstance(header, dict):
        raise ProtocolError(f"the header is a JSON {type(header).__name__}, not an object")
    if not isinstance(header.get("type"), str):
        raise ProtocolError('the header has no string "type"')


def _parse_array_specs(value: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The (name, shape) of each array an ``"arrays"`` list announces, checked."""
    if not isinstance(value, list):
        raise ProtocolError('"arrays" is not a list')
    specs: list[tuple[str, tuple[int, ...]]] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ProtocolError(f"arrays[{index}] is not an object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"arrays[{index}] has no name")
        if name in seen:
            raise ProtocolError(f"array {name!r} is listed twice")
        seen.add(name)
        if item.get("dtype") != "float32":
            raise ProtocolError(f"array {name!r} has dtype {item.get('dtype')!r}; float32 is the only dtype")
        shape = item.get("shape")
        if not isinstance(shape, list) or len(shape) > MAX_RANK:
            raise ProtocolError(f"array {name!r} has no valid shape (a list of at most {MAX_RANK} sizes)")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ProtocolError(f"array {name!r} has shape {shape!r}: sizes must be whole numbers ≥ 0")
        specs.append((name, tuple(shape)))
    return specs


def _split_body(body: bytearray, specs: list[tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """Views of the body, one per array (writable: the body is a bytearray owned by nobody else)."""
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, shape in specs:
        count = _element_count(shape)
        values = np.frombuffer(body, dtype=_FLOAT32_LE, count=count, offset=offset).reshape(shape)
        # Native float32: a no-op on little-endian machines, a byte swap elsewhere.
        arrays[name] = values.astype(np.float32, copy=False)
        offset += 4 * count
    return arrays


def _read_exact(stream: IO[bytes], size: int, *, allow_eof: bool = False) -> Optional[bytes]:
    """``size`` bytes, looping over short reads (pipes); None on EOF before the first byte if allowed."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            if allow_eof and remaining == size:
                return None
            raise ProtocolError(f"end of file inside a message ({size - remaining} of {size} bytes read)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_into(stream: IO[bytes], buffer: bytearray) -> None:
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            raise ProtocolError(f"end of file inside a message body ({filled} of {len(buffer)} bytes read)")
        filled += count


def _skip(stream: IO[bytes], size: int) -> None:
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, _SKIP_CHUNK))
        if not chunk:
            raise ProtocolError(f"end of file inside a message body ({size - remaining} of {size} bytes read)")
        remaining -= len(chunk)


# ---------------------------------------------------------------------------------------------------------
# Writing


def encode_message(header: Mapping[str, Any], arrays: Optional[Mapping[str, ArrayInput]] = None) -> bytes:
    """The bytes of one message. ``header["arrays"]`` is written from ``arrays`` (any given one is dropped).

    Raises ProtocolError, before anything is produced, for a header that is not JSON-serialisable or is too
    long, a value that is NaN or infinite (in the header or an array), an array that is not numeric, and an
    array name that is not a non-empty string.
    """
    if not isinstance(header.get("type"), str):
        raise ProtocolError('the header has no string "type"')
    encoded: list[tuple[str, np.ndarray]] = [(name, _float32_le(name, value)) for name, value in (arrays or {}).items()]
    full_header = dict(header)
    full_header.pop("arrays", None)
    if encoded:  # a message without arrays does not list any (§11.2)
        full_header["arrays"] = [
            {"name": name, "dtype": "float32", "shape": list(value.shape)} for name, value in encoded
        ]
    try:
        header_bytes = json.dumps(full_header, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise ProtocolError(f"the header cannot be written as JSON: {error}") from None
    if len(header_bytes) > MAX_HEADER:
        raise ProtocolError(f"the header is {len(header_bytes)} bytes, over the limit of {MAX_HEADER}")
    body_length = sum(value.nbytes for _, value in encoded)
    parts = [_PREFIX.pack(len(header_bytes), body_length), header_bytes]
    parts.extend(value.tobytes(order="C") for _, value in encoded)
    return b"".join(parts)


def write_message(
    stream: IO[bytes], header: Mapping[str, Any], arrays: Optional[Mapping[str, ArrayInput]] = None
) -> None:
    """Encode one message (see encode_message), write it whole and flush."""
    stream.write(encode_message(header, arrays))
    stream.flush()


def _float32_le(name: Any, value: ArrayInput) -> np.ndarray:
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"array name {name!r} is not a non-empty string")
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ProtocolError(f"array {name!r} has dtype {array.dtype}, not a real number type")
    if array.ndim > MAX_RANK:
        raise ProtocolError(f"array {name!r} has rank {array.ndim}, over {MAX_RANK}")
    with np.errstate(over="ignore", invalid="ignore"):
        converted = np.asarray(array, dtype=_FLOAT32_LE, order="C")  # (ascontiguousarray makes scalars 1-D)
    if not np.isfinite(converted).all():
        raise ProtocolError(f"array {name!r} holds a NaN or infinite value (after conversion to float32)")
    return converted


# ---------------------------------------------------------------------------------------------------------


def _element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)  # Python integers: no overflow on hostile shapes


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
