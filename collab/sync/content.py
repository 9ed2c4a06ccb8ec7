"""The values inside Yjs item content: strings, buffers, JSON and lib0 ``Any``, bounded.

PURE: stdlib, ``collab.errors`` and ``collab.sync.varint`` only. The struct walk in
``validator`` calls these for each content value it meets; each checks one value at
``pos`` and returns the position after it, raising ``ProtocolError`` for what yrs must not
see (invalid UTF-8, JSON it cannot parse, counts beyond the data, nesting past
``MAX_DEPTH``) and ``IndexError`` when the data ends, which ``validator`` maps. The
reasons for each bound are in ``validator``'s docstring.
"""

from __future__ import annotations

import json

from collab.errors import ProtocolError
from collab.sync.varint import MAX_BYTES, read_minimal_uint as _uint

__all__ = ["MAX_DEPTH", "check_utf8", "read_string", "skip_any", "skip_buffer", "skip_json"]

MAX_DEPTH = 64  # nesting of Any arrays and maps, and of JSON in embeds and formats


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    """Read a length-prefixed UTF-8 string; yrs would not check the encoding."""
    start, end = _span(data, pos, "truncated string")
    try:
        return data[start:end].decode(), end
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8") from None


def skip_buffer(data: bytes, pos: int) -> int:
    """Skip a length-prefixed byte array; returns the position after it."""
    return _span(data, pos, "truncated buffer")[1]


def _span(data: bytes, pos: int, truncated: str) -> tuple[int, int]:
    """Where the length-prefixed bytes at ``pos`` start and end (``truncated``: the error
    when the data ends first). The one-byte length is read inline: nearly every one is."""
    length = data[pos]
    if length < 0x80:
        pos += 1
    else:
        length, pos = _uint(data, pos)
    end = pos + length
    if end > len(data):
        raise ProtocolError(truncated)
    return pos, end


def skip_json(data: bytes, pos: int) -> int:
    """Skip a JSON string (embeds, format values), refusing what yrs's parser could not take."""
    text, pos = read_string(data, pos)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("invalid JSON") from None
    _json_depth(value, 0)
    return pos


def _json_depth(value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProtocolError("JSON nested too deep")
    if isinstance(value, list):
        for item in value:
            _json_depth(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _json_depth(item, depth + 1)


def skip_any(data: bytes, pos: int, depth: int = 0) -> int:
    """Skip one lib0 ``writeAny`` value, checking tags, lengths, counts and depth."""
    tag = data[pos]
    pos += 1
    if tag >= 120:  # undefined, null, varint, float32, float64, bigint, false, true
        if tag == 125:  # a signed varint: sign and 6 bits first, then 7 bits a byte
            start = pos
            while data[pos] & 0x80:
                pos += 1
                if pos - start >= MAX_BYTES:
                    raise ProtocolError("varint too long")
            pos += 1
            if pos - start > 1 and data[pos - 1] == 0:
                raise ProtocolError("non-minimal varint")
        elif tag == 124:
            pos += 4
        elif tag == 123 or tag == 122:
            pos += 8
        if pos > len(data):
            raise ProtocolError("truncated number")
        return pos
    if tag == 119:
        return read_string(data, pos)[1]
    if tag == 116:
        return skip_buffer(data, pos)
    if tag == 118 or tag == 117:
        if depth >= MAX_DEPTH:
            raise ProtocolError("Any nested too deep")
        count = data[pos]
        if count < 0x80:
            pos += 1
        else:
            count, pos = _uint(data, pos)
        # Each entry takes at least one byte (two for a map's key and value): yrs reserves
        # room for ``count`` entries before reading any, so a lie here is an allocation abort.
        if count * (2 if tag == 118 else 1) > len(data) - pos:
            raise ProtocolError("Any count exceeds the data")
        # Scalars and short strings are read inline: arrays of small maps (a list of
        # records) are the common large Any content, and a call per value triples its cost.
        end = len(data)
        for _ in range(count):
            if tag == 118:
                length = data[pos]
                if length < 0x80:
                    start = pos + 1
                    pos = start + length
                    if pos > end:
                        raise ProtocolError("truncated string")
                    if not data[start:pos].isascii():
                        check_utf8(data[start:pos])
                else:
                    pos = read_string(data, pos)[1]
            value = data[pos]
            if value == 126 or value == 127 or value == 120 or value == 121:
                pos += 1
            elif value == 125 and data[pos + 1] < 0x80:
                pos += 2
            elif value == 119 and data[pos + 1] < 0x80:
                start = pos + 2
                pos = start + data[pos + 1]
                if pos > end:
                    raise ProtocolError("truncated string")
                if not data[start:pos].isascii():
                    check_utf8(data[start:pos])
            else:
                pos = skip_any(data, pos, depth + 1)
        return pos
    raise ProtocolError("unknown Any tag")


def check_utf8(chunk: bytes) -> None:
    """Refuse bytes that are not UTF-8 (yrs would take them unchecked)."""
    try:
        chunk.decode()
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8") from None
