"""What other nodes relay to this process's rooms (several nodes: ``collab.relay.cluster``).

``RemoteRooms`` is the part of ``Hub`` that applies what another node published for a
room (updates and awareness its clients sent there), forgets a dead node's cursors, and
catches rooms up from the database after relayed messages were missed. Another node's
updates are relayed to local members, never stored: their node stored them. ``Hub``
inherits it; it is a module of its own so that the hub's own life (join, leave, load,
unload) reads in one file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from collab.config import Config
from collab.errors import CollabError, MissingStructs, RoomPoisoned
from collab.relay.connection import Connection
from collab.relay.persistence import missing_from_store
from collab.relay.residency import Residency, Rooms
from collab.store import Store
from collab.sync.protocol import (
    QueryAwareness,
    SyncUpdate,
    decode,
    encode_awareness,
    encode_update,
    update_payload,
)
from collab.sync.room import Room

if TYPE_CHECKING:
    from collab.relay.cluster import Cluster

__all__ = ["RemoteRooms"]

log = logging.getLogger(__name__)


class RemoteRooms:
    """Applies other nodes' messages to the rooms of this process (mixed into ``Hub``)."""

    # What it uses of the hub (``Hub.__init__`` sets them).
    store: Store
    config: Config
    rooms: Rooms
    _slots: dict[str, Residency]
    _carry_out: Callable[..., None]
    _reset: Callable[[Room[Connection]], None]
    _spawn: Callable[[Coroutine[Any, Any, None], str, Room[Connection]], asyncio.Task[None]]

    @property
    def cluster(self) -> Cluster | None:
        raise NotImplementedError  # Hub's

    def receive_remote(self, name: str, origin: str, data: bytes) -> None:
        """Apply a message another node published for room ``name`` to local members.

        Never raises for what the message holds: bytes no node sent are refused and logged
        like a buggy node's, and an update yrs panics on resets the room as a local one
        would (``docs/cluster.md``, "Trust").
        """
        slot = self._slots.get(name)
        if slot is None:
            return
        if slot.buffered is not None:  # loading: applied once the load is done
            slot.buffered.append((origin, data))
            return
        room = slot.room
        if room is None:
            return
        try:
            update = update_payload(data)
            if update is not None:  # an Update message: nearly every message, no decode()
                effects = room.receive_remote_update(update, data)
            else:
                message = decode(data)
                if isinstance(message, QueryAwareness):
                    local = room.local_awareness()
                    if local and self.cluster is not None:
                        self.cluster.publish(name, encode_awareness(local))
                    return
                effects = room.receive_remote(origin, message, data)
        except RoomPoisoned:
            self._reset(room)
            return
        except MissingStructs:
            # Relayed before what it builds on reached us: catch up from the database.
            self._spawn(self._catch_up(room, 0.0), "catch-up", room)
            return
        except CollabError as exc:
            log.warning("ignored an invalid message from node %s: %s", origin, exc.reason)
            return
        self._carry_out(room, None, effects, publish=False)

    def forget_node(self, origin: str) -> None:
        """Another node died: remove its clients' awareness from every room here."""
        for room in list(self.rooms.values()):
            self._carry_out(room, None, room.forget_node(origin), publish=False)

    def resync_all(self) -> None:
        """Catch every loaded room up from the database (after missing relayed messages)."""
        for room in list(self.rooms.values()):
            self._spawn(self._catch_up(room, 0.0), "catch-up", room)
            self._spawn(
                self._catch_up(room, 3 * self.config.commit_interval + 0.5), "catch-up", room
            )

    async def _catch_up(self, room: Room[Connection], delay: float) -> None:
        """After ``delay`` seconds, apply what the database has that ``room`` lacks."""
        if delay:
            await asyncio.sleep(delay)
        if self.rooms.get(room.name) is not room:
            return
        missing = await missing_from_store(self.store, room)
        if missing is not None and self.rooms.get(room.name) is room:
            effects = room.receive_remote("", SyncUpdate(missing), encode_update(missing))
            self._carry_out(room, None, effects, publish=False)
