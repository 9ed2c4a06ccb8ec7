"""The update validator: what pycrdt writes passes, and every bound and refused form fails."""

from __future__ import annotations

import os
import time
from typing import Any

import pycrdt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from collab.errors import ProtocolError
from collab.sync.protocol import write_var_uint as varint
from collab.sync.validator import (
    MAX_CLIENT,
    MAX_CLOCK,
    MAX_DEPTH,
    check_state_vector,
    check_update,
)
from tests.sync import fuzz_yjs

# The 50-byte y-websocket message from the report: a client id of 2**53 - 1, a GC struct
# of length 2**32 and a delete range at clock 2**31 of length 2**31. yrs panics on it with
# "attempt to divide by zero" in block_store and the document stays poisoned.
ISSUE_MESSAGE = bytes.fromhex(
    "0002300102ffffffffffffff0f00050107636f6e74656e74077b2278223a317d008080808010017f"
    "0180808080088080808008"
)

CLIENT = 1234
_FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return varint(len(raw)) + raw


def _update(*sections: tuple[int, int, list[bytes]], deletes: bytes = b"\x00") -> bytes:
    """Encode sections of ready-made structs, then a delete set."""
    out = varint(len(sections))
    for client, clock, structs in sections:
        out += varint(len(structs)) + varint(client) + varint(clock)
        out += b"".join(structs)
    return out + deletes


def _root_item(content_ref: int, content: bytes, name: str = "t") -> bytes:
    """An item with no origins under the root type ``name``."""
    return bytes([content_ref]) + b"\x01" + _string(name) + content


def _text(text: str, clock: int = 0, client: int = CLIENT) -> bytes:
    return _update((client, clock, [_root_item(4, _string(text))]))


def _rejects(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        check_update(data)
    assert caught.value.reason == reason


# --- what pycrdt writes passes ---------------------------------------------------------------

_edits = st.lists(
    st.tuples(st.integers(0, 7), st.integers(0, 1000), st.text(min_size=1, max_size=12)),
    min_size=1,
    max_size=25,
)


def _apply_edits(doc: pycrdt.Doc[Any], edits: list[tuple[int, int, str]]) -> None:
    text = doc.get("text", type=pycrdt.Text)
    array = doc.get("array", type=pycrdt.Array)
    map_ = doc.get("map", type=pycrdt.Map)
    xml = doc.get("xml", type=pycrdt.XmlFragment)
    for kind, n, value in edits:
        # pycrdt's own index arithmetic panics on ranges inside multi-byte characters, so
        # text that is deleted or formatted later is ASCII; the rest is any Unicode.
        ascii_value = value.encode("ascii", "replace").decode()
        if kind == 0:
            text.insert(n % (len(text) + 1), ascii_value)
        elif kind == 1 and len(text):
            start = n % len(text)
            del text[start : start + 1]
        elif kind == 2 and len(text):
            start = n % len(text)
            text.format(start, start + 1, {"bold": True, "n": n})
        elif kind == 3:
            array.insert(n % (len(array) + 1), [value, n, n / 7, None, {"k": [value]}, b"\x01"])
        elif kind == 4:
            map_[value] = pycrdt.Map({"n": n}) if n % 2 else pycrdt.Text(value)
        elif kind == 5:
            xml.children.append(pycrdt.XmlElement("p", {"a": value}, [pycrdt.XmlText(value)]))
        elif kind == 6:
            doc.get("intl", type=pycrdt.Text).insert(0, value)  # never deleted: any Unicode
        elif len(array):
            del array[n % len(array)]


@_FAST
@given(_edits, _edits)
def test_every_update_pycrdt_writes_passes(first: Any, second: Any) -> None:
    """Each transaction's update, full states, diffs and merges of two editing docs pass."""
    a: pycrdt.Doc[Any] = pycrdt.Doc(client_id=2**53 - 2)  # an 8-byte varint
    b: pycrdt.Doc[Any] = pycrdt.Doc(client_id=3)
    updates: list[bytes] = []
    a.observe(lambda event: updates.append(event.update))
    b.observe(lambda event: updates.append(event.update))
    _apply_edits(a, first)
    b.apply_update(a.get_update())
    _apply_edits(b, second)
    a.apply_update(b.get_update(a.get_state()))
    updates += [a.get_update(), b.get_update(), b.get_update(a.get_state())]
    updates.append(pycrdt.merge_updates(*updates))
    for update in updates:
        check_update(update)
        check_update(update, a.get_state())  # a has every dependency
    check_state_vector(a.get_state())
    check_state_vector(b.get_state())


def test_subdocuments_embeds_and_astral_text_pass() -> None:
    """Subdocuments, embeds with attributes and surrogate pairs are all accepted."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    map_: pycrdt.Map[Any] = pycrdt.Map()
    doc["map"] = map_
    map_["sub"] = pycrdt.Doc()
    doc["text"] = text = pycrdt.Text("a😀b")
    text.insert_embed(1, {"image": "x.png"}, {"width": 3})
    check_update(doc.get_update())


def test_empty_update_and_state_vector_pass() -> None:
    """The empty update and the empty state vector are well formed."""
    check_update(b"\x00\x00")
    check_state_vector(b"\x00")


# --- truncation and mutation -------------------------------------------------------------------


@_FAST
@given(_edits)
def test_every_truncation_is_refused(edits: Any) -> None:
    """No proper prefix of a real update passes (the delete set is always required)."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=CLIENT)
    _apply_edits(doc, edits)
    update = doc.get_update()
    for end in range(len(update)):
        with pytest.raises(ProtocolError):
            check_update(update[:end])


@settings(max_examples=100, deadline=None)
@given(_edits, st.data())
def test_mutations_are_refused_or_apply_without_panic(edits: Any, data: st.DataObject) -> None:
    """A mutated update either raises ProtocolError or applies to a fresh doc cleanly."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=CLIENT)
    _apply_edits(doc, edits)
    update = bytearray(doc.get_update())
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(update) - 1))
        update[pos] = data.draw(st.integers(0, 255))
    target: pycrdt.Doc[Any] = pycrdt.Doc()
    try:
        check_update(bytes(update), target.get_state())
    except ProtocolError:
        return
    try:
        target.apply_update(bytes(update))
    except (ValueError, RuntimeError):
        pass  # yrs's own, clean refusal
    target.get_update()


# --- the issue's vector and bounds -------------------------------------------------------------


def test_issue_vector_is_refused() -> None:
    """The report's update, whose GC length is 2**32, is refused before yrs sees it."""
    _rejects(ISSUE_MESSAGE[3:], "clock out of range")


@pytest.mark.parametrize("value", [0, 127, 128, 16383, 16384, MAX_CLIENT])
def test_varint_boundaries_accepted(value: int) -> None:
    """Client ids on each side of every varint size change are read exactly."""
    check_state_vector(b"\x01" + varint(value) + b"\x05")
    check_update(_text("a", client=value))


def test_client_past_javascript_range_is_refused() -> None:
    """A client id of 2**53 aliases a smaller one in yrs and is refused."""
    _rejects(_text("a", client=MAX_CLIENT + 1), "varint out of range")
    with pytest.raises(ProtocolError, match="varint out of range"):
        check_state_vector(b"\x01" + varint(MAX_CLIENT + 1) + b"\x05")


def test_nine_byte_and_non_minimal_varints_are_refused() -> None:
    """A varint longer than 8 bytes, or with a redundant zero byte, is refused."""
    _rejects(b"\x00" + b"\x80" * 8 + b"\x00", "varint too long")
    _rejects(b"\x80\x00\x00", "non-minimal varint")


@pytest.mark.parametrize("length", [127, 128, 16383, 16384])
def test_deleted_lengths_at_boundaries_pass(length: int) -> None:
    """Deleted content of each boundary length passes, its clock advancing by that much."""
    check_update(_update((CLIENT, 0, [_root_item(1, varint(length))])))


def test_clock_bound_on_both_sides() -> None:
    """A struct may end exactly at MAX_CLOCK, not one past it."""
    check_update(_update((CLIENT, MAX_CLOCK - 1, [_root_item(4, _string("a"))])))
    _rejects(_update((CLIENT, MAX_CLOCK, [_root_item(4, _string("a"))])), "clock out of range")
    check_update(_update((CLIENT, 0, [b"\x00" + varint(MAX_CLOCK)])))
    _rejects(_update((CLIENT, 0, [b"\x00" + varint(MAX_CLOCK + 1)])), "clock out of range")


def test_delete_set_bounds() -> None:
    """Delete ranges need a length, an order, one entry per client and an end in range."""

    def deletes(*entries: tuple[int, list[tuple[int, int]]]) -> bytes:
        out = varint(len(entries))
        for client, ranges in entries:
            out += varint(client) + varint(len(ranges))
            out += b"".join(varint(c) + varint(n) for c, n in ranges)
        return out

    check_update(_update(deletes=deletes((CLIENT, [(0, 2), (2, 3), (MAX_CLOCK - 1, 1)]))))
    _rejects(_update(deletes=deletes((CLIENT, [(0, 0)]))), "empty delete range")
    _rejects(_update(deletes=deletes((CLIENT, [(5, 2), (0, 1)]))), "delete ranges out of order")
    _rejects(_update(deletes=deletes((CLIENT, [(MAX_CLOCK, 1)]))), "delete range out of range")
    _rejects(
        _update(deletes=deletes((CLIENT, [(0, 1)]), (CLIENT, [(4, 1)]))),
        "duplicate delete set client",
    )
    _rejects(
        _update(deletes=b"\x01" + varint(CLIENT) + b"\x7f"), "delete range count exceeds the data"
    )
    _rejects(_update(deletes=b"\x01" + varint(CLIENT) + b"\x01\x80\x80"), "truncated update")


def test_state_vector_bounds() -> None:
    """A state vector is refused for a huge count, a repeated client or trailing bytes."""
    check_state_vector(b"\x02\x01\x05\x02" + varint(MAX_CLOCK))
    for bad, reason in [
        (b"\x02\x01\x05\x01\x06", "duplicate state vector client"),
        (b"\x01\x01" + varint(MAX_CLOCK + 1), "clock out of range"),
        (b"\x7f\x01\x05", "state vector count exceeds the data"),
        (b"\x01\x01\x05\x00", "trailing bytes after the state vector"),
        (b"\x01\x01", "state vector count exceeds the data"),
        (b"\x01\x81\x81", "truncated state vector"),
        (b"", "truncated state vector"),
    ]:
        with pytest.raises(ProtocolError) as caught:
            check_state_vector(bad)
        assert caught.value.reason == reason


# --- structs and contents ----------------------------------------------------------------------


def test_framing_errors() -> None:
    """Empty input, trailing bytes, huge counts and empty sections are refused."""
    _rejects(b"", "truncated update")
    _rejects(_text("a") + b"\x00", "trailing bytes after the update")
    _rejects(b"\x7f\x00", "client count exceeds the data")
    _rejects(b"\x01\x00\x01\x00\x00", "empty client section")
    _rejects(b"\x01\x7f\x01\x00\x00\x00", "struct count exceeds the data")


def test_duplicate_client_section_is_refused() -> None:
    """Two sections for one client would break yrs's sorted block list."""
    item = _root_item(4, _string("a"))
    _rejects(_update((CLIENT, 0, [item]), (CLIENT, 1, [item])), "duplicate client section")


def test_zero_length_structs_are_refused() -> None:
    """An empty string, zero Any values or a zero-length GC or Deleted struct is refused."""
    _rejects(_text(""), "empty struct")
    _rejects(_update((CLIENT, 0, [_root_item(8, b"\x00")])), "empty struct")
    _rejects(_update((CLIENT, 0, [_root_item(1, b"\x00")])), "empty struct")
    _rejects(_update((CLIENT, 0, [b"\x00\x00"])), "empty struct")


def test_string_length_counts_utf16_units() -> None:
    """An astral character takes two clocks, so the next struct starts two later."""
    astral = _root_item(4, _string("😀"))
    origin = bytes([0x84]) + varint(CLIENT) + varint(1) + _string("x")
    check_update(_update((CLIENT, 0, [astral, origin])))  # origin (CLIENT, 1) is the 😀
    too_far = bytes([0x84]) + varint(CLIENT) + varint(2) + _string("x")
    _rejects(
        _update((CLIENT, 0, [astral, too_far])), "reference to a later item of the same client"
    )


@pytest.mark.parametrize(
    "raw", [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"], ids=["ff", "cut", "surr", "long"]
)
def test_invalid_utf8_is_refused_everywhere(raw: bytes) -> None:
    """yrs would read these unchecked: strings, keys, root names and Any strings refuse them."""
    _rejects(_update((CLIENT, 0, [_root_item(4, _string(raw))])), "invalid UTF-8")
    _rejects(_update((CLIENT, 0, [b"\x04\x01" + _string(raw) + _string("a")])), "invalid UTF-8")
    keyed = b"\x28\x01" + _string("m") + _string(raw) + b"\x01\x78"
    _rejects(_update((CLIENT, 0, [keyed])), "invalid UTF-8")
    _rejects(_update((CLIENT, 0, [_root_item(8, b"\x01\x77" + _string(raw))])), "invalid UTF-8")


def test_parent_info_must_be_zero_or_one() -> None:
    """yrs reads any parent info but 1 as an id; only 0 (id) and 1 (name) are accepted."""
    check_update(_update((CLIENT, 0, [b"\x04\x00" + varint(7) + b"\x00" + _string("a")])))
    _rejects(_update((CLIENT, 0, [b"\x04\x02" + _string("t") + _string("a")])), "bad parent info")


def test_same_client_references_point_backwards() -> None:
    """An origin or parent of the item's own client must be earlier than the item."""
    item = _root_item(4, _string("a"))
    for info, ref in [(0x84, b""), (0x44, b""), (0x04, b"\x00")]:
        forward = bytes([info]) + ref + varint(CLIENT) + varint(1) + _string("b")
        _rejects(
            _update((CLIENT, 0, [item, forward])), "reference to a later item of the same client"
        )


def test_reference_clock_bound() -> None:
    """A reference to another client's clock at or past MAX_CLOCK is refused."""
    ref = bytes([0x84]) + varint(7) + varint(MAX_CLOCK) + _string("a")
    _rejects(_update((CLIENT, 0, [ref])), "reference clock out of range")


@pytest.mark.parametrize(
    ("content_ref", "content", "reason"),
    [
        (2, b"\x01" + _string("1"), "unsupported content ref"),  # JSON: yrs reads n + 1
        (10 | 0x20, b"", "unsupported content ref"),  # a Skip is never keyed
        (11, b"", "unsupported content ref"),
        (7, b"\x05" + _string("hook"), "unsupported type ref"),  # XmlHook: yrs reads no name
        (7, b"\x07", "unsupported type ref"),  # weak link (yrs only)
        (7, b"\x09", "unsupported type ref"),  # subdoc type ref (yrs only)
        (7, b"\x0f", "unsupported type ref"),  # undefined
        (5, _string("{"), "invalid JSON"),
        (6, _string("bold") + _string("tru"), "invalid JSON"),
        (
            6,
            _string("bold") + _string("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2)),
            "JSON nested too deep",
        ),
    ],
)
def test_refused_contents(content_ref: int, content: bytes, reason: str) -> None:
    """Contents yjs and yrs frame differently, unknown refs and invalid JSON are refused."""
    _rejects(_update((CLIENT, 0, [_root_item(content_ref, content)])), reason)


@pytest.mark.parametrize("type_ref", [0, 1, 2, 4, 6])
def test_supported_type_refs_pass(type_ref: int) -> None:
    """Array, Map, Text, XmlFragment and XmlText type contents pass; XmlElement has a name."""
    check_update(_update((CLIENT, 0, [_root_item(7, bytes([type_ref]))])))
    check_update(_update((CLIENT, 0, [_root_item(7, b"\x03" + _string("p"))])))


def _any_array(depth: int) -> bytes:
    return b"\x75\x01" * depth + b"\x7e"


def test_any_depth_bound_on_both_sides() -> None:
    """Any values nest up to MAX_DEPTH arrays or maps deep, not one more."""
    check_update(_update((CLIENT, 0, [_root_item(8, b"\x01" + _any_array(MAX_DEPTH))])))
    _rejects(
        _update((CLIENT, 0, [_root_item(8, b"\x01" + _any_array(MAX_DEPTH + 1))])),
        "Any nested too deep",
    )


def test_any_values() -> None:
    """Every lib0 Any tag is read; counts past the data and unknown tags are refused."""
    values = [
        b"\x7f",
        b"\x7e",
        b"\x7d\x81\x01",  # signed varint
        b"\x7c" + bytes(4),
        b"\x7b" + bytes(8),
        b"\x7a" + bytes(8),
        b"\x79",
        b"\x78",
        b"\x77" + _string("s"),
        b"\x76\x01" + _string("k") + b"\x78",
        b"\x75\x02\x7e\x7e",
        b"\x74" + _string(b"\x00\xff"),
    ]
    check_update(_update((CLIENT, 0, [_root_item(8, varint(len(values)) + b"".join(values))])))
    for bad, reason in [
        (b"\x01\x75\x7f", "Any count exceeds the data"),
        (b"\x01\x76\x40" + _string("k") + b"\x78", "Any count exceeds the data"),
        (b"\x01\x73", "unknown Any tag"),
        (b"\x01\x7d" + b"\x80" * 8 + b"\x01", "varint too long"),
        (b"\x7f\x7e", "Any count exceeds the data"),
    ]:
        _rejects(_update((CLIENT, 0, [_root_item(8, bad)])), reason)
    cut = _update((CLIENT, 0, [_root_item(8, b"\x01\x7b" + bytes(8))]))[:-2]
    _rejects(cut, "truncated number")  # the float64 ends past the data


def test_doc_content_passes() -> None:
    """A subdocument's guid and options are read as yjs writes them."""
    check_update(_update((CLIENT, 0, [_root_item(9, _string("guid") + b"\x76\x00")])))


# --- dependencies --------------------------------------------------------------------------------


def test_missing_dependencies_are_refused_given_the_state() -> None:
    """With the document's state, a gap before a section or a dangling reference is refused."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    state = doc.get_state()
    check_update(_text("a"), state)
    with pytest.raises(ProtocolError, match="missing structs"):
        check_update(_text("a", clock=3), state)
    dangling = bytes([0x84]) + varint(99) + varint(0) + _string("b")
    check_update(_update((CLIENT, 0, [dangling])))  # well formed on its own
    with pytest.raises(ProtocolError, match="missing structs"):
        check_update(_update((CLIENT, 0, [dangling])), state)
    # A reference into another section of the same update is satisfied by it.
    check_update(_update((99, 0, [_root_item(4, _string("x"))]), (CLIENT, 0, [dangling])), state)
    doc.apply_update(_text("abc", client=99))
    check_update(_update((CLIENT, 0, [dangling])), doc.get_state())


# --- the subprocess fuzzer ---------------------------------------------------------------------


def test_fuzzer_finds_no_crash_or_panic() -> None:
    """Mutated updates the validator accepts never crash or panic yrs (about 25 s)."""
    count = int(os.environ.get("COLLAB_FUZZ_COUNT", "200000"))
    report = fuzz_yjs.fuzz(seed=20260501, count=count, deadline=time.monotonic() + 25)
    assert report.accepted > 1000
    assert report.findings == []


def test_recorded_crash_sequences_no_longer_crash() -> None:
    """Update sequences that segfaulted or hung yrs are refused before they can, in a child."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "yrs_crashes.jsonl")
    findings = fuzz_yjs.load(path)
    assert findings
    for finding in findings:
        assert fuzz_yjs.replay(finding) not in ("crash", "panic")
