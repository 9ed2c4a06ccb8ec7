"""The Hocuspocus wire format (``@hocuspocus/provider`` 2.x-4.x), with every bound checked.

PURE: no I/O, no asyncio, no endpoint. ``decode`` turns one WebSocket binary message into
a frozen message or raises ``ProtocolError``; the ``encode_*`` functions are its inverse
for everything a server sends. Learned from ueberdosis/hocuspocus (v4.5.0 source, checked
against the published provider 4.8.0): ``packages/provider/src/types.ts`` (``MessageType``),
``packages/server/src/types.ts`` (adds 4 and 6), ``packages/common/src/auth.ts``,
``packages/server/src/OutgoingMessage.ts`` and ``MessageReceiver.ts``,
``packages/provider/src/OutgoingMessages/*.ts``, ``HocuspocusProviderWebsocket.ts`` (ping)
and ``packages/common/src/routingKey.ts`` (session awareness).

A frame is the document name as a lib0 varString, a varuint message type, then the body:

====  ===================  ==========================================================
type  name                 body
====  ===================  ==========================================================
0     Sync                 a y-protocols sync message: varuint step (0 state vector,
                           1 update, 2 update) and a varUint8Array, exactly what
                           ``protocol`` reads after its own type byte
1     Awareness            a varUint8Array awareness update (y-protocols format)
2     Auth                 varuint sub-type: 0 token (client: varString token, then
                           in 4.x a varString provider version; server: nothing, a
                           "send your token again" request), 1 permission denied
                           (varString reason), 2 authenticated (varString scope,
                           ``readonly`` or ``read-write``)
3     QueryAwareness       nothing
4     SyncReply            as Sync, but answering it sends no SyncStep1 back (server)
5     Stateless            a varString payload
6     BroadcastStateless   a varString payload; server-internal (Redis fan-out), a
                           Hocuspocus server refuses it from a client
7     Close                client: nothing (asks the server to close); server: a
                           varString reason
8     SyncStatus           varuint 1 (update applied) or 0 (refused, read-only);
                           the provider reads it as a signed varInt, the same bytes
9/10  Ping / Pong          connection level, 4.x only: the single byte 9 or 10 with
                           no document name (the provider checks ``length == 1``)
====  ===================  ==========================================================

Versions: 2.x and 3.x have the same numbers for 0-8 but no Ping/Pong and no provider
version after the token; the 4.x server reads that version only when bytes remain, so
both token forms decode here. 4.x ``sessionAwareness`` writes ``name\\0sessionId`` as the
document name (split at the first NUL); this module splits it into ``Address.document``
and ``Address.session`` and joins it back byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from collab.errors import ProtocolError
from collab.sync.protocol import (
    AwarenessUpdate,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_sync,
    encode_sync as encode_sync_body,
)
from collab.sync.varint import expect_end, read_bytes, read_string, read_uint, write_uint

__all__ = [
    "Address",
    "Auth",
    "AuthToken",
    "Authenticated",
    "Awareness",
    "BroadcastStateless",
    "Close",
    "HocuspocusMessage",
    "MessageType",
    "PermissionDenied",
    "Ping",
    "Pong",
    "QueryAwareness",
    "Scope",
    "Stateless",
    "Sync",
    "SyncStatus",
    "TokenRequest",
    "UnknownMessageType",
    "address_of",
    "decode",
    "encode_authenticated",
    "encode_awareness",
    "encode_broadcast_stateless",
    "encode_close",
    "encode_permission_denied",
    "encode_ping",
    "encode_pong",
    "encode_query_awareness",
    "encode_stateless",
    "encode_sync",
    "encode_sync_status",
    "encode_sync_step1",
    "encode_sync_step2",
    "encode_token",
    "encode_token_request",
    "encode_update",
    "route",
]

SESSION_SEPARATOR = "\0"


class MessageType(IntEnum):
    """Hocuspocus message types (server ``types.ts``; the provider lacks 4 and 6)."""

    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3
    SYNC_REPLY = 4
    STATELESS = 5
    BROADCAST_STATELESS = 6
    CLOSE = 7
    SYNC_STATUS = 8
    PING = 9
    PONG = 10


class Auth(IntEnum):
    """Sub-types of an AUTH message (common ``auth.ts`` ``AuthMessageType``)."""

    TOKEN = 0
    PERMISSION_DENIED = 1
    AUTHENTICATED = 2


class Scope(StrEnum):
    """What an authenticated connection may do."""

    READ_ONLY = "readonly"
    READ_WRITE = "read-write"


class UnknownMessageType(ProtocolError):
    """A well-framed message whose type (or auth sub-type) this codec does not know.

    ``type`` is the number read and ``address`` the document it was sent for, so an
    endpoint can log it, and ignore it or close, knowing the frame itself was sound.
    """

    def __init__(self, address: Address, type: int) -> None:
        super().__init__(f"unknown message type {type}")
        self.address = address
        self.type = type


@dataclass(frozen=True, slots=True)
class Address:
    """Which document (and, with 4.x session awareness, which provider session) a frame is for."""

    document: str
    session: str | None = None

    @property
    def key(self) -> str:
        """The name as written on the wire: ``document`` or ``document\\0session``."""
        if self.session is None:
            return self.document
        return self.document + SESSION_SEPARATOR + self.session


@dataclass(frozen=True, slots=True)
class Sync:
    """A y-protocols sync message; ``reply`` for type 4 (asks for no SyncStep1 back)."""

    address: Address
    body: SyncStep1 | SyncStep2 | SyncUpdate
    reply: bool = False


@dataclass(frozen=True, slots=True)
class Awareness:
    """An awareness update, framed and parsed as in ``protocol``."""

    address: Address
    update: AwarenessUpdate


@dataclass(frozen=True, slots=True)
class AuthToken:
    """A client's token; ``provider_version`` is sent by 4.x providers only."""

    address: Address
    token: str
    provider_version: str | None = None


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The server asks the provider to send its token again."""

    address: Address


@dataclass(frozen=True, slots=True)
class PermissionDenied:
    """The server refused the token."""

    address: Address
    reason: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The server accepted the token with this scope."""

    address: Address
    scope: Scope


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    """A request for every awareness state of the document."""

    address: Address


@dataclass(frozen=True, slots=True)
class Stateless:
    """An application payload that is not part of the document."""

    address: Address
    payload: str


@dataclass(frozen=True, slots=True)
class BroadcastStateless:
    """A stateless payload for every connection (server-internal in Hocuspocus)."""

    address: Address
    payload: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close this document's connection; ``reason`` is ``None`` when the provider asks."""

    address: Address
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """Whether the server applied (and will store) the client's last update."""

    address: Address
    applied: bool


@dataclass(frozen=True, slots=True)
class Ping:
    """A connection-level keepalive from the server (4.x); no document."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The provider's answer to a Ping (4.x); no document."""


HocuspocusMessage = (
    Sync
    | Awareness
    | AuthToken
    | TokenRequest
    | PermissionDenied
    | Authenticated
    | QueryAwareness
    | Stateless
    | BroadcastStateless
    | Close
    | SyncStatus
    | Ping
    | Pong
)

_PING = bytes((MessageType.PING,))
_PONG = bytes((MessageType.PONG,))


def _write_string(text: str) -> bytes:
    # A str with a lone surrogate raises UnicodeEncodeError: decode never produces one.
    raw = text.encode("utf-8")
    return write_uint(len(raw)) + raw


def _decode_address(key: str) -> Address:
    document, separator, session = key.partition(SESSION_SEPARATOR)
    return Address(document, session if separator else None)


def decode(data: bytes) -> HocuspocusMessage:
    """Decode one WebSocket binary message.

    Args:
        data: the whole message as received.

    Returns:
        The message. Yjs updates are only framed here, not parsed (``validator`` does that).

    Raises:
        UnknownMessageType: a message type or auth sub-type this codec does not know.
        ProtocolError: any other framing error: truncation, trailing bytes, a bad varint,
            invalid UTF-8, a bad awareness update, scope or sync status (close code 1007).
    """
    # A one-byte frame cannot hold a name and a type; 4.x uses exactly these for keepalive.
    if data == _PING:
        return Ping()
    if data == _PONG:
        return Pong()
    key, pos = read_string(data, 0)
    address = _decode_address(key)
    kind, pos = read_uint(data, pos)
    message: HocuspocusMessage
    if kind == MessageType.SYNC or kind == MessageType.SYNC_REPLY:
        body, pos = decode_sync(data, pos)
        message = Sync(address, body, reply=kind == MessageType.SYNC_REPLY)
    elif kind == MessageType.AWARENESS:
        payload, pos = read_bytes(data, pos)
        message = Awareness(address, AwarenessUpdate(payload, decode_awareness(payload)))
    elif kind == MessageType.AUTH:
        message, pos = _decode_auth(address, data, pos)
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwareness(address)
    elif kind == MessageType.STATELESS:
        text, pos = read_string(data, pos)
        message = Stateless(address, text)
    elif kind == MessageType.BROADCAST_STATELESS:
        text, pos = read_string(data, pos)
        message = BroadcastStateless(address, text)
    elif kind == MessageType.CLOSE:
        reason = None
        if pos < len(data):
            reason, pos = read_string(data, pos)
        message = Close(address, reason)
    elif kind == MessageType.SYNC_STATUS:
        status, pos = read_uint(data, pos)
        if status > 1:
            raise ProtocolError("sync status must be 0 or 1")
        message = SyncStatus(address, status == 1)
    else:
        # Ping and Pong with a document name are not what any version sends either.
        raise UnknownMessageType(address, kind)
    expect_end(data, pos)
    return message


def route(data: bytes) -> tuple[str, int, int]:
    """Where a frame goes, without decoding its body: the relay's hot path.

    Returns:
        The address as written on the wire (``Address.key``), the message type, and the
        index of the type in ``data``. For Sync (0), Awareness (1) and QueryAwareness
        (3) ``data[index:]`` is byte for byte the y-websocket message of the same kind,
        so the relay validates and relays it exactly as one from ``/ws``.

    Raises:
        ProtocolError: no complete address and type (a bad varint, truncation, invalid
            UTF-8). Ping and Pong have neither: check for them first (``decode``).
    """
    key, pos = read_string(data, 0)
    kind, end = read_uint(data, pos)
    if end != pos + 1:  # every type is below 128: a longer varint is not a frame we know
        raise UnknownMessageType(_decode_address(key), kind)
    return key, kind, pos


def address_of(key: str) -> Address:
    """The ``Address`` a wire key (``route``'s first value) names."""
    return _decode_address(key)


def _decode_auth(
    address: Address, data: bytes, pos: int
) -> tuple[AuthToken | TokenRequest | PermissionDenied | Authenticated, int]:
    sub, pos = read_uint(data, pos)
    if sub == Auth.TOKEN:
        if pos == len(data):
            return TokenRequest(address), pos
        token, pos = read_string(data, pos)
        version = None
        if pos < len(data):
            version, pos = read_string(data, pos)
        return AuthToken(address, token, version), pos
    if sub == Auth.PERMISSION_DENIED:
        reason, pos = read_string(data, pos)
        return PermissionDenied(address, reason), pos
    if sub == Auth.AUTHENTICATED:
        scope, pos = read_string(data, pos)
        try:
            return Authenticated(address, Scope(scope)), pos
        except ValueError:
            raise ProtocolError("unknown auth scope") from None
    raise UnknownMessageType(address, sub)


def _frame(address: Address, kind: MessageType, *body: bytes) -> bytes:
    return b"".join((_write_string(address.key), bytes((kind,)), *body))


def encode_sync(
    address: Address, body: SyncStep1 | SyncStep2 | SyncUpdate, reply: bool = False
) -> bytes:
    """Encode a Sync (or, with ``reply``, a SyncReply) message carrying ``body``."""
    kind = MessageType.SYNC_REPLY if reply else MessageType.SYNC
    return encode_sync_body(body, _frame(address, kind))


def encode_sync_step1(address: Address, state_vector: bytes) -> bytes:
    """Encode a SyncStep1 carrying ``state_vector``."""
    return encode_sync(address, SyncStep1(state_vector))


def encode_sync_step2(address: Address, update: bytes) -> bytes:
    """Encode a SyncStep2 carrying ``update``."""
    return encode_sync(address, SyncStep2(update))


def encode_update(address: Address, update: bytes) -> bytes:
    """Encode an incremental update."""
    return encode_sync(address, SyncUpdate(update))


def encode_awareness(address: Address, payload: bytes) -> bytes:
    """Encode an awareness message around a raw awareness update (``AwarenessUpdate.payload``)."""
    return _frame(address, MessageType.AWARENESS, write_uint(len(payload)), payload)


def encode_token(address: Address, token: str, provider_version: str | None = None) -> bytes:
    """Encode a client's token message (what a provider sends; for tests and clients)."""
    version = b"" if provider_version is None else _write_string(provider_version)
    return _frame(address, MessageType.AUTH, bytes((Auth.TOKEN,)), _write_string(token), version)


def encode_token_request(address: Address) -> bytes:
    """Encode a request for the provider to send its token again."""
    return _frame(address, MessageType.AUTH, bytes((Auth.TOKEN,)))


def encode_permission_denied(address: Address, reason: str) -> bytes:
    """Encode a refusal of the token with ``reason``."""
    return _frame(
        address, MessageType.AUTH, bytes((Auth.PERMISSION_DENIED,)), _write_string(reason)
    )


def encode_authenticated(address: Address, scope: Scope) -> bytes:
    """Encode an acceptance of the token with ``scope``."""
    return _frame(address, MessageType.AUTH, bytes((Auth.AUTHENTICATED,)), _write_string(scope))


def encode_query_awareness(address: Address) -> bytes:
    """Encode a query for every awareness state."""
    return _frame(address, MessageType.QUERY_AWARENESS)


def encode_stateless(address: Address, payload: str) -> bytes:
    """Encode a stateless message."""
    return _frame(address, MessageType.STATELESS, _write_string(payload))


def encode_broadcast_stateless(address: Address, payload: str) -> bytes:
    """Encode a broadcast-stateless message (server to server only, as in Hocuspocus)."""
    return _frame(address, MessageType.BROADCAST_STATELESS, _write_string(payload))


def encode_close(address: Address, reason: str | None = None) -> bytes:
    """Encode a close message; the server sends a ``reason``, the provider none."""
    return _frame(address, MessageType.CLOSE, b"" if reason is None else _write_string(reason))


def encode_sync_status(address: Address, applied: bool) -> bytes:
    """Encode whether the client's last update was applied."""
    return _frame(address, MessageType.SYNC_STATUS, b"\x01" if applied else b"\x00")


def encode_ping() -> bytes:
    """Encode a connection-level Ping (4.x providers only; older ones ignore or log it)."""
    return _PING


def encode_pong() -> bytes:
    """Encode a connection-level Pong."""
    return _PONG
