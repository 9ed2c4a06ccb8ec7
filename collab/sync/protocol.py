"""The y-websocket wire format, with every bound checked.

PURE: no I/O, no asyncio. ``decode`` turns one WebSocket binary message into a frozen
``Message`` or raises ``ProtocolError``; the ``encode_*`` functions are its inverse. The
format is y-protocols' (lib0 encoding): a varint message type, then for sync messages a
varint sub-type and a length-prefixed payload, for awareness a length-prefixed awareness
update (count, then client id, clock and a JSON string per client).

pycrdt's own ``Decoder`` raises ``IndexError`` on a truncated varint and returns short
slices silently, which is why this module reads with ``collab.sync.varint`` instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from collab.errors import ProtocolError
from collab.sync.varint import expect_end, read_bytes, read_uint, write_uint

__all__ = [
    "EMPTY_UPDATE",
    "AwarenessEntry",
    "AwarenessUpdate",
    "Message",
    "MessageType",
    "QueryAwareness",
    "SyncStep",
    "SyncStep1",
    "SyncStep2",
    "SyncMessage",
    "SyncUpdate",
    "Unknown",
    "decode",
    "decode_awareness",
    "decode_sync",
    "encode_awareness",
    "encode_query_awareness",
    "encode_sync",
    "encode_sync_step1",
    "encode_sync_step2",
    "encode_update",
    "read_var_uint",
    "update_payload",
    "write_var_uint",
]

# The names this module had before ``collab.sync.varint`` held the one varint reader.
read_var_uint = read_uint
write_var_uint = write_uint

EMPTY_UPDATE = b"\x00\x00"  # a Yjs v1 update with no structs and an empty delete set


class MessageType(IntEnum):
    """Top-level y-websocket message types."""

    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncStep(IntEnum):
    """Sub-types of a SYNC message (y-protocols ``sync.js``)."""

    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """A peer's state vector: "send me what I lack"."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """The answer to a SyncStep1: every update the asker lacked, as one Yjs update."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """An incremental Yjs update."""

    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness state; ``state`` is ``None`` when the client went away."""

    client_id: int
    clock: int
    state: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AwarenessUpdate:
    """An awareness update: ``payload`` is the raw inner update, ``entries`` its parse."""

    payload: bytes
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for every awareness state the server knows."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message type this server does not handle; ignored, never relayed."""

    type: int


Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessUpdate | QueryAwareness | Unknown


SyncMessage = SyncStep1 | SyncStep2 | SyncUpdate
_SYNC = bytes((MessageType.SYNC,))


def decode_sync(data: bytes, pos: int) -> tuple[SyncMessage, int]:
    """Read a sync message's body (sub-type, then the length-prefixed payload) at ``pos``:
    what follows the message type here and in the Hocuspocus codec.

    Raises:
        ProtocolError: bad framing or an unknown sub-type.
    """
    step, pos = read_uint(data, pos)
    payload, pos = read_bytes(data, pos)
    if step == SyncStep.UPDATE:
        return SyncUpdate(payload), pos
    if step == SyncStep.STEP1:
        return SyncStep1(payload), pos
    if step == SyncStep.STEP2:
        return SyncStep2(payload), pos
    raise ProtocolError(f"unknown sync step {step}")


def encode_sync(body: SyncMessage, head: bytes = b"") -> bytes:
    """``head`` (the framing before it), then a sync message's body: ``decode_sync``'s
    inverse. One join, so a large step 2 is copied once."""
    if type(body) is SyncStep1:
        step, payload = SyncStep.STEP1, body.state_vector
    elif type(body) is SyncStep2:
        step, payload = SyncStep.STEP2, body.update
    else:
        assert isinstance(body, SyncUpdate)
        step, payload = SyncStep.UPDATE, body.update
    return b"".join((head, bytes((step,)), write_uint(len(payload)), payload))


def decode(data: bytes) -> Message:
    """Decode one WebSocket binary message.

    Args:
        data: the whole message as received.

    Returns:
        The message. Yjs update payloads are only framed here, not parsed: the document
        rejects invalid ones when they are applied.

    Raises:
        ProtocolError: on any framing error (close code 1007).
    """
    kind, pos = read_uint(data, 0)
    if kind == MessageType.SYNC:
        body, pos = decode_sync(data, pos)
        expect_end(data, pos)
        return body
    if kind == MessageType.AWARENESS:
        payload, pos = read_bytes(data, pos)
        expect_end(data, pos)
        return AwarenessUpdate(payload, decode_awareness(payload))
    if kind == MessageType.QUERY_AWARENESS:
        return QueryAwareness()
    return Unknown(kind)


def update_payload(data: bytes) -> bytes | None:
    """The Yjs update in ``data`` if it is a well-framed SyncUpdate message, else ``None``.

    The relay's hot path: nearly every message is an update, and this checks its framing
    as ``decode`` does without building a ``SyncUpdate``. ``None`` means "decode it":
    another message type, a type or sub-type written with a longer varint than needed,
    or bad framing, for which ``decode`` raises the usual ``ProtocolError``.

    Raises:
        ProtocolError: the payload's length varint is invalid (as ``decode`` would).
    """
    end = len(data)
    # Message type 0 (sync) then sub-type 2 (update), each a one-byte varint. (Plain ints:
    # comparing with the IntEnum members costs more than the rest of this function.)
    if end < 3 or data[0] != 0 or data[1] != 2:
        return None
    length = data[2]
    pos = 3
    if length > 0x7F:  # a payload of 128 bytes or more: a longer varint
        length, pos = read_uint(data, 2)
    if pos + length != end:
        return None  # truncated, or trailing bytes: decode says which
    return data[pos:]


def decode_awareness(payload: bytes) -> tuple[AwarenessEntry, ...]:
    """Parse an awareness update (y-protocols ``awareness.js`` format).

    Raises:
        ProtocolError: bad framing, invalid UTF-8 or JSON, or a state that is neither an
            object nor null.
    """
    count, pos = read_uint(payload, 0)
    # Each entry takes at least 3 bytes; a count beyond that is a lie, not a big update.
    if count * 3 > len(payload) - pos:
        raise ProtocolError("awareness entry count exceeds payload")
    entries = []
    for _ in range(count):
        client_id, pos = read_uint(payload, pos)
        clock, pos = read_uint(payload, pos)
        raw, pos = read_bytes(payload, pos)
        try:
            state = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            # RecursionError: JSON nested deeper than Python's parser goes.
            raise ProtocolError("awareness state is not JSON") from exc
        if state is not None and not isinstance(state, dict):
            raise ProtocolError("awareness state must be an object or null")
        entries.append(AwarenessEntry(client_id, clock, state))
    expect_end(payload, pos)
    return tuple(entries)


def encode_sync_step1(state_vector: bytes) -> bytes:
    """Encode a SyncStep1 message carrying ``state_vector``."""
    return encode_sync(SyncStep1(state_vector), _SYNC)


def encode_sync_step2(update: bytes) -> bytes:
    """Encode a SyncStep2 message carrying ``update``."""
    return encode_sync(SyncStep2(update), _SYNC)


def encode_update(update: bytes) -> bytes:
    """Encode a SyncUpdate message carrying ``update``."""
    return encode_sync(SyncUpdate(update), _SYNC)


def encode_awareness(entries: list[AwarenessEntry] | tuple[AwarenessEntry, ...]) -> bytes:
    """Encode an awareness message with the given entries (``None`` state means removed)."""
    parts = [write_uint(len(entries))]
    for entry in entries:
        state = json.dumps(entry.state, separators=(",", ":")).encode()
        parts += (write_uint(entry.client_id), write_uint(entry.clock))
        parts += (write_uint(len(state)), state)
    payload = b"".join(parts)
    return b"".join((bytes((MessageType.AWARENESS,)), write_uint(len(payload)), payload))


def encode_query_awareness() -> bytes:
    """Encode a query-awareness message (asks for every awareness state)."""
    return bytes((MessageType.QUERY_AWARENESS,))
