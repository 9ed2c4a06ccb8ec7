"""The one parser of the user a client announces in its awareness state."""

from __future__ import annotations

from typing import Any

import pytest

from collab.sync.awareness import AnnouncedUser, announced_name, announced_user
from collab.sync.protocol import AwarenessEntry


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"user": {"name": "ann", "color": "#f00"}}, AnnouncedUser("ann", "#f00")),
        ({"user": {"name": "ann", "color": 7}}, AnnouncedUser("ann", "")),
        ({"user": {"name": "ann"}}, AnnouncedUser("ann", "")),
        ({"user": {"name": 3}}, None),
        ({"user": "ann"}, None),
        ({"cursor": 1}, None),
        (None, None),
    ],
)
def test_announced_user_takes_only_a_string_name(
    state: dict[str, Any] | None, expected: AnnouncedUser | None
) -> None:
    """Only a string ``user.name`` names a user; a non-string color reads as ``""``."""
    assert announced_user(state) == expected


def test_announced_name_is_the_first_name_cut_to_the_limit() -> None:
    """Entries without a name are skipped; the first name found is cut to ``limit``."""
    entries = [
        AwarenessEntry(1, 1, None),
        AwarenessEntry(2, 1, {"user": {"name": "x" * 300}}),
        AwarenessEntry(3, 1, {"user": {"name": "bob"}}),
    ]
    assert announced_name(entries) == "x" * 255
    assert announced_name(entries[:1]) is None
    assert announced_name(entries, limit=3) == "xxx"
