"""The y-websocket wire format, as much of it as the benchmark client needs.

Owns lib0 varuint framing of sync messages. Never does I/O.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "EMPTY_STATE_VECTOR",
    "EMPTY_UPDATE",
    "MessageType",
    "SyncStep",
    "decode_sync",
    "encode_sync",
    "encode_varuint",
    "update_origin",
]


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    QUERY_AWARENESS = 3


class SyncStep(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


EMPTY_STATE_VECTOR = b"\x00"
EMPTY_UPDATE = b"\x00\x00"


def encode_varuint(n: int) -> bytes:
    """Encode a non-negative integer as a lib0 varuint."""
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or oversized varuint")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7


def encode_sync(step: SyncStep, payload: bytes) -> bytes:
    """Frame a sync message: [0, step, varuint(len(payload)), payload]."""
    return bytes((MessageType.SYNC, step)) + encode_varuint(len(payload)) + payload


def decode_sync(data: bytes) -> tuple[int, bytes] | None:
    """Return (substep, payload) of a sync message, None for any other message type.

    Raises:
        ValueError: the message is truncated or its length prefix is wrong.
    """
    kind, pos = _read_varuint(data, 0)
    if kind != MessageType.SYNC:
        return None
    step, pos = _read_varuint(data, pos)
    size, pos = _read_varuint(data, pos)
    if pos + size != len(data):
        raise ValueError("sync payload length does not match the message")
    return step, data[pos:]


def update_origin(update: bytes) -> tuple[int, int] | None:
    """(client, clock) of a Yjs v1 update holding exactly one struct, else None.

    Used to recognise an edit a server re-encoded instead of forwarding its bytes.
    """
    try:
        groups, pos = _read_varuint(update, 0)
        if groups != 1:
            return None
        structs, pos = _read_varuint(update, pos)
        if structs != 1:
            return None
        client, pos = _read_varuint(update, pos)
        clock, pos = _read_varuint(update, pos)
    except ValueError:
        return None
    return client, clock
