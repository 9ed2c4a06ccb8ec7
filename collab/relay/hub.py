"""The rooms of one server process: joining, fan-out, persistence, unloading.

This is where the pure ``Room`` meets I/O. ``Hub.receive`` is the relay's hot path: it
decodes a message, lets the room decide, then carries out the room's effects: rows to the
store's queue (``Store.append`` never waits), bytes to connections' queues
(``Connection.send`` never awaits). Nothing on that path awaits, so one slow socket or a
slow disk cannot stall a room.

Each room name has one ``Residency`` (``collab.relay.residency``) whose ``RoomState`` says
where the room is in its life; every move goes through ``Hub._move``, which checks the
state table. Loading is single-flight: the first joiner of a room starts one load task
and every joiner that arrives meanwhile waits for that same task, so nobody sees a
half-loaded room and two loads of one room never race. An empty room drains for
``room_grace`` seconds, then unloads (final checkpoint, commit) unless someone joined.

A room whose document panicked inside yrs (``RoomPoisoned``) is thrown away at once
(RESET): its members are closed with 1011, and the next joiner loads it again from the
store, after the rows it had queued are committed. See ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from collab.clock import now_ms
from collab.config import Config
from collab.errors import (
    CloseCode,
    DocumentDeleted,
    RoomPoisoned,
    StaleLineage,
)
from collab.relay.admission import admit_awareness, admit_update
from collab.relay.connection import Connection
from collab.relay.fanout import Fanout, Stats, final_effects
from collab.relay.persistence import check_backlog, load_room
from collab.relay.remote import RemoteRooms
from collab.relay.residency import Residency, Rooms, RoomState
from collab.relay.tasks import Background
from collab.relay.webhook import Webhooks
from collab.store import Store
from collab.sync.awareness import announced_name
from collab.sync.protocol import (
    AwarenessUpdate,
    MessageType,
    SyncStep2,
    SyncUpdate,
    decode,
    encode_query_awareness,
    update_payload,
)
from collab.sync.room import Append, Room

if TYPE_CHECKING:
    from collab.relay.cluster import Cluster

__all__ = ["Hub"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Hub(RemoteRooms):
    """Every room of this process, and the store behind them.

    ``rooms`` is a read-only view of the loaded rooms by name; ``state(name)`` says where
    a room is in its life.
    """

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._slots: dict[str, Residency] = {}
        self.rooms = Rooms(self._slots)
        self.members = 0  # connections that joined a room and have not left
        self.revoked: set[str] = set()  # ids of revoked tokens
        self.stats = Stats()
        self.webhooks = Webhooks.from_config(config)  # started and closed by the app
        self._background = Background()
        self._checkpointed: dict[str, tuple[Room[Connection], int]] = {}  # checkpoint_all's
        self._fanout = Fanout(store, self.webhooks, self.stats, self._background)
        # Bound once: the hot path calls them for every message.
        self._carry_out = self._fanout.carry_out
        self._append = self._fanout.append

    @property
    def cluster(self) -> Cluster | None:
        """The Redis relay, when several nodes share the rooms (set by the app)."""
        return self._fanout.cluster

    @cluster.setter
    def cluster(self, cluster: Cluster | None) -> None:
        self._fanout.cluster = cluster

    def state(self, name: str) -> RoomState:
        """Where room ``name`` is in its life here (GONE: not in memory)."""
        slot = self._slots.get(name)
        return RoomState.GONE if slot is None else slot.state

    async def join(self, name: str, conn: Connection) -> Room[Connection]:
        """Add ``conn`` to room ``name``, loading the room first if needed.

        Raises:
            DocumentDeleted: the room's document is deleted.
        """
        slot, room = await self._loaded(name)
        if slot.state is RoomState.EVICTED:
            raise DocumentDeleted("document deleted")
        try:
            effects = room.join(conn)
        except RoomPoisoned:
            self._reset(room)
            raise
        if slot.state is not RoomState.LIVE:  # DRAINING or UNLOADING: in use again
            self._move(slot, RoomState.LIVE)
        self._carry_out(room, conn, effects)
        self.members += 1
        return room

    async def apply(
        self, name: str, update: bytes, author: str | None, connection_id: str | None = None
    ) -> int:
        """Apply a change the server makes itself (a history restore) to room ``name``.

        The room is loaded if needed (without a member; it unloads after the grace period
        if nobody joins), every member gets the update, and it is stored under ``author``.

        Returns:
            The room's seq afterwards (unchanged if the update changed nothing).

        Raises:
            ProtocolError: not a valid update.
            Overloaded: the store is too far behind to take more updates.
            DocumentDeleted: the room's document is deleted.
        """
        slot, room = await self._loaded(name)
        if slot.state is RoomState.EVICTED:
            raise DocumentDeleted("document deleted")
        check_backlog(self.store, self.config)
        try:
            effects = room.write(update)
        except RoomPoisoned:
            self._reset(room)
            raise
        for effect in effects:
            if isinstance(effect, Append):
                self._append(
                    room,
                    effect.seq,
                    effect.update,
                    connection_id,
                    author,
                    effect.inserted,
                    effect.deleted,
                )
        self._carry_out(room, None, [e for e in effects if not isinstance(e, Append)])
        if slot.state is RoomState.UNLOADING:  # written to: not finished with after all
            self._drain(slot)
        self._settle(slot)
        return room.seq

    def leave(self, name: str, conn: Connection) -> None:
        """Remove ``conn`` from room ``name``; the room drains if that left it empty."""
        slot = self._slots.get(name)
        room = None if slot is None else slot.room
        if slot is None or room is None:
            return
        if conn in room.members:
            self.members -= 1
            self._carry_out(room, conn, room.leave(conn))
        self._settle(slot)

    async def evict(self, name: str) -> bool:
        """The document of room ``name`` was deleted: close its members with 4404, refuse
        joins and server-side changes, and unload the room once it is empty.

        Returns:
            Whether the room was loaded here.
        """
        slot = self._slots.get(name)
        if slot is not None and slot.state is RoomState.LOADING and slot.task is not None:
            await asyncio.wait([slot.task])  # a joiner is loading it: let the load finish
            slot = self._slots.get(name)
        if slot is None or slot.room is None:
            return False
        if slot.state is not RoomState.EVICTED:
            self._move(slot, RoomState.EVICTED)
            log.info("evicted room %r: its document was deleted", name)
        for member in list(slot.room.members):
            member.close(CloseCode.DOCUMENT_DELETED, "document deleted")
        self._settle(slot)
        return True

    def readmit(self, name: str) -> None:
        """The document of room ``name`` was undeleted: let members join again."""
        slot = self._slots.get(name)
        if slot is None or slot.state is not RoomState.EVICTED or slot.room is None:
            return
        if slot.room.members:
            self._move(slot, RoomState.LIVE)
        else:
            self._drain(slot)

    def checkpoint_all(self) -> None:
        """At shutdown, once the sockets close: queue every changed room's final checkpoint
        for the writer to commit during the close handshakes. Not on several nodes (there
        they come from the log) nor with the store stalled: ``close`` does those."""
        if self.cluster is None and not self.store.stalled:
            for room in list(self.rooms.values()):
                self._carry_out(room, None, final_effects(room), publish=False)
                self._checkpointed[room.name] = (room, room.seq)

    async def close(self) -> None:
        """Checkpoint every room changed since ``checkpoint_all``; commit everything."""
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
        for room in list(self.rooms.values()):
            if self._checkpointed.get(room.name) != (room, room.seq):  # changed since
                self._carry_out(room, None, final_effects(room), publish=False)
        # Checkpoints built from the log, catch-ups, unloads: give them a moment.
        await self._background.wait(5.0)
        await self.store.close()

    def receive(self, room: Room[Connection], conn: Connection, data: bytes) -> None:
        """Handle one binary message from ``conn``.

        Raises:
            ProtocolError: malformed message or update; nothing was applied or relayed.
            Overloaded: the store is too far behind to take more updates.
        """
        stats = self.stats
        stats.messages_in += 1
        stats.bytes_in += len(data)
        try:
            update = update_payload(data)
            if update is not None:  # an Update message: nearly every message, no decode()
                if admit_update(conn, self.store, self.config, self.stats):
                    self._carry_out(room, conn, room.receive_update(conn, update, data))
                return
            if data and data[0] == MessageType.AWARENESS:
                # Checked before decoding: a flood must cost as little as possible.
                admit_awareness(conn, len(data), self.config, self.stats)
            message = decode(data)
            kind = type(message)
            if kind is SyncUpdate or kind is SyncStep2:
                if not admit_update(conn, self.store, self.config, self.stats):
                    return
            elif isinstance(message, AwarenessUpdate) and conn.anonymous:
                conn.announce(announced_name(message.entries))
            self._carry_out(room, conn, room.receive(conn, message, data))
        except RoomPoisoned:
            self._reset(room)
            raise
        except StaleLineage:
            self.stats.stale_refused += 1
            raise

    # --- lifecycle: every state change goes through _move ----------------------------------

    def _move(self, slot: Residency, to: RoomState) -> None:
        """Move ``slot`` to ``to`` (checked against the state table); GONE forgets it.

        Raises:
            IllegalTransition: not a move of the table (a bug).
        """
        slot.move(to)
        if to is RoomState.GONE or to is RoomState.RESET:
            slot.room = None
        if to is RoomState.GONE and self._slots.get(slot.name) is slot:
            del self._slots[slot.name]

    async def _loaded(self, name: str) -> tuple[Residency, Room[Connection]]:
        """The residency of room ``name`` once it is loaded, loading it if needed."""
        while True:
            slot = self._slots.get(name)
            if slot is None or slot.state is RoomState.RESET:
                slot = self._start_load(name, slot)
            if slot.room is not None:
                return slot, slot.room
            load = slot.task
            assert slot.state is RoomState.LOADING and load is not None
            try:
                # shield: a joiner that gives up must not cancel the load others wait for.
                await asyncio.shield(load)
            except asyncio.CancelledError:
                # Nobody may join this load now: the room must still drain when empty.
                load.add_done_callback(lambda _: self._settle_name(name))
                raise
            # Loaded (a failed load raised above); look again: it may have moved on.

    def _start_load(
        self,
        name: str,
        stale: Residency | None,
        before: Callable[[], Awaitable[object]] | None = None,
    ) -> Residency:
        if stale is None:
            slot = self._slots[name] = Residency(name)
        else:
            slot = stale
            self._move(slot, RoomState.LOADING)
        slot.task = asyncio.create_task(
            self._load(slot, stale is not None or before is not None, before),
            name=f"collab-load-{name}",
        )
        return slot

    async def _load(
        self, slot: Residency, stale: bool, before: Callable[[], Awaitable[object]] | None
    ) -> Room[Connection]:
        name, cluster = slot.name, self.cluster
        try:
            if stale:
                # The room was reset: what it queued must be in the database before the
                # new load reads it (bounded: during an outage the join fails with 1013).
                async with self.store.bounded():
                    await self.store.flush()
                stale = False
            if before is not None:
                await before()  # the history is replaced while joiners wait
            if cluster is not None:
                # Subscribe first and hold what arrives meanwhile: an update another node
                # relays during the load is applied after it, not lost.
                slot.buffered = []
                await cluster.subscribe(name)
            try:
                room, skipped = await load_room(self.store, self.config, name)
            except BaseException:
                if cluster is not None:
                    cluster.unsubscribe(name)
                raise
        except BaseException:
            slot.task = None
            slot.buffered = None
            self._move(slot, RoomState.RESET if stale else RoomState.GONE)
            raise
        self.stats.quarantined += skipped
        self.stats.rooms_loaded += 1
        buffered, slot.buffered, slot.task = slot.buffered or [], None, None
        slot.room, slot.loaded_ms = room, now_ms()
        self._move(slot, RoomState.LIVE)
        for origin, data in buffered:
            self.receive_remote(name, origin, data)
        if cluster is not None:
            # What another node received just before we subscribed may reach the
            # database only after we read it: look again once their commits are done.
            self._spawn(
                self._catch_up(room, 3 * self.config.commit_interval + 0.2), "catch-up", room
            )
            cluster.publish(name, encode_query_awareness())
        return room

    def _settle_name(self, name: str) -> None:
        slot = self._slots.get(name)
        if slot is not None:
            self._settle(slot)

    def _settle(self, slot: Residency) -> None:
        """An empty room drains (LIVE -> DRAINING), or, evicted, unloads at once."""
        room = slot.room
        if room is None or room.members:
            return
        if slot.state is RoomState.LIVE:
            self._drain(slot)
        elif slot.state is RoomState.EVICTED and slot.task is None:
            self._start_unload(slot)

    def _drain(self, slot: Residency) -> None:
        self._move(slot, RoomState.DRAINING)
        slot.timer = asyncio.get_running_loop().call_later(
            self.config.room_grace, self._grace_over, slot
        )

    def _grace_over(self, slot: Residency) -> None:
        slot.timer = None
        if slot.state is RoomState.DRAINING:
            self._move(slot, RoomState.UNLOADING)
            self._start_unload(slot)

    def _start_unload(self, slot: Residency) -> None:
        if slot.room is not None:
            slot.task = self._spawn(self._unload(slot, slot.room), "unload", slot.room)

    async def _unload(self, slot: Residency, room: Room[Connection]) -> None:
        try:
            self._carry_out(room, None, final_effects(room))
            # Only drop the room once its updates are committed: a later load reads the
            # database, and must find everything.
            await self.store.flush()
        finally:
            if slot.task is asyncio.current_task():
                slot.task = None
        if slot.room is not room or room.members:
            return  # reset meanwhile, or someone joined
        if slot.state is not RoomState.UNLOADING and slot.state is not RoomState.EVICTED:
            return  # joined, written to or readmitted while we flushed: keep it
        self._move(slot, RoomState.GONE)
        if self.cluster is not None:
            self.cluster.unsubscribe(room.name)
        self.stats.rooms_unloaded += 1
        log.debug("unloaded room %r at seq %d", room.name, room.seq)

    def _reset(self, room: Room[Connection]) -> None:
        """Throw away ``room``, whose document panicked in yrs: close its members with 1011
        (they reconnect and re-send what they hold), and let the next join reload it."""
        members = self._throw_away(room)
        if members is None:
            return  # reset already
        for member in members:
            member.close(CloseCode.INTERNAL_ERROR, "document reset, reconnect")
        self.stats.rooms_reset += 1
        log.error(
            "room %r reset: its document failed in yrs; %d members closed with 1011, "
            "reloading from the store at the next join",
            room.name,
            len(members),
        )

    def _throw_away(self, room: Room[Connection]) -> list[Connection] | None:
        """Move ``room`` to RESET and return its members, for the caller to close; ``None``
        if it was thrown away already. The next join loads it again, after its rows are
        committed."""
        slot = self._slots.get(room.name)
        if slot is None or slot.room is not room:
            return None
        self._move(slot, RoomState.RESET)
        members = list(room.members)
        room.members.clear()
        self.members -= len(members)
        if self.cluster is not None:
            self.cluster.unsubscribe(room.name)
        return members

    def replaced(self, name: str, lineage: str | None, retired_ms: int | None) -> bool:
        """Whether room ``name`` holds another history than the stored one, ``lineage``
        (its name last retired one at ``retired_ms``). A room opened before its document
        existed learns the lineage here, unless a retirement came after it was loaded."""
        slot = self._slots.get(name)
        room = None if slot is None else slot.room
        if slot is None or room is None:
            return False
        if room.lineage is None:
            if retired_ms is not None and retired_ms >= slot.loaded_ms:
                return True
            room.lineage = lineage
        return lineage != room.lineage

    async def start_over(
        self, name: str, change: Callable[[], Awaitable[T]] | None = None
    ) -> T | None:
        """Room ``name``'s history was (``change=None``: elsewhere) or is now replaced:
        close its members with 4410, commit what it queued, run ``change`` (the store's
        transaction, e.g. ``DocumentStore.reset``), and load the room again. Joiners wait
        for that load, so nobody joins the old history in between, and nothing the old
        room queued lands in the new one. Returns what ``change`` returned.
        """
        slot = self._slots.get(name)
        while slot is not None and slot.state is RoomState.LOADING and slot.task is not None:
            await asyncio.wait([slot.task])  # never two loads of one room
            slot = self._slots.get(name)
        members: list[Connection] = []
        if slot is not None and slot.room is not None:
            # Closed once the new history is stored: a client that asks which history
            # the document has when it is refused must hear of the new one.
            members = self._throw_away(slot.room) or []
            log.info("room %r started over: its history was replaced", name)
        elif slot is None and change is None:
            return None  # not loaded here: nothing to throw away
        done: list[T] = []
        slot = self._start_load(name, slot, change and (lambda: _keep(change, done)))
        task = slot.task
        assert task is not None
        replaced = False
        try:
            await asyncio.shield(task)
            replaced = True
        finally:
            for member in members:  # a failed change leaves the old history: come back
                if replaced:
                    member.close(CloseCode.LINEAGE_RETIRED, "the document was reset")
                else:
                    member.close(CloseCode.TRY_AGAIN_LATER, "reset failed, reconnect")
            self._settle_name(name)
        return done[0] if done else None

    def _spawn(
        self, coro: Coroutine[Any, Any, None], what: str, room: Room[Connection]
    ) -> asyncio.Task[None]:
        """Run ``coro`` in the background: referenced until done, a failure logged."""
        return self._background.spawn(coro, name=f"collab-{what}-{room.name}")


async def _keep(change: Callable[[], Awaitable[T]], into: list[T]) -> None:
    into.append(await change())
