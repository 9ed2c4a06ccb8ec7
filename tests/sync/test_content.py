"""Content values inside Yjs items: each read stops after its value, or refuses it."""

from __future__ import annotations

import pytest

from collab.errors import ProtocolError
from collab.sync.content import (
    MAX_DEPTH,
    check_utf8,
    read_string,
    skip_any,
    skip_buffer,
    skip_json,
)
from collab.sync.varint import write_uint


def _str(text: str) -> bytes:
    raw = text.encode()
    return write_uint(len(raw)) + raw


def test_string_reads_utf8_and_stops_after_it() -> None:
    """A length-prefixed string decodes and the position lands just after it."""
    data = _str("héllo") + b"\xff"
    assert read_string(data, 0) == ("héllo", len(data) - 1)


def test_long_string_uses_a_multibyte_length() -> None:
    """A string of 128 bytes or more is framed by a two-byte varint and still reads."""
    text = "x" * 200
    assert read_string(_str(text), 0) == (text, 202)


def test_invalid_utf8_is_refused() -> None:
    """Bytes that are not UTF-8 never pass as a string (yrs would not check)."""
    with pytest.raises(ProtocolError, match="invalid UTF-8"):
        read_string(b"\x02\xc3\x28", 0)
    with pytest.raises(ProtocolError, match="invalid UTF-8"):
        check_utf8(b"\xed\xa0\x80")  # a lone surrogate


def test_buffer_past_the_end_is_truncated() -> None:
    """A byte array longer than the data left is refused."""
    assert skip_buffer(b"\x02ab", 0) == 3
    with pytest.raises(ProtocolError, match="truncated buffer"):
        skip_buffer(b"\x05ab", 0)


def test_json_must_parse_and_stay_shallow() -> None:
    """Embeds and format values hold JSON yrs can parse, nested at most MAX_DEPTH deep."""
    assert skip_json(_str('{"a": [1, 2]}'), 0) == 14
    with pytest.raises(ProtocolError, match="invalid JSON"):
        skip_json(_str("{nope"), 0)
    with pytest.raises(ProtocolError, match="nested too deep"):
        skip_json(_str("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2)), 0)


def test_any_map_of_scalars_is_skipped_whole() -> None:
    """A lib0 Any map with a string, a number and null is skipped to its end."""
    data = b"\x76\x03" + _str("s") + b"\x77" + _str("v") + _str("n") + b"\x7d\x05"
    data += _str("z") + b"\x7e"
    assert skip_any(data, 0) == len(data)


def test_any_count_beyond_the_data_is_refused() -> None:
    """An Any array claiming more entries than bytes left is refused before any allocation."""
    with pytest.raises(ProtocolError, match="count exceeds"):
        skip_any(b"\x75\x7f\x7e", 0)


def test_any_nesting_past_the_limit_is_refused() -> None:
    """Arrays nested deeper than MAX_DEPTH are refused (yrs recurses on the native stack)."""
    data = b"\x75\x01" * (MAX_DEPTH + 1) + b"\x7e"
    with pytest.raises(ProtocolError, match="nested too deep"):
        skip_any(data, 0)


def test_unknown_any_tag_is_refused() -> None:
    """A type tag lib0 never writes is refused."""
    with pytest.raises(ProtocolError, match="unknown Any tag"):
        skip_any(b"\x10", 0)
