"""The rooms of one server process: loading, fan-out, persistence, unloading.

This is where the pure ``Room`` meets I/O. ``Hub.receive`` is the relay's hot path: it
decodes a message, lets the room decide, then carries out the room's effects: bytes to
connections' queues (``Connection.send`` never awaits), rows to the store's queue
(``Store.append`` never waits either). Nothing on that path awaits, so one slow socket or
a slow disk cannot stall a room.

Loading is single-flight: the first joiner of a room starts one load task and every
joiner that arrives meanwhile waits for that same task, so nobody sees a half-loaded
room and two loads of one room never race.

A room whose document panicked inside yrs (``RoomPoisoned``) is thrown away at once: its
members are closed with 1011, and the next joiner loads it again from the store, after
the rows it had queued are committed. Stored updates that cannot be applied are skipped
at load and counted (``history.replay``), so no stored row can make a document
unopenable. See ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collab.config import Config
from collab.errors import (
    CloseCode,
    CollabError,
    DocumentDeleted,
    MessageTooBig,
    MissingStructs,
    Overloaded,
    RateLimited,
    RoomPoisoned,
)
from collab.history.replay import replay
from collab.relay.connection import DIRECT_MAX, Connection, binary_frame
from collab.relay.webhook import Webhooks
from collab.store import Store
from collab.sync.protocol import (
    EMPTY_UPDATE,
    AwarenessUpdate,
    MessageType,
    QueryAwareness,
    SyncStep2,
    SyncUpdate,
    decode,
    encode_awareness,
    encode_query_awareness,
    encode_update,
    update_payload,
)
from collab.sync.room import Append, Broadcast, Checkpoint, Outgoing, Reply, Room

if TYPE_CHECKING:
    from collab.relay.cluster import Cluster

__all__ = ["Hub", "Stats"]

log = logging.getLogger(__name__)

# Replaying more than this many bytes runs in a worker thread, off the event loop.
_REPLAY_IN_THREAD = 256 * 1024


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


class Hub:
    """Every loaded room of this process, and the store behind them."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.rooms: dict[str, Room[Connection]] = {}
        self.members = 0  # connections that joined a room and have not left
        self.revoked: set[str] = set()  # ids of revoked tokens
        self.stats = Stats()
        self.webhooks = Webhooks.from_config(config)  # started and closed by server.py
        self._loads: dict[str, asyncio.Task[Room[Connection]]] = {}
        self._unload_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.cluster: Cluster | None = None  # set when several nodes share the rooms
        self._buffered: dict[str, list[tuple[str, bytes]]] = {}  # remote messages during loads
        # Loaded rooms whose document was deleted: members closed, joins refused, unloaded
        # as soon as they are empty.
        self._evicted: set[str] = set()
        # Rooms thrown away (RoomPoisoned) whose rows may still be queued: their next load
        # waits for the store to commit them first.
        self._stale: set[str] = set()

    async def join(self, name: str, conn: Connection) -> Room[Connection]:
        """Add ``conn`` to room ``name``, loading the room first if needed.

        Raises:
            DocumentDeleted: the room's document is deleted.
        """
        room = await self._room(name)
        if name in self._evicted:
            raise DocumentDeleted("document deleted")
        timer = self._unload_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        try:
            effects = room.join(conn)
        except RoomPoisoned:
            self._reset(room)
            raise
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
        room = await self._room(name)
        if name in self._evicted:
            raise DocumentDeleted("document deleted")
        self._check_backlog()
        try:
            effects = room.write(update)
        except RoomPoisoned:
            self._reset(room)
            raise
        for effect in effects:
            if isinstance(effect, Append):
                self._append(room, effect.seq, effect.update, connection_id, author)
        self._carry_out(room, None, [e for e in effects if not isinstance(e, Append)])
        if not room.members and name not in self._unload_timers:
            loop = asyncio.get_running_loop()
            self._unload_timers[name] = loop.call_later(
                self.config.room_grace, self._start_unload, name
            )
        return room.seq

    async def _room(self, name: str) -> Room[Connection]:
        room = self.rooms.get(name)
        if room is None:
            load = self._loads.get(name)
            if load is None:
                load = asyncio.create_task(self._load(name), name=f"collab-load-{name}")
                self._loads[name] = load
                load.add_done_callback(lambda _: self._loads.pop(name, None))
            # shield: a joiner that gives up must not cancel the load others wait for.
            room = await asyncio.shield(load)
        return room

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
                if self._may_write(conn):
                    self._carry_out(room, conn, room.receive_update(conn, update, data))
                return
            if data and data[0] == MessageType.AWARENESS:
                # Checked before decoding: a flood must cost as little as possible.
                self._admit_awareness(conn, len(data))
            message = decode(data)
            kind = type(message)
            if kind is SyncUpdate or kind is SyncStep2:
                if not self._may_write(conn):
                    return
            elif isinstance(message, AwarenessUpdate) and conn.author is None:
                conn.author = _name_from_awareness(message)
            self._carry_out(room, conn, room.receive(conn, message, data))
        except RoomPoisoned:
            self._reset(room)
            raise

    def _may_write(self, conn: Connection) -> bool:
        """Admit one update from ``conn``, counting it; ``False``: drop it (read-only).

        Raises:
            Overloaded: the store is too far behind to take more updates.
            RateLimited: ``conn`` sends updates faster than its limit.
        """
        if conn.read_only:
            log.debug("%r: dropped a write from a read-only member", conn)
            return False
        self._check_backlog()
        bucket = conn.bucket
        if bucket is not None and not bucket.take(time.monotonic()):
            raise RateLimited("too many updates, slow down")
        self.stats.updates_in += 1
        return True

    def _check_backlog(self) -> None:
        """Refuse a write while storage is behind: past ``store_max_backlog`` bytes not yet
        committed, or past the small ``store_stalled_backlog`` while the store cannot
        commit at all (an outage), so little is relayed that is not stored.

        Raises:
            Overloaded: either bound is passed (1013; the client keeps its edit and
                re-sends it when it reconnects).
        """
        backlog = self.store.backlog_bytes
        config = self.config
        if backlog > config.store_max_backlog or (
            backlog > config.store_stalled_backlog and self.store.stalled
        ):
            raise Overloaded("storage is behind, retry later")

    def _admit_awareness(self, conn: Connection, size: int) -> None:
        """Admit one awareness message of ``size`` bytes from ``conn``.

        Raises:
            MessageTooBig: larger than ``max_awareness_size``.
            RateLimited: ``conn`` sends awareness faster than its limit.
        """
        if size > self.config.max_awareness_size:
            raise MessageTooBig("awareness update too large")
        bucket = conn.awareness_bucket
        if bucket is not None and not bucket.take(time.monotonic()):
            self.stats.awareness_limited += 1
            raise RateLimited("too many awareness updates, slow down")

    def leave(self, name: str, conn: Connection) -> None:
        """Remove ``conn`` from room ``name``; unload the room later if it is empty."""
        room = self.rooms.get(name)
        if room is None:
            return
        if conn in room.members:
            self.members -= 1
            self._carry_out(room, conn, room.leave(conn))
        if not room.members and name not in self._unload_timers:
            grace = 0.0 if name in self._evicted else self.config.room_grace
            loop = asyncio.get_running_loop()
            self._unload_timers[name] = loop.call_later(grace, self._start_unload, name)

    async def evict(self, name: str) -> bool:
        """The document of room ``name`` was deleted: close its members with 4404, refuse
        joins and server-side changes, and unload the room once it is empty.

        Returns:
            Whether the room was loaded here.
        """
        load = self._loads.get(name)
        if load is not None:  # a joiner may be loading it right now: let the load finish
            await asyncio.wait([load])
        room = self.rooms.get(name)
        if room is None:
            return False
        if name in self._evicted and not room.members:
            return True  # evicted already, unloading
        self._evicted.add(name)
        for member in list(room.members):
            member.close(CloseCode.DOCUMENT_DELETED, "document deleted")
        if not room.members:
            timer = self._unload_timers.pop(name, None)
            if timer is not None:
                timer.cancel()
            self._start_unload(name)
        log.info("evicted room %r: its document was deleted", name)
        return True

    def readmit(self, name: str) -> None:
        """The document of room ``name`` was undeleted: let members join again."""
        self._evicted.discard(name)

    async def close(self) -> None:
        """Checkpoint every room and commit everything (server shutdown)."""
        for timer in self._unload_timers.values():
            timer.cancel()
        self._unload_timers.clear()
        for room in list(self.rooms.values()):
            self._carry_out(room, None, self._unload_effects(room), publish=False)
        if self._tasks:  # checkpoints built from the log, catch-ups: give them a moment
            _, pending = await asyncio.wait(set(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
        await self.store.close()

    def _carry_out(
        self,
        room: Room[Connection],
        conn: Connection | None,
        effects: list[Outgoing[Connection]],
        publish: bool = True,
    ) -> None:
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
                self._append(
                    room,
                    effect.seq,
                    effect.update,
                    sender.id if sender else None,
                    sender.author if sender else None,
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
                    self._spawn(self._checkpoint_from_log(room.name))

    def _append(
        self,
        room: Room[Connection],
        seq: int,
        update: bytes,
        connection_id: str | None,
        author: str | None,
    ) -> None:
        self.store.append(
            room.doc_id,
            # Several nodes share the log: numbers are assigned at commit.
            None if self.cluster is not None else seq,
            update,
            connection_id=connection_id,
            author=author,
        )
        self.webhooks.document_changed(room.name, seq, author)

    def _unload_effects(self, room: Room[Connection]) -> list[Outgoing[Connection]]:
        """``room.unload()``, but a document found poisoned only now costs its final
        checkpoint, never the shutdown: the log holds every update anyway."""
        try:
            return room.unload()
        except RoomPoisoned:
            log.error("room %r: document failed in yrs at unload; no final checkpoint", room.name)
            return []

    def _reset(self, room: Room[Connection]) -> None:
        """Throw away ``room``, whose document panicked in yrs: close its members with 1011
        (they reconnect and re-send what they hold), and let the next join reload it."""
        name = room.name
        if self.rooms.get(name) is not room:
            return  # reset already
        del self.rooms[name]
        self._stale.add(name)
        timer = self._unload_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        members = list(room.members)
        room.members.clear()
        self.members -= len(members)
        for member in members:
            member.close(CloseCode.INTERNAL_ERROR, "document reset, reconnect")
        if self.cluster is not None:
            self.cluster.unsubscribe(name)
        self.stats.rooms_reset += 1
        log.error(
            "room %r reset: its document failed in yrs; %d members closed with 1011, "
            "reloading from the store at the next join",
            name,
            len(members),
        )

    async def _load(self, name: str) -> Room[Connection]:
        if name in self._stale:
            # The room was reset: what it queued must be in the database before the new
            # load reads it (bounded: during an outage the join fails with 1013).
            async with self.store.bounded():
                await self.store.flush()
            self._stale.discard(name)
        cluster = self.cluster
        if cluster is not None:
            # Subscribe first and hold what arrives meanwhile: an update another node
            # relays during the load is applied after it, not lost.
            self._buffered[name] = []
            await cluster.subscribe(name)
        try:
            room = await self._load_from_store(name)
        except BaseException:
            if cluster is not None:
                cluster.unsubscribe(name)
            raise
        finally:
            buffered = self._buffered.pop(name, [])
        for origin, data in buffered:
            self.receive_remote(name, origin, data)
        if cluster is not None:
            # What another node received just before we subscribed may reach the
            # database only after we read it: look again once their commits are done.
            self._spawn(self._resync_later(name, 3 * self.config.commit_interval + 0.2))
            cluster.publish(name, encode_query_awareness())
        return room

    async def _load_from_store(self, name: str) -> Room[Connection]:
        loaded = await self.store.load(name)
        if loaded.deleted_ms is not None:
            raise DocumentDeleted("document deleted")
        size = len(loaded.checkpoint or b"") + sum(map(len, loaded.updates))
        skipped: list[int] = []
        if size > _REPLAY_IN_THREAD:
            doc = await asyncio.to_thread(replay, loaded.checkpoint, loaded.updates, skipped)
        else:
            doc = replay(loaded.checkpoint, loaded.updates, skipped)
        if skipped:
            self.stats.quarantined += len(skipped)
            # Positions, not seqs: compaction may leave gaps between seqs.
            log.error(
                "room %r: %d stored rows cannot be applied and were skipped (kept in the "
                "database): %s after the checkpoint at seq %d",
                name,
                len(skipped),
                ", ".join("the checkpoint" if i < 0 else f"update #{i + 1}" for i in skipped),
                loaded.checkpoint_seq,
            )
        room: Room[Connection] = Room(
            name,
            loaded.doc_id,
            doc,
            seq=loaded.last_seq,
            checkpoint_seq=loaded.checkpoint_seq,
            checkpoint_updates=self.config.checkpoint_updates,
            checkpoint_bytes=self.config.checkpoint_bytes,
            size=size,
            max_size=self.config.max_document_size,
        )
        self.rooms[name] = room
        self.stats.rooms_loaded += 1
        log.debug("loaded room %r: %d updates after checkpoint", name, len(loaded.updates))
        return room

    def _start_unload(self, name: str) -> None:
        self._unload_timers.pop(name, None)
        task = asyncio.create_task(self._unload(name), name=f"collab-unload-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unload(self, name: str) -> None:
        room = self.rooms.get(name)
        if room is None or room.members:
            return
        self._carry_out(room, None, self._unload_effects(room))
        # Only drop the room once its updates are committed: a later load reads the
        # database, and must find everything.
        await self.store.flush()
        if room.members or self.rooms.get(name) is not room:
            return  # someone joined while we flushed; keep it
        del self.rooms[name]
        self._evicted.discard(name)
        if self.cluster is not None:
            self.cluster.unsubscribe(name)
        self.stats.rooms_unloaded += 1
        log.debug("unloaded room %r at seq %d", name, room.seq)

    # --- several nodes (collab.relay.cluster) -------------------------------------------------

    def receive_remote(self, name: str, origin: str, data: bytes) -> None:
        """Apply a message another node published for room ``name`` to local members."""
        buffered = self._buffered.get(name)
        if buffered is not None:
            buffered.append((origin, data))
            return
        room = self.rooms.get(name)
        if room is None:
            return
        try:
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
            self._spawn(self._resync_later(name, 0.0))
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
        for name in list(self.rooms):
            self._spawn(self._resync_later(name, 0.0))
            self._spawn(self._resync_later(name, 3 * self.config.commit_interval + 0.5))

    async def _resync_later(self, name: str, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        room = self.rooms.get(name)
        if room is None:
            return
        loaded = await self.store.load(name)
        stored = await asyncio.to_thread(replay, loaded.checkpoint, loaded.updates)
        missing = stored.get_update(room.doc.get_state())
        if self.rooms.get(name) is room and missing != EMPTY_UPDATE:
            effects = room.receive_remote("", SyncUpdate(missing), encode_update(missing))
            self._carry_out(room, None, effects, publish=False)

    async def _checkpoint_from_log(self, name: str) -> None:
        await self.store.flush()
        loaded = await self.store.load(name)
        if not loaded.updates:
            return
        stored = await asyncio.to_thread(replay, loaded.checkpoint, loaded.updates)
        self.store.checkpoint(loaded.doc_id, loaded.last_seq, stored.get_update())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """A background task ended: forget it, and say so if it failed (a catch-up or a
        checkpoint from the log can meet a storage outage; the next one retries)."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("background task %s failed: %r", task.get_name(), exc)


def _name_from_awareness(message: AwarenessUpdate) -> str | None:
    for entry in message.entries:
        user = (entry.state or {}).get("user")
        if isinstance(user, dict) and isinstance(user.get("name"), str):
            return str(user["name"])[:255]
    return None
