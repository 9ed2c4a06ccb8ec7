"""Who a client says it is in its awareness state: the one parser of ``state["user"]``.

PURE: no I/O. y-websocket clients (and the browser editor) announce their user as
``{"user": {"name": ..., "color": ...}}`` in their awareness state. The relay takes the
name as an update's author when nothing better is known (``collab.relay.connection``),
and the document list shows who is online (``collab.http.browser``); both read it here.
The state is the client's: anything in it may be missing or of the wrong type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from collab.sync.protocol import AwarenessEntry

__all__ = ["AnnouncedUser", "announced_name", "announced_user"]


@dataclass(frozen=True, slots=True)
class AnnouncedUser:
    """The user of one awareness state; ``color`` is ``""`` when none is given."""

    name: str
    color: str


def announced_user(state: Mapping[str, Any] | None) -> AnnouncedUser | None:
    """The user an awareness ``state`` announces, or ``None`` if it names nobody.

    Only a string ``user.name`` counts; a ``user.color`` that is not a string is ignored.
    Neither is truncated: each caller bounds what it keeps.
    """
    user = (state or {}).get("user")
    if not isinstance(user, dict):
        return None
    name = user.get("name")
    if not isinstance(name, str):
        return None
    color = user.get("color")
    return AnnouncedUser(name, color if isinstance(color, str) else "")


def announced_name(entries: Iterable[AwarenessEntry], limit: int = 255) -> str | None:
    """The first user name announced among ``entries``, cut to ``limit`` characters."""
    for entry in entries:
        user = announced_user(entry.state)
        if user is not None:
            return user.name[:limit]
    return None
