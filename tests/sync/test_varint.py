"""The one lib0 varint reader: what pycrdt writes reads back, at every size boundary."""

from __future__ import annotations

import pycrdt
import pytest
from hypothesis import given, settings, strategies as st

from collab.errors import ProtocolError
from collab.sync.varint import (
    MAX_UINT,
    Reader,
    read_bytes,
    read_minimal_uint,
    read_uint,
    write_uint,
)

# Both sides of every point where a varint grows a byte (2**7, 2**14, ... 2**49), and the
# JavaScript limit lib0 reads up to.
_BOUNDARIES = sorted(
    {v for k in range(1, 8) for v in (2 ** (7 * k) - 1, 2 ** (7 * k))} | {0, MAX_UINT}
)
_VALUES = st.one_of(st.sampled_from(_BOUNDARIES), st.integers(0, MAX_UINT))


@pytest.mark.parametrize("value", _BOUNDARIES)
def test_every_size_boundary_reads_back_what_pycrdt_writes(value: int) -> None:
    """Each value on either side of a size change reads back from pycrdt's encoding."""
    encoded = pycrdt.write_var_uint(value)
    assert read_uint(encoded, 0) == (value, len(encoded))
    assert read_minimal_uint(encoded, 0) == (value, len(encoded))


@settings(max_examples=500, deadline=None)
@given(_VALUES, st.binary(max_size=3), st.binary(max_size=3))
def test_writer_matches_pycrdt_and_reads_back_in_context(
    value: int, before: bytes, after: bytes
) -> None:
    """write_uint writes pycrdt's bytes, and a read in the middle of data stops after them."""
    encoded = write_uint(value)
    assert encoded == pycrdt.write_var_uint(value)
    assert read_uint(before + encoded + after, len(before)) == (
        value,
        len(before) + len(encoded),
    )


@settings(max_examples=300, deadline=None)
@given(_VALUES.filter(lambda v: v > 0x7F), st.data())
def test_every_truncation_raises_protocol_error(value: int, data: st.DataObject) -> None:
    """A varint cut before its last byte is a ProtocolError (IndexError for walkers)."""
    encoded = write_uint(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(ProtocolError, match="truncated varint"):
        read_uint(encoded[:cut], 0)
    with pytest.raises(IndexError):  # the validator names what was cut short
        read_minimal_uint(encoded[:cut], 0)


@pytest.mark.parametrize("value", [MAX_UINT + 1, 2**56 - 1, 2**64 - 1, 2**64])
def test_values_past_javascript_range_are_refused(value: int) -> None:
    """2**53 and above (8 bytes or more when encoded) never read as a number."""
    with pytest.raises(ProtocolError, match="out of range|too long"):
        read_uint(pycrdt.write_var_uint(value), 0)


def test_nine_byte_varint_is_too_long() -> None:
    """A ninth byte is refused even when the value would be small."""
    with pytest.raises(ProtocolError, match="varint too long"):
        read_uint(b"\x80" * 8 + b"\x00", 0)


def test_padded_varint_reads_but_is_not_minimal() -> None:
    """A redundant zero byte is read as lib0 does, and refused by the minimal read."""
    assert read_uint(b"\x85\x00", 0) == (5, 2)
    with pytest.raises(ProtocolError, match="non-minimal varint"):
        read_minimal_uint(b"\x85\x00", 0)


def test_negative_numbers_cannot_be_written() -> None:
    """write_uint refuses a negative number instead of looping."""
    with pytest.raises(ValueError):
        write_uint(-1)


def test_length_prefixed_bytes_read_and_truncation_raises() -> None:
    """read_bytes returns the payload after its length, and a short payload raises."""
    assert read_bytes(b"\x03abcd", 0) == (b"abc", 4)
    with pytest.raises(ProtocolError, match="truncated payload"):
        read_bytes(b"\x05abc", 0)


def test_reader_walks_varints_strings_and_any_values() -> None:
    """Reader reads what lib0 writes in sequence: a long varint, a string, an Any value."""
    data = write_uint(300) + b"\x02hi" + b"\x76\x01\x01k\x7d\x05" + b"\x7f"
    reader = Reader(data)
    assert reader.uint() == 300
    assert reader.string() == "hi"
    reader.skip_any()  # {"k": 5}
    reader.skip_any()  # undefined
    assert reader.pos == len(data)


def test_reader_truncated_bytes_raise_index_error() -> None:
    """A length past the end of the data is reported, not read short."""
    with pytest.raises(IndexError):
        Reader(b"\x05ab").skip_bytes()
