"""Reading and writing lib0's variable-length integers and length-prefixed bytes.

PURE: bytes in, numbers out; stdlib and ``collab.errors`` only. Every format collab reads
from clients or from yrs (the y-websocket framing in ``protocol``, Yjs v1 updates and
state vectors in ``validator``, ``update`` and ``tree``) counts in lib0 varints: 7 bits a
byte, low bits first, the high bit set on every byte but the last (lib0 ``decoding.js``
``readVarUint``). This module is the one place that reads them, with one set of bounds:

* at most ``MAX_BYTES`` (8) bytes and at most ``MAX_UINT`` (2**53 - 1): lib0 reads them
  into JavaScript numbers, so nothing larger round-trips;
* running off the end of the data is a ``ProtocolError`` from ``read_uint`` (never an
  ``IndexError``); ``read_minimal_uint`` and ``Reader`` serve walkers that read most bytes
  inline and map ``IndexError`` to their own error;
* ``read_minimal_uint`` also refuses a varint written with more bytes than needed, which
  lib0 reads but the validator refuses (see ``validator``).

The reads are unrolled, and callers on a hot path read one-byte varints inline and call
here for the rest: a loop costs 30% more, and a call per one-byte varint doubles the cost
of checking a keystroke's update.
"""

from __future__ import annotations

from collab.errors import ProtocolError

__all__ = [
    "MAX_BYTES",
    "MAX_UINT",
    "Reader",
    "expect_end",
    "read_bytes",
    "read_minimal_uint",
    "read_string",
    "read_uint",
    "write_uint",
]

MAX_UINT = 2**53 - 1
MAX_BYTES = 8


def write_uint(num: int) -> bytes:
    """Encode a non-negative integer as a lib0 varint, in the fewest bytes.

    Raises:
        ValueError: ``num`` is negative.
    """
    if num < 0:
        raise ValueError("varint must be non-negative")
    if num < 0x80:
        return bytes((num,))
    out = bytearray()
    while num > 0x7F:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)
    return bytes(out)


def read_uint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a lib0 varint at ``pos``, in any of the encodings lib0 reads.

    Returns:
        The value and the position just after it.

    Raises:
        ProtocolError: truncated, longer than 8 bytes, or above 2**53 - 1.
    """
    try:
        byte = data[pos]
        if byte < 0x80:
            return byte, pos + 1
        return _read_long(data, pos)
    except IndexError:
        raise ProtocolError("truncated varint") from None


def read_minimal_uint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a varint as ``read_uint`` does, refusing one written with more bytes than needed.

    For walkers that read most bytes inline (``validator``): like their own reads, this
    raises ``IndexError`` when the data ends, so that one handler names what was cut short.

    Raises:
        ProtocolError: longer than 8 bytes, above 2**53 - 1, or a redundant zero byte.
        IndexError: the data ends inside the varint.
    """
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    value, end = _read_long(data, pos)
    # Only the last byte of a varint can be redundant: a zero after a continuation bit.
    if not data[end - 1]:
        raise ProtocolError("non-minimal varint")
    return value, end


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` whose first byte has the continuation bit (IndexError if cut)."""
    value = data[pos] & 0x7F
    byte = data[pos + 1]
    value |= (byte & 0x7F) << 7
    if byte < 0x80:
        return value, pos + 2
    byte = data[pos + 2]
    value |= (byte & 0x7F) << 14
    if byte < 0x80:
        return value, pos + 3
    byte = data[pos + 3]
    value |= (byte & 0x7F) << 21
    if byte < 0x80:
        return value, pos + 4
    byte = data[pos + 4]
    value |= (byte & 0x7F) << 28
    if byte < 0x80:
        return value, pos + 5
    byte = data[pos + 5]
    value |= (byte & 0x7F) << 35
    if byte < 0x80:
        return value, pos + 6
    byte = data[pos + 6]
    value |= (byte & 0x7F) << 42
    if byte < 0x80:
        return value, pos + 7
    byte = data[pos + 7]
    value |= (byte & 0x7F) << 49
    if byte < 0x80:
        if value > MAX_UINT:
            raise ProtocolError("varint out of range")
        return value, pos + 8
    raise ProtocolError("varint too long")


def read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """Read a varint length, then that many bytes.

    Raises:
        ProtocolError: the length is not a valid varint, or the data ends first.
    """
    length, pos = read_uint(data, pos)
    end = pos + length
    if end > len(data):
        raise ProtocolError("truncated payload")
    return data[pos:end], end


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    """Read a varint length, then that many bytes of UTF-8 (lib0's ``readVarString``).

    Raises:
        ProtocolError: a bad length, the data ends first, or the bytes are not UTF-8.
    """
    raw, pos = read_bytes(data, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise ProtocolError("string is not UTF-8") from None


def expect_end(data: bytes, pos: int) -> None:
    """A message must end where its last field does.

    Raises:
        ProtocolError: bytes are left after ``pos``.
    """
    if pos != len(data):
        raise ProtocolError("trailing bytes after message")


class Reader:
    """A cursor over trusted lib0 data (stored updates, yrs's own state), for walking it.

    Its reads raise ``ProtocolError`` on a bad varint and ``IndexError`` when a single
    byte is read past the end; callers map both to their own error.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        """Read a varint (``read_uint``)."""
        pos = self.pos
        byte = self.data[pos]
        if byte < 0x80:  # nearly every varint in an update is one byte
            self.pos = pos + 1
            return byte
        value, self.pos = read_uint(self.data, pos)
        return value

    def skip_bytes(self) -> int:
        """Skip a length-prefixed byte array; returns its length."""
        length = self.uint()
        self.pos += length
        if self.pos > len(self.data):
            raise IndexError("truncated")
        return length

    def string(self) -> str:
        """Read a length-prefixed UTF-8 string (``UnicodeDecodeError`` if it is not)."""
        length = self.uint()
        start = self.pos
        self.pos = start + length
        if self.pos > len(self.data):
            raise IndexError("truncated")
        return self.data[start : self.pos].decode("utf-8")

    def skip_any(self) -> None:
        """Skip one lib0 ``writeAny`` value: a type tag, then the value."""
        tag = self.data[self.pos]
        self.pos += 1
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:  # a signed varint: only its continuation bits matter here
            while self.data[self.pos] & 0x80:
                self.pos += 1
            self.pos += 1
        elif tag == 124:
            self.pos += 4
        elif tag in (123, 122):
            self.pos += 8
        elif tag in (119, 116):  # string, Uint8Array
            self.skip_bytes()
        elif tag == 118:  # object
            for _ in range(self.uint()):
                self.skip_bytes()
                self.skip_any()
        elif tag == 117:  # array
            for _ in range(self.uint()):
                self.skip_any()
        else:
            raise ValueError(f"unknown Any tag {tag}")
