"""Where each room of this process is in its life: one ``Residency`` per room name.

A room's life is a ``RoomState``, and every change of state goes through
``Residency.move``, which checks it against ``TRANSITIONS`` (an illegal move is a bug:
it is logged and raises ``IllegalTransition``)::

    (joined) -> LOADING -> LIVE <-> DRAINING -> UNLOADING -> GONE
                                 ^--- join, write ---'
    LIVE, DRAINING, UNLOADING -> EVICTED (document deleted) -> GONE, or back on undelete
    any loaded state -> RESET (yrs panicked) -> LOADING (the next join)

``Hub`` (``collab.relay.hub``) decides when to move; this module only keeps the table and
the per-room record. It never awaits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import TYPE_CHECKING

from collab.sync.room import Room

if TYPE_CHECKING:
    from collab.relay.connection import Connection

__all__ = ["TRANSITIONS", "IllegalTransition", "Residency", "RoomState", "Rooms"]

log = logging.getLogger(__name__)


class RoomState(Enum):
    """Where a room is in its life."""

    LOADING = "loading"
    """A load task reads the room from the store; joiners wait for that one task."""
    LIVE = "live"
    """Loaded and in use: it has members (or the joiners of its load are about to join)."""
    DRAINING = "draining"
    """Loaded, no members: the grace timer runs; a join or a write brings it back."""
    UNLOADING = "unloading"
    """Final checkpoint and commit in flight; a join or a write during it keeps the room."""
    EVICTED = "evicted"
    """Its document was deleted: members closed with 4404, joins refused; unloaded as
    soon as it is empty (undeleting it before that brings it back)."""
    RESET = "reset"
    """Thrown away after its document panicked in yrs; the rows it queued must be
    committed before the next join loads it again."""
    GONE = "gone"
    """Not in memory: the residency is forgotten."""


_LOADED = (RoomState.LIVE, RoomState.DRAINING, RoomState.UNLOADING, RoomState.EVICTED)

TRANSITIONS: Mapping[RoomState, frozenset[RoomState]] = {
    # GONE: the load failed (deleted document, storage outage); RESET: it was loading a
    # reset room, and the commit of that room's rows failed, so it is still stale.
    RoomState.LOADING: frozenset((RoomState.LIVE, RoomState.GONE, RoomState.RESET)),
    RoomState.LIVE: frozenset((RoomState.DRAINING, RoomState.EVICTED, RoomState.RESET)),
    RoomState.DRAINING: frozenset(
        (RoomState.LIVE, RoomState.UNLOADING, RoomState.EVICTED, RoomState.RESET)
    ),
    RoomState.UNLOADING: frozenset(
        (RoomState.LIVE, RoomState.DRAINING, RoomState.GONE, RoomState.EVICTED, RoomState.RESET)
    ),
    RoomState.EVICTED: frozenset(
        (RoomState.LIVE, RoomState.DRAINING, RoomState.GONE, RoomState.RESET)
    ),
    RoomState.RESET: frozenset((RoomState.LOADING,)),
    RoomState.GONE: frozenset(),
}
"""Every legal move: ``TRANSITIONS[from]`` holds the states ``from`` may move to."""


class IllegalTransition(RuntimeError):
    """A room was asked to move where its state table does not go: a bug in the hub."""


class Residency:
    """One room name's life in this process: its state and what that state holds.

    Attributes:
        room: the loaded room, in LIVE, DRAINING, UNLOADING and EVICTED; else ``None``.
        task: the load task (LOADING) or the unload task (UNLOADING, EVICTED), if any.
        timer: the grace timer, in DRAINING only.
        buffered: messages other nodes relayed during a load, applied after it.
        loaded_ms: when the room was last loaded, in milliseconds since the epoch.
    """

    __slots__ = ("buffered", "loaded_ms", "name", "room", "state", "task", "timer")

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = RoomState.LOADING
        self.room: Room[Connection] | None = None
        self.task: asyncio.Task[None] | asyncio.Task[Room[Connection]] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.buffered: list[tuple[str, bytes]] | None = None
        self.loaded_ms = 0  # when the room was last loaded (wall clock, as the database's)

    def __repr__(self) -> str:
        return f"<Residency {self.name!r} {self.state.name}>"

    @property
    def loaded(self) -> bool:
        """Whether the room is in memory (``room`` is set)."""
        return self.state in _LOADED

    def move(self, to: RoomState) -> None:
        """Move to ``to``; leaving DRAINING cancels the grace timer.

        Raises:
            IllegalTransition: ``TRANSITIONS`` has no such move.
        """
        current = self.state
        if to not in TRANSITIONS[current]:
            log.error("room %r: illegal transition %s -> %s", self.name, current.name, to.name)
            raise IllegalTransition(f"room {self.name!r}: {current.name} -> {to.name}")
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state = to
        if log.isEnabledFor(logging.DEBUG):
            log.debug("room %r: %s -> %s", self.name, current.name, to.name)


class Rooms(Mapping[str, "Room[Connection]"]):
    """The loaded rooms by name: a read-only view of the residencies (``Hub.rooms``)."""

    __slots__ = ("_residencies",)

    def __init__(self, residencies: dict[str, Residency]) -> None:
        self._residencies = residencies

    def __getitem__(self, name: str) -> Room[Connection]:
        room = self._residencies[name].room
        if room is None:
            raise KeyError(name)
        return room

    def __iter__(self) -> Iterator[str]:
        return (name for name, r in list(self._residencies.items()) if r.room is not None)

    def __len__(self) -> int:
        return sum(1 for r in self._residencies.values() if r.room is not None)
