"""A stored row as history reads it, and who made it."""

from __future__ import annotations

import dataclasses

import pytest

from collab.row import Row, identity


def test_identity_prefers_the_author_then_the_connection() -> None:
    """The author names a change; without one the connection does; without either it is
    "unknown"."""
    assert identity("alice", "c1") == "alice"
    assert identity(None, "c1") == "connection:c1"
    assert identity("", "c1") == "connection:c1"
    assert identity(None, None) == "unknown"


def test_a_row_is_frozen_and_knows_who_made_it() -> None:
    """A row cannot be changed after the store built it, and ``who`` is its identity."""
    row = Row(seq=5, first_seq=3, created_ms=1, data=b"", author=None, connection_id="c9")
    assert row.who == "connection:c9"
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.seq = 6  # type: ignore[misc]
