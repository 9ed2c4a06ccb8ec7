"""The wire format: every encoder round-trips through decode, and every bound is checked."""

from __future__ import annotations

from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from collab.errors import ProtocolError
from collab.sync.protocol import (
    AwarenessEntry,
    AwarenessUpdate,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    Unknown,
    decode,
    decode_sync,
    encode_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
    read_var_uint,
    update_payload,
    write_var_uint,
)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**53 - 1])
def test_varint_round_trip(value: int) -> None:
    """Every value up to 2**53 - 1 survives encode then decode."""
    data = write_var_uint(value)
    assert read_var_uint(data, 0) == (value, len(data))


def test_varint_beyond_javascript_range_is_rejected() -> None:
    """A varint above 2**53 - 1 cannot round-trip through lib0 and is refused."""
    with pytest.raises(ProtocolError, match="out of range"):
        read_var_uint(write_var_uint(2**53), 0)


def test_sync_messages_round_trip() -> None:
    """SyncStep1, SyncStep2 and Update decode to what was encoded."""
    assert decode(encode_sync_step1(b"\x01\x02")) == SyncStep1(b"\x01\x02")
    assert decode(encode_sync_step2(b"\x00\x00")) == SyncStep2(b"\x00\x00")
    assert decode(encode_update(b"x" * 300)) == SyncUpdate(b"x" * 300)


def test_awareness_round_trip() -> None:
    """Awareness entries, including a removal (null state), round-trip."""
    entries = (
        AwarenessEntry(1, 5, {"user": {"name": "ann", "color": "#f00"}}),
        AwarenessEntry(2**40, 0, None),
    )
    message = decode(encode_awareness(entries))
    assert isinstance(message, AwarenessUpdate)
    assert message.entries == entries


def test_query_awareness_and_unknown_types() -> None:
    """Query-awareness is recognised; other types decode as Unknown."""
    assert decode(b"\x03") == QueryAwareness()
    assert decode(b"\x02\x00") == Unknown(2)
    assert decode(b"\x63") == Unknown(99)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00\x01", b"\x00\x02\x09abc", b"\x00\x02\x01ab", b"\x01", b"\x01\x05\x01"],
)
def test_truncated_or_padded_messages_raise(data: bytes) -> None:
    """Truncated messages and trailing bytes raise ProtocolError, never IndexError."""
    with pytest.raises(ProtocolError):
        decode(data)


def test_protocol_error_carries_close_code_1007() -> None:
    """A ProtocolError closes the connection with 1007 (invalid payload)."""
    with pytest.raises(ProtocolError) as info:
        decode(b"\x80")
    assert info.value.close_code == 1007


@pytest.mark.parametrize(
    "data",
    [
        encode_update(b"\x01\x02"),
        encode_update(b""),
        encode_update(b"x" * 127),
        encode_update(b"x" * 128),  # a two-byte length
        encode_update(b"x" * 20_000),  # a three-byte length
        b"\x80\x00\x02\x01x",  # type 0 as a two-byte varint: decode's job
        b"\x00\x82\x00\x01x",  # sub-type 2 as a two-byte varint: decode's job
        encode_sync_step1(b"\x00"),
        encode_sync_step2(b"\x00\x00"),
        encode_awareness([AwarenessEntry(1, 1, None)]),
        b"\x03",
        b"\x63",
        b"",
        b"\x00",
        b"\x00\x02",
        b"\x00\x02\x09abc",  # truncated
        b"\x00\x02\x01ab",  # trailing bytes
        b"\x00\x02\x80",  # truncated length varint
        b"\x00\x02\x80\x01" + b"x" * 127,  # length 128, one byte short
        b"\x00\x02\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # length varint too long
        b"\x00\x02\xff\xff\xff\xff\xff\xff\xff\x7f",  # length beyond 2**53 - 1
    ],
)
def test_update_payload_agrees_with_decode(data: bytes) -> None:
    """``update_payload`` (the hub's hot path) returns the update exactly when it is a
    minimally framed Update that decode accepts; otherwise it returns None for decode to
    handle, or raises the very error decode raises."""
    try:
        expected: object = decode(data)
    except ProtocolError as exc:
        expected = exc.reason
    try:
        payload = update_payload(data)
    except ProtocolError as exc:
        assert exc.reason == expected
        return
    if payload is not None:
        assert expected == SyncUpdate(payload)
        assert data[:2] == b"\x00\x02"
    else:
        assert not isinstance(expected, SyncUpdate) or data[:2] != b"\x00\x02"


# -- properties (hypothesis) -------------------------------------------------------------

_FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    """decode turns any bytes into a message or a ProtocolError, never another exception,
    and update_payload agrees with it."""
    try:
        message = decode(data)
    except ProtocolError:
        message = None
    try:
        payload = update_payload(data)
    except ProtocolError:
        assert message is None
        return
    if payload is not None:
        assert message == SyncUpdate(payload)


@_FUZZ
@given(st.integers(min_value=0, max_value=2**53 - 1))
def test_varints_round_trip_over_the_whole_range(value: int) -> None:
    """Every varint lib0 can hold round-trips, and takes the fewest bytes."""
    encoded = write_var_uint(value)
    assert read_var_uint(encoded, 0) == (value, len(encoded))
    assert len(encoded) == max(1, -(-value.bit_length() // 7))


_STATES = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    ),
)


@_FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 2**53 - 1), st.integers(0, 2**53 - 1), _STATES), max_size=5),
    st.binary(max_size=200),
)
def test_messages_round_trip(entries: list[tuple[int, int, Any]], payload: bytes) -> None:
    """Every awareness update and sync message encoded here decodes back to itself."""
    awareness = [AwarenessEntry(c, k, s) for c, k, s in entries]
    decoded = decode(encode_awareness(awareness))
    assert isinstance(decoded, AwarenessUpdate) and list(decoded.entries) == awareness
    assert decode(encode_update(payload)) == SyncUpdate(payload)
    assert decode(encode_sync_step1(payload)) == SyncStep1(payload)
    assert decode(encode_sync_step2(payload)) == SyncStep2(payload)


# Payload lengths on both sides of each varint size boundary (1, 2 and 3 length bytes).
_LENGTHS = st.sampled_from([0, 1, 126, 127, 128, 129, 16382, 16383, 16384, 16385, 70_000])


@settings(max_examples=60, deadline=None)
@given(_LENGTHS, st.integers(0, 255))
def test_encoders_write_what_pycrdt_writes(length: int, fill: int) -> None:
    """Each sync encoder is byte-identical to pycrdt's (the library it replaces) around
    every length boundary, and decodes back through the shared sync-body reader."""
    payload = bytes([fill]) * length
    sync = pycrdt.YMessageType.SYNC
    for ours, step in [
        (encode_sync_step1(payload), pycrdt.YSyncMessageType.SYNC_STEP1),
        (encode_sync_step2(payload), pycrdt.YSyncMessageType.SYNC_STEP2),
        (encode_update(payload), pycrdt.YSyncMessageType.SYNC_UPDATE),
    ]:
        assert ours == bytes([sync, step]) + pycrdt.write_message(payload)
        assert decode_sync(ours, 1)[1] == len(ours)
    assert encode_update(payload) == pycrdt.create_update_message(payload)
