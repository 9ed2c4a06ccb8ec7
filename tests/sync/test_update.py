"""measure(): what a Yjs v1 update inserts and deletes, read from its bytes and checked
against updates pycrdt makes."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from collab.sync.update import UpdateStats, measure


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
