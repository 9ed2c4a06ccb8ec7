"""measure(): what a Yjs v1 update inserts and deletes, read from its bytes and checked
against updates pycrdt makes; and the same counts as the room's validator takes them
(``check_update_measured``), held equal to measure() over random pycrdt edits."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pycrdt import Array, Doc, Map, Text, XmlFragment, XmlText, merge_updates

from collab.sync.update import UpdateStats, measure
from collab.sync.validator import check_update_measured, decode_state_vector


def _updates(change: Any, doc: Doc[Any] | None = None) -> tuple[Doc[Any], bytes]:
    doc = doc if doc is not None else Doc()
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    with doc.transaction():
        change(doc)
    doc.unobserve(subscription)
    (update,) = updates
    return doc, update


def test_an_insert_counts_its_characters() -> None:
    """Inserting text counts its characters as inserted."""
    _, update = _updates(lambda d: d.get("content", type=Text).insert(0, "hello"))
    assert measure(update) == UpdateStats(inserted=5, deleted=0)


def test_an_astral_character_inserts_one_and_deletes_two_units() -> None:
    """Inserted text counts characters; a deleted astral character counts two clock units
    (UTF-16 code units, as Yjs counts)."""
    doc, update = _updates(lambda d: d.get("content", type=Text).insert(0, "a\U0001f600"))
    assert measure(update) == UpdateStats(inserted=2, deleted=0)
    _, update = _updates(lambda d: d.get("content", type=Text).__delitem__(slice(1, 2)), doc)
    assert measure(update) == UpdateStats(inserted=0, deleted=2)


def test_a_delete_counts_its_clock_units() -> None:
    """Deleting three characters counts three deleted and nothing inserted."""
    doc, _ = _updates(lambda d: d.get("content", type=Text).insert(0, "abcdef"))
    _, update = _updates(lambda d: d.get("content", type=Text).__delitem__(slice(1, 4)), doc)
    assert measure(update) == UpdateStats(inserted=0, deleted=3)


def test_map_and_array_values_insert_no_text() -> None:
    """Values set in a map or pushed on an array are not text: nothing inserted."""

    def change(d: Doc[Any]) -> None:
        d.get("m", type=Map)["k"] = "a long string value"
        d.get("a", type=Array).append(42)

    _, update = _updates(change)
    assert measure(update) == UpdateStats(inserted=0, deleted=0)


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x01\x80"], ids=["empty", "short", "cut"])
def test_bytes_that_are_not_an_update_raise_value_error(data: bytes) -> None:
    """Truncated bytes raise ValueError, never IndexError."""
    with pytest.raises(ValueError, match="not a Yjs v1 update"):
        measure(data)


# -- the counts the room's validator takes, against measure() ------------------------------

_EDITS = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 1000), st.text(min_size=1, max_size=12)),
    min_size=1,
    max_size=20,
)


def _edit(doc: Doc[Any], edits: list[tuple[int, int, str]]) -> None:
    """Apply ``edits``, one transaction each: inserts and deletes of ASCII and any-Unicode
    text, formatting, XML text, map and array values."""
    text = doc.get("content", type=Text)
    intl = doc.get("intl", type=Text)
    for kind, n, value in edits:
        with doc.transaction():
            if kind == 0:
                # pycrdt panics on positions inside a multi-byte character: this root
                # stays ASCII, so any position is a character boundary.
                text.insert(n % (len(text) + 1), value.encode("ascii", "replace").decode())
            elif kind == 1 and len(text):
                start = n % len(text)
                del text[start : min(len(text), start + 1 + n % 3)]
            elif kind == 2:
                intl.insert(0, value)  # at 0, or the whole root deleted: always a boundary
                if n % 4 == 0:
                    del intl[0 : len(intl)]
            elif kind == 3 and len(text):
                start = n % len(text)
                text.format(start, start + 1, {"bold": True})
            elif kind == 4:
                doc.get("xml", type=XmlFragment).children.append(XmlText(value))
            else:
                doc.get("m", type=Map)[value] = n
                doc.get("a", type=Array).append(value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_EDITS, _EDITS)
def test_the_validator_counts_what_measure_counts(first: Any, second: Any) -> None:
    """For every update pycrdt writes (each transaction's, a whole state, a diff, a merge),
    the counts ``check_update_measured`` takes while validating equal ``measure``."""
    a: Doc[Any] = Doc(client_id=2**53 - 2)
    b: Doc[Any] = Doc(client_id=7)
    updates: list[bytes] = []
    a.observe(lambda event: updates.append(event.update))
    b.observe(lambda event: updates.append(event.update))
    _edit(a, first)
    b.apply_update(a.get_update())
    _edit(b, second)
    a.apply_update(b.get_update(a.get_state()))
    updates += [a.get_update(), b.get_update(a.get_state()), merge_updates(*updates)]
    clocks = decode_state_vector(a.get_state())  # a holds every dependency
    for update in updates:
        _, inserted, deleted = check_update_measured(update, clocks)
        assert UpdateStats(inserted, deleted) == measure(update)


def test_the_validator_counts_astral_and_long_strings() -> None:
    """A string of 200 characters (a two-byte length) and an astral character count as
    ``measure`` counts them: characters inserted, UTF-16 units deleted."""
    doc, update = _updates(lambda d: d.get("content", type=Text).insert(0, "é" * 199 + "😀"))
    assert check_update_measured(update, {})[1:] == (200, 0)
    assert measure(update) == UpdateStats(200, 0)
    _, update = _updates(lambda d: d.get("content", type=Text).__delitem__(slice(0, 402)), doc)
    clocks = decode_state_vector(doc.get_state())
    assert check_update_measured(update, clocks)[1:] == (0, 201)
    assert measure(update) == UpdateStats(0, 201)
