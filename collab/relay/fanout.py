"""Fan-out: carrying out a room's effects, on the relay's hot path.

A room (``collab.sync.room``) returns effects; ``Fanout.carry_out`` performs them: rows
to the store's queue (``Store.append`` never waits), bytes to each member's queue
(``Connection.send`` never awaits), a copy to other nodes (``Cluster.publish``). One
member's failure never stops delivery to the others. Nothing here awaits, and a
broadcast builds its WebSocket frame once for the whole room. See ``docs/fan-out.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collab.errors import CloseCode, RoomPoisoned
from collab.relay.connection import DIRECT_MAX, Connection, binary_frame
from collab.relay.persistence import checkpoint_from_log
from collab.relay.tasks import Background
from collab.relay.webhook import Webhooks
from collab.store import Store
from collab.sync.room import Append, Broadcast, Checkpoint, Outgoing, Reply, Room

if TYPE_CHECKING:
    from collab.relay.cluster import Cluster

__all__ = ["Fanout", "Stats", "final_effects"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Stats:
    """Counters since start (exposed by the health endpoint, and metrics later)."""

    messages_in: int = 0
    bytes_in: int = 0
    updates_in: int = 0
    deliveries: int = 0
    bytes_out: int = 0
    rooms_loaded: int = 0
    rooms_unloaded: int = 0
    rooms_reset: int = 0
    """Rooms thrown away after their document panicked in yrs (reloaded from the store)."""
    awareness_limited: int = 0
    """Connections closed for sending awareness faster than their limit."""
    quarantined: int = 0
    """Stored updates (or checkpoints) skipped at load because they cannot be applied."""
    stale_refused: int = 0
    """Uploads refused for carrying a history the document retired (4410)."""


class Fanout:
    """Carries out rooms' effects: the store, the members, the other nodes.

    Args:
        store: where update rows and checkpoints go.
        webhooks: told about every stored update.
        stats: the counters to update.
        background: where a checkpoint built from the log runs (several nodes).
    """

    __slots__ = ("_background", "cluster", "stats", "store", "webhooks")

    def __init__(
        self, store: Store, webhooks: Webhooks, stats: Stats, background: Background
    ) -> None:
        self.store = store
        self.webhooks = webhooks
        self.stats = stats
        self._background = background
        self.cluster: Cluster | None = None  # set when several nodes share the rooms

    def carry_out(
        self,
        room: Room[Connection],
        conn: Connection | None,
        effects: list[Outgoing[Connection]],
        publish: bool = True,
    ) -> None:
        """Carry out ``effects`` of ``room``: ``conn`` gets the replies, the members the
        broadcasts (and other nodes, if ``publish``), the store the rows."""
        cluster = self.cluster
        stats = self.stats
        for effect in effects:
            # Dispatch on the exact type: a match statement with class patterns costs
            # several times more, and this runs for every relayed update.
            if type(effect) is Broadcast:
                data = effect.data
                if cluster is not None and publish:
                    cluster.publish(room.name, data)
                members = room.members
                exclude = effect.exclude
                sent = len(members) - (exclude in members)  # counted once, not per member
                # Built once for the room, not once per member (and only when it can be
                # written directly: larger messages go through aiohttp's writer).
                frame = binary_frame(data) if len(data) <= DIRECT_MAX else None
                for member in members:
                    if member is not exclude:
                        try:
                            member.send(data, frame)
                        except Exception:  # one member's failure never stops the others
                            log.exception("sending to %r failed", member)
                            member.abort(CloseCode.INTERNAL_ERROR)
                stats.deliveries += sent
                stats.bytes_out += sent * len(data)
            elif type(effect) is Append:
                sender = effect.member
                self.append(
                    room,
                    effect.seq,
                    effect.update,
                    None if sender is None else sender.id,
                    None if sender is None else sender.author,
                    effect.inserted,
                    effect.deleted,
                )
            elif type(effect) is Reply:
                if conn is not None:
                    conn.send(effect.data)
            elif type(effect) is Checkpoint:
                if self.store.stalled:
                    # The store cannot commit: a checkpoint (a whole copy of the document)
                    # would only be dropped at the next failure. The log has everything;
                    # the room checkpoints again later.
                    continue
                if cluster is None:
                    self.store.checkpoint(room.doc_id, effect.upto_seq, effect.state)
                else:
                    # This node's document also holds updates other nodes have not
                    # committed yet: only the log says what "as of seq N" is.
                    self._background.spawn(
                        checkpoint_from_log(self.store, room.name),
                        name=f"collab-checkpoint-{room.name}",
                    )

    def append(
        self,
        room: Room[Connection],
        seq: int,
        update: bytes,
        connection_id: str | None,
        author: str | None,
        inserted: int | None = None,
        deleted: int | None = None,
    ) -> None:
        """Queue one update row for the store and announce it to the webhooks.

        ``inserted`` and ``deleted`` are the counts the validator took (``Append``), stored
        with the row for the timeline; ``None`` stores ``NULL``, which the timeline
        measures when it reads the row.
        """
        self.store.append(
            room.doc_id,
            # Several nodes share the log: numbers are assigned at commit.
            None if self.cluster is not None else seq,
            update,
            connection_id=connection_id,
            author=author,
            inserted=inserted,
            deleted=deleted,
        )
        self.webhooks.document_changed(room.name, seq, author)


def final_effects(room: Room[Connection]) -> list[Outgoing[Connection]]:
    """``room.unload()``, but a document found poisoned only now costs its final
    checkpoint, never the shutdown: the log holds every update anyway."""
    try:
        return room.unload()
    except RoomPoisoned:
        log.error("room %r: document failed in yrs at unload; no final checkpoint", room.name)
        return []
