"""The Hocuspocus codec: every message round-trips, every bound is checked, and the frames
a real ``@hocuspocus/provider`` 4.x sends decode and re-encode byte for byte."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from collab.errors import ProtocolError
from collab.sync.hocuspocus import (
    Address,
    Authenticated,
    AuthToken,
    Awareness,
    BroadcastStateless,
    Close,
    HocuspocusMessage,
    PermissionDenied,
    Ping,
    Pong,
    QueryAwareness,
    Scope,
    Stateless,
    Sync,
    SyncStatus,
    TokenRequest,
    UnknownMessageType,
    decode,
    encode_authenticated,
    encode_awareness,
    encode_broadcast_stateless,
    encode_close,
    encode_permission_denied,
    encode_ping,
    encode_pong,
    encode_query_awareness,
    encode_stateless,
    encode_sync,
    encode_sync_status,
    encode_sync_step1,
    encode_sync_step2,
    encode_token,
    encode_token_request,
    encode_update,
)
from collab.sync.protocol import (
    AwarenessEntry,
    AwarenessUpdate,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    encode_awareness as encode_yws_awareness,
)
from collab.sync.varint import read_bytes
from tests.jsclient import JS_DIR, require_node


def encode(message: HocuspocusMessage) -> bytes:
    """Encode any message with the encoder for its kind (the inverse of ``decode``)."""
    match message:
        case Sync(address, body, reply):
            return encode_sync(address, body, reply)
        case Awareness(address, update):
            return encode_awareness(address, update.payload)
        case AuthToken(address, token, version):
            return encode_token(address, token, version)
        case TokenRequest(address):
            return encode_token_request(address)
        case PermissionDenied(address, reason):
            return encode_permission_denied(address, reason)
        case Authenticated(address, scope):
            return encode_authenticated(address, scope)
        case QueryAwareness(address):
            return encode_query_awareness(address)
        case Stateless(address, payload):
            return encode_stateless(address, payload)
        case BroadcastStateless(address, payload):
            return encode_broadcast_stateless(address, payload)
        case Close(address, reason):
            return encode_close(address, reason)
        case SyncStatus(address, applied):
            return encode_sync_status(address, applied)
        case Ping():
            return encode_ping()
        case Pong():
            return encode_pong()
    raise AssertionError(message)


# Lengths where a varint length changes form (1, 2, 3, 4 bytes), on both sides.
BOUNDARIES = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21]


def _sized_text(size: int) -> st.SearchStrategy[str]:
    return st.sampled_from(["a" * size, "é" * (size // 2) + "a" * (size % 2)])


texts = st.one_of(
    st.text(max_size=20),  # unicode, NULs included
    st.sampled_from(BOUNDARIES).flatmap(_sized_text),
)
payloads = st.one_of(
    st.binary(max_size=20), st.sampled_from(BOUNDARIES).map(lambda n: b"\x01" * n)
)
addresses = st.builds(
    Address,
    document=texts.map(lambda t: t.replace("\0", "")),
    session=st.none() | texts,
)
entries = st.lists(
    st.builds(
        AwarenessEntry,
        client_id=st.integers(0, 2**53 - 1),
        clock=st.integers(0, 2**32),
        state=st.none() | st.dictionaries(st.text(max_size=5), st.integers() | st.text()),
    ),
    max_size=3,
)


def _awareness(address: Address, items: list[AwarenessEntry]) -> Awareness:
    # ``protocol.encode_awareness`` writes [type 1, varint length, payload].
    payload, _ = read_bytes(encode_yws_awareness(items), 1)
    return Awareness(address, AwarenessUpdate(payload, decode_awareness(payload)))


bodies = st.one_of(
    st.builds(SyncStep1, payloads), st.builds(SyncStep2, payloads), st.builds(SyncUpdate, payloads)
)
messages: st.SearchStrategy[HocuspocusMessage] = st.one_of(
    st.builds(Sync, addresses, bodies, st.booleans()),
    st.builds(_awareness, addresses, entries),
    st.builds(AuthToken, addresses, texts, st.none() | texts),
    st.builds(TokenRequest, addresses),
    st.builds(PermissionDenied, addresses, texts),
    st.builds(Authenticated, addresses, st.sampled_from(Scope)),
    st.builds(QueryAwareness, addresses),
    st.builds(Stateless, addresses, texts),
    st.builds(BroadcastStateless, addresses, texts),
    st.builds(Close, addresses, st.none() | texts),
    st.builds(SyncStatus, addresses, st.booleans()),
    st.just(Ping()),
    st.just(Pong()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_every_message_round_trips(message: HocuspocusMessage) -> None:
    """Each message kind, with names and payloads across varint size boundaries, decodes to
    itself after encoding, and re-encodes to the same bytes."""
    data = encode(message)
    assert decode(data) == message
    assert encode(decode(data)) == data


def test_token_request_and_empty_token_differ() -> None:
    """An auth token sub-type with nothing after it is the server's token request; with an
    empty string it is a client's empty token."""
    address = Address("d")
    assert decode(encode_token_request(address)) == TokenRequest(address)
    assert decode(encode_token(address, "")) == AuthToken(address, "")


SAMPLES = [
    encode_sync_step1(Address("doc", "s"), b"\x01\x02\x03"),
    encode_sync_step2(Address("é"), b"\x00\x00"),
    encode_update(Address("doc"), b"\x00\x00"),
    encode_awareness(Address("doc"), encode_yws_awareness([AwarenessEntry(1, 2, {})])[2:]),
    encode_token(Address("doc"), "tok", "4.8.0"),
    encode_permission_denied(Address("doc"), "no"),
    encode_authenticated(Address("doc"), Scope.READ_ONLY),
    encode_stateless(Address("doc"), "{}"),
    encode_close(Address("doc"), "bye"),
    encode_sync_status(Address("doc"), True),
]


@pytest.mark.parametrize("data", SAMPLES)
def test_truncation_at_every_byte_and_trailing_bytes_raise(data: bytes) -> None:
    """Every proper prefix of a valid frame (except the one-byte Ping/Pong frames and an
    optional trailing field's absence) and every frame with a byte appended raise
    ``ProtocolError``, never another exception."""
    decode(data)
    for cut in range(len(data)):
        try:
            message = decode(data[:cut])
        except ProtocolError:
            continue
        # A shorter frame that still decodes drops an optional trailing field: it must be
        # a different, valid message that re-encodes to exactly those bytes.
        assert encode(message) == data[:cut]
        assert isinstance(message, AuthToken | TokenRequest | Close | Ping | Pong)
    with pytest.raises(ProtocolError, match="trailing"):
        decode(data + b"\x00")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x02\xff\xfe\x05", "UTF-8"),
        (b"\x01d\x05\x02\xff\xfe", "UTF-8"),
        (b"\x01d\x02\x02\x05admin", "scope"),
        (b"\x01d\x08\x02", "sync status"),
        (b"\x01d\x00\x03\x00", "sync step"),
        (b"\x01d\x01\x02\x05\x00", "awareness"),
        (b"\x01d\x01", "truncated"),
    ],
)
def test_malformed_frames_raise_protocol_error(data: bytes, error: str) -> None:
    """Invalid UTF-8, an unknown scope, sync status or sync step, a bad awareness update
    and truncation each raise ``ProtocolError`` saying which."""
    with pytest.raises(ProtocolError, match=error):
        decode(data)


@pytest.mark.parametrize(
    ("data", "kind"), [(b"\x01d\x0b", 11), (b"\x01d\x09", 9), (b"\x01d\x02\x07", 7)]
)
def test_unknown_types_raise_their_own_error(data: bytes, kind: int) -> None:
    """An unknown message type (or Ping/Pong with a name, or an unknown auth sub-type)
    raises ``UnknownMessageType`` with the type and address, a ``ProtocolError``."""
    with pytest.raises(UnknownMessageType) as info:
        decode(data)
    assert info.value.type == kind
    assert info.value.address == Address("d")
    assert info.value.close_code == 1007


def test_session_address_splits_at_the_first_nul() -> None:
    """``name\\0session`` splits at the first NUL and joins back byte for byte."""
    data = encode_query_awareness(Address("a", "b\0c"))
    assert data == b"\x05a\0b\0c\x03"
    assert decode(data) == QueryAwareness(Address("a", "b\0c"))
    assert decode(b"\x02a\0\x03") == QueryAwareness(Address("a", ""))


async def _provider_frames() -> dict[str, list[bytes]]:
    node = require_node()
    process = await asyncio.create_subprocess_exec(
        node, str(JS_DIR / "hocuspocus_frames.mjs"), stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0
    frames = json.loads(out)
    return {side: [bytes.fromhex(h) for h in frames[side]] for side in ("sent", "received")}


async def test_real_provider_frames_decode_and_reencode_exactly() -> None:
    """The frames a real HocuspocusProvider 4.8.0 sends (token, sync steps 1 and 2, an
    update, awareness, stateless, pong; plain and session names) decode to the expected
    messages, and encoding them gives the same bytes; so do the server's answers."""
    frames = await _provider_frames()
    sent = [decode(data) for data in frames["sent"]]
    for data, message in zip(frames["sent"], sent, strict=True):
        assert encode(message) == data
    assert sent.count(Pong()) == 1
    named = [m for m in sent if not isinstance(m, Ping | Pong)]
    plain = [m for m in named if m.address == Address("doc-ü")]
    session = [m for m in named if m.address.session is not None]
    assert len(plain) + len(session) == len(named)
    assert {m.address.document for m in session} == {"doc-ü"}
    assert len({m.address.session for m in session}) == 1
    for group in (plain, session):
        kinds = [
            (type(m).__name__, type(m.body).__name__ if isinstance(m, Sync) else "") for m in group
        ]
        assert kinds == [
            ("AuthToken", ""),
            ("Sync", "SyncStep1"),
            ("Awareness", ""),
            ("Sync", "SyncStep2"),
            ("Sync", "SyncUpdate"),
            ("Awareness", ""),
            ("Stateless", ""),
        ]
        token, update, awareness, stateless = group[0], group[4], group[5], group[6]
        assert token == AuthToken(group[0].address, "secret-token", "4.8.0")
        assert isinstance(update, Sync) and isinstance(update.body, SyncUpdate)
        assert "héllo".encode() in update.body.update
        assert isinstance(awareness, Awareness)
        assert [e.state for e in awareness.update.entries] == [{"user": {"name": "Ada"}}]
        assert stateless == Stateless(group[0].address, '{"hello":"wörld"}')
    address = Address("doc-ü")
    assert frames["received"][:4] == [
        encode_authenticated(address, Scope.READ_WRITE),
        encode_ping(),
        encode_sync_step2(address, b"\x00\x00"),
        encode_sync_step1(address, b"\x00"),
    ]
    for data in frames["received"]:
        assert encode(decode(data)) == data
