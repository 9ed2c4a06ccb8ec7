"""A document room: its Yjs document, its members and their awareness states.

PURE: no I/O and no asyncio. ``Room.join`` / ``receive`` / ``leave`` take a member (any
hashable object the caller uses to identify a connection) and return a list of
``Outgoing`` effects: replies to that member, broadcasts, updates to append to the store
and checkpoints to write. ``collab.relay.hub`` carries them out. Keeping the decisions here is
what lets ``tests/sync/test_room.py`` check the whole protocol without a socket.

Relay rule: an update is applied to the room's document first, and only stored and
relayed if that succeeded, so a malformed update never reaches anyone. Among the effects
of an update, the ``Append`` comes before the ``Broadcast``: whoever carries them out
queues the row for the store before any byte goes to a member, so a failure while
delivering can never skip storing (store before send).

Every call into the document on client data is guarded: yrs reports some malformed input
with a Rust panic (``pycrdt`` raises ``PanicException``, a ``BaseException``), after which
the document may be half-changed. Such a call raises ``RoomPoisoned`` and the room must be
thrown away (``Hub`` reloads it from the store).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

from pycrdt import Doc, get_update

from collab.errors import (
    BadRoomName,
    DocumentTooLarge,
    MissingStructs,
    ProtocolError,
    RoomPoisoned,
    StaleLineage,
)
from collab.sync.lineage import Retired
from collab.sync.name import has_control_characters
from collab.sync.protocol import (
    EMPTY_UPDATE,
    AwarenessEntry,
    AwarenessUpdate,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    encode_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from collab.sync.state_vector import check_state_vector, decode_state_vector
from collab.sync.validator import check_update_for, check_update_measured
from collab.sync.ydoc import apply_unless_known, is_panic, known, state_of, update_of

__all__ = [
    "Append",
    "Broadcast",
    "Checkpoint",
    "Outgoing",
    "Reply",
    "Room",
    "validate_room_name",
]

M = TypeVar("M", bound=Hashable)

_STATE_CACHE_SIZE = 4


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``data`` to the member whose message caused this."""

    data: bytes


# Broadcast and Append are built for every relayed update, so they are not frozen: a
# frozen dataclass sets each field through object.__setattr__, which made building these
# two about 7% of the instructions of Hub.receive (measured with callgrind).
# Effects are values all the same: nothing mutates or hashes them.


@dataclass(slots=True)
class Broadcast(Generic[M]):
    """Send ``data`` to every member of the room except ``exclude``."""

    data: bytes
    exclude: M | None


@dataclass(slots=True)
class Append(Generic[M]):
    """Store ``update`` as the room's update number ``seq``, sent by ``member``, with the
    characters it inserts and deletes (``validator.check_update_measured``: counted while
    validating, so the timeline never decodes the row; ``None``: not counted)."""

    seq: int
    update: bytes
    member: M | None
    inserted: int | None = None
    deleted: int | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Store ``state`` (the whole document as one update) as of update ``upto_seq``."""

    upto_seq: int
    state: bytes


Outgoing = Reply | Broadcast[M] | Append[M] | Checkpoint


class _Guard:
    """``with _GUARD:`` around a document call turns a yrs panic into ``RoomPoisoned``."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and is_panic(exc):
            raise RoomPoisoned("document reset, reconnect") from exc


_GUARD = _Guard()


def validate_room_name(name: str, max_length: int) -> str:
    """Check a room name taken from the URL.

    Raises:
        BadRoomName: empty, longer than ``max_length`` characters or with control
            characters.
    """
    if not name:
        raise BadRoomName("empty room name")
    if len(name) > max_length:
        raise BadRoomName(f"room name longer than {max_length} characters")
    if has_control_characters(name):
        raise BadRoomName("room name contains control characters")
    return name


@dataclass(eq=False)
class Room(Generic[M]):
    """One document and the members editing it.

    Args:
        name: the room name, as validated.
        doc_id: the store's id for the document.
        doc: the document, already loaded with everything stored.
        seq: the sequence number of the last stored update.
        checkpoint_seq: the ``upto_seq`` of the newest stored checkpoint.
    """

    name: str
    doc_id: int
    doc: Doc[Any]
    seq: int = 0
    checkpoint_seq: int = 0
    checkpoint_updates: int = 1000
    checkpoint_bytes: int = 1024 * 1024
    size: int = 0
    """Bytes of stored state: the last checkpoint plus the updates since (an upper bound
    of the document's encoded size)."""
    max_size: int = 0
    """Refuse updates that would take ``size`` past this (0: no limit)."""
    members: dict[M, set[int]] = field(default_factory=dict)
    remote: dict[str, set[int]] = field(default_factory=dict)
    """Awareness client ids announced through other server nodes, by node id."""
    awareness: dict[int, AwarenessEntry] = field(default_factory=dict)
    _bytes_since_checkpoint: int = 0
    # step2 messages already encoded for the current document version, by state vector:
    # a burst of late joiners costs one encode, not one each.
    _state_cache: dict[bytes, bytes] = field(default_factory=dict)
    # The document's state vector as {client: next clock}, kept up to date from the spans
    # of each applied update (decoding the whole state vector per update would cost time
    # in proportion to every client that ever edited the document).
    _clocks: dict[int, int] = field(default_factory=dict)
    resyncs: int = 0
    """Updates that depended on structs the document lacks, answered with a SyncStep1."""
    retired: Retired | None = None
    """The lineages this document retired: updates carrying their structs are refused
    (``collab.sync.lineage``). ``None``: it never retired one."""
    lineage: str | None = None
    """Which history of its name this room holds (``None``: not known yet, a document
    created after the room opened). A server that finds another one stored starts the
    room over (``Hub.start_over``)."""

    def __post_init__(self) -> None:
        self._sync_clocks()

    def _sync_clocks(self) -> None:
        with _GUARD:
            self._clocks = decode_state_vector(state_of(self.doc))

    def join(self, member: M) -> list[Outgoing[M]]:
        """Add ``member``: send it our SyncStep1 and the awareness states we know.

        The SyncStep1 makes a reconnecting client upload whatever it edited offline or
        whatever the server lost in a crash.
        """
        with _GUARD:
            state = state_of(self.doc)
        self.members[member] = set()
        out: list[Outgoing[M]] = [Reply(encode_sync_step1(state))]
        if self.awareness:
            out.append(Reply(encode_awareness(list(self.awareness.values()))))
        return out

    def leave(self, member: M) -> list[Outgoing[M]]:
        """Remove ``member`` and broadcast the removal of its awareness states."""
        return self._remove_awareness(self.members.pop(member, set()))

    def _remove_awareness(self, client_ids: set[int]) -> list[Outgoing[M]]:
        removed = []
        for client_id in client_ids:
            entry = self.awareness.pop(client_id, None)
            if entry is not None:
                # Same clock, null state: y-protocols drops a state on exactly this.
                removed.append(AwarenessEntry(client_id, entry.clock, None))
        if removed:
            return [Broadcast(encode_awareness(removed), None)]
        return []

    def receive(self, member: M, message: Message, raw: bytes) -> list[Outgoing[M]]:
        """Handle one decoded message from ``member``; ``raw`` is the message as received.

        Raises:
            ProtocolError: the message carries an invalid Yjs update.
        """
        if type(message) is SyncUpdate:  # the hot path first
            return self.receive_update(member, message.update, raw)
        if isinstance(message, SyncStep1):
            return [Reply(self._sync_step2(message.state_vector))]
        if isinstance(message, SyncStep2):
            return self._apply_step2(member, message.update)
        if isinstance(message, AwarenessUpdate):
            return self._awareness(self.members.get(member), message, raw)
        if isinstance(message, QueryAwareness):
            return [Reply(encode_awareness(list(self.awareness.values())))]
        return []

    def receive_update(self, member: M, update: bytes, raw: bytes) -> list[Outgoing[M]]:
        """Handle an Update message from ``member`` carrying ``update``; ``raw`` is the
        message as received. The same as ``receive`` with a ``SyncUpdate``, for the relay's
        hot path, which takes the update out of the message without building one
        (``protocol.update_payload``).

        An update that depends on structs the document lacks is not applied: the client
        holds them (it built on them), so it gets our SyncStep1 and answers with a SyncStep2
        of everything we lack, this update included. That is how a client that edited
        while the server lost its last commits (a crash) catches the server up.

        Raises:
            ProtocolError: ``update`` is not a valid Yjs update.
        """
        try:
            return self._apply(member, update, raw)
        except MissingStructs:
            self.resyncs += 1
            with _GUARD:
                state = state_of(self.doc)
            return [Reply(encode_sync_step1(state))]

    def holds(self, update: bytes) -> bool:
        """Whether the document already has every struct of ``update`` (a read-only
        member's SyncStep2 that asks for nothing to be written). Deletions are not
        compared: a read-only member cannot delete anything anyway.

        Raises:
            ProtocolError: ``update`` is not a valid Yjs update.
        """
        try:
            check_update_for(update, self._clocks)
        except MissingStructs:
            return False
        try:
            with _GUARD:
                return update[0] == 0 or known(self.doc, update)  # no structs, or all known
        except ValueError as exc:
            raise ProtocolError("invalid Yjs update") from exc

    def write(self, update: bytes, member: M | None = None) -> list[Outgoing[M]]:
        """Apply an update made by the server itself (an API call, a restore).

        Raises:
            ProtocolError: the update is invalid.
        """
        return self._apply(member, update, encode_update(update), relay_to_sender=True)

    def receive_remote(self, origin: str, message: Message, raw: bytes) -> list[Outgoing[M]]:
        """Handle a message another server node relayed (its own client sent it).

        Updates are applied and relayed to every local member but not stored: the node
        that received them stores them. Awareness states are remembered as ``origin``'s,
        so they can be removed if that node dies.

        Raises:
            ProtocolError: an invalid update (another node let it through: a bug there, or
                bytes no node sent).
            MissingStructs: an update that builds on structs this document lacks (it was
                relayed before what it builds on reached this node).
        """
        if type(message) is SyncUpdate:
            return self.receive_remote_update(message.update, raw)
        if isinstance(message, AwarenessUpdate):
            return self._awareness(self.remote.setdefault(origin, set()), message, raw)
        return []

    def receive_remote_update(self, update: bytes, raw: bytes) -> list[Outgoing[M]]:
        """``receive_remote`` for an Update message carrying ``update``, without building a
        ``SyncUpdate`` (the cluster's hot path, as ``receive_update`` is the local one).

        The update is validated again, although the node that relayed it validated these
        very bytes: the dependency rule (nothing this document lacks) is about this
        document, not the bytes, and a gap (a missed message) must come out as
        ``MissingStructs`` here, never as structs yrs keeps pending. The walk that checks
        it is the validation. See ``docs/cluster.md`` ("Trust").

        Raises:
            The same as ``receive_remote``.
        """
        return self._apply(None, update, raw, relay_to_sender=True, store=False)

    def forget_node(self, origin: str) -> list[Outgoing[M]]:
        """Remove the awareness states of another node's clients (that node is gone)."""
        return self._remove_awareness(self.remote.pop(origin, set()))

    def local_awareness(self) -> list[AwarenessEntry]:
        """The awareness states announced by this node's own members."""
        owned = set().union(*self.members.values()) if self.members else set()
        return [entry for cid, entry in self.awareness.items() if cid in owned]

    def unload(self) -> list[Outgoing[M]]:
        """Effects to carry out before the room is dropped from memory: a final checkpoint
        when updates arrived since the last one."""
        if self.seq > self.checkpoint_seq:
            return [self._checkpoint()]
        return []

    def _apply(
        self,
        member: M | None,
        update: bytes,
        raw: bytes,
        relay_to_sender: bool = False,
        store: bool = True,
    ) -> list[Outgoing[M]]:
        if update == EMPTY_UPDATE:
            return []
        if not update:  # not even the two counts an empty update has
            raise ProtocolError("invalid Yjs update: empty")
        # Every length, bound and reference checked before yrs sees a byte of it: some
        # malformed updates crash yrs in ways no exception can catch, and so did updates
        # yrs kept pending for want of their dependencies.
        clocks = self._clocks
        spans, inserted, deleted = check_update_measured(update, clocks)
        retired = self.retired
        if retired is not None and retired.stale(spans, clocks):
            raise StaleLineage("this copy of the document was replaced; reload it")
        # Some clients (pycrdt's Provider) send back every update they receive. Keep such
        # echoes, whose structs are all known already, out of the log and off the wire:
        # they would show as empty versions in history (see collab.sync.ydoc.known).
        try:
            if self.max_size and self.size + len(update) > self.max_size:
                if known(self.doc, update):
                    return []  # an echo is dropped quietly, whatever its size
                raise DocumentTooLarge(f"document would exceed {self.max_size} bytes")
            # The echo check and the apply, in one transaction: the relay's hot path.
            if not apply_unless_known(self.doc, update):
                return []
        except ValueError as exc:
            raise ProtocolError("invalid Yjs update") from exc
        except RuntimeError as exc:
            # yrs refuses some updates only while integrating them (a parent id naming an
            # item that is not a shared type), possibly after integrating some structs.
            self._refused_midway(exc)
        except BaseException as exc:
            if is_panic(exc):
                raise RoomPoisoned("document reset, reconnect") from exc
            raise
        for client, _, end in spans:
            if end > clocks.get(client, 0):
                clocks[client] = end
        if self._state_cache:
            self._state_cache.clear()
        self.seq += 1
        # Store before send: the row is queued before any member gets the bytes.
        broadcast = Broadcast(raw, None if relay_to_sender else member)
        out: list[Outgoing[M]] = (
            [Append(self.seq, update, member, inserted, deleted), broadcast]
            if store
            else [broadcast]
        )
        self._bytes_since_checkpoint += len(update)
        self.size += len(update)
        if (
            self.seq - self.checkpoint_seq >= self.checkpoint_updates
            or self._bytes_since_checkpoint >= self.checkpoint_bytes
        ):
            out.append(self._checkpoint())
        return out

    def _apply_step2(self, member: M, update: bytes) -> list[Outgoing[M]]:
        # A reconnecting client answers our SyncStep1 with everything we lack, which is
        # often nothing, or a state full of structs we already have. Keep only what is new
        # so the log does not grow by a whole document on every reconnect. (The delete set
        # is kept whole: deletions cannot be filtered without walking the structs.)
        check_update_for(update, self._clocks)  # a SyncStep2 must be complete: no resync
        try:
            with _GUARD:
                update = get_update(update, state_of(self.doc))
        except ValueError as exc:
            raise ProtocolError("invalid Yjs update") from exc
        return self._apply(member, update, encode_update(update))

    def _refused_midway(self, exc: RuntimeError) -> NoReturn:
        """An apply failed with ``exc`` inside yrs: if nothing was integrated, the update is
        merely invalid (1007); if some of it was, the document now holds part of an update
        that is neither stored nor relayed, and must be thrown away like a panicked one."""
        before = dict(self._clocks)
        self._sync_clocks()
        if self._clocks != before:
            raise RoomPoisoned("document reset, reconnect") from exc
        raise ProtocolError("invalid Yjs update") from exc

    def _checkpoint(self) -> Checkpoint:
        # Every checkpoint also re-reads the clocks from the document, so a drift between
        # them (none is known) could not outlive checkpoint_updates updates.
        self._sync_clocks()
        with _GUARD:
            state = update_of(self.doc)
        self.checkpoint_seq = self.seq
        self._bytes_since_checkpoint = 0
        self.size = len(state)
        # The checkpoint is also exactly what a new client's SyncStep1 asks for.
        self._state_cache[b"\x00"] = encode_sync_step2(state)
        return Checkpoint(self.seq, state)

    def _sync_step2(self, state_vector: bytes) -> bytes:
        cached = self._state_cache.get(state_vector)
        if cached is not None:
            return cached
        check_state_vector(state_vector)
        try:
            with _GUARD:
                update = update_of(self.doc, state_vector)
        except ValueError as exc:
            raise ProtocolError("invalid state vector") from exc
        message = encode_sync_step2(update)
        if len(self._state_cache) >= _STATE_CACHE_SIZE:
            self._state_cache.clear()
        self._state_cache[state_vector] = message
        return message

    def _awareness(
        self, owned: set[int] | None, message: AwarenessUpdate, raw: bytes
    ) -> list[Outgoing[M]]:
        for entry in message.entries:
            current = self.awareness.get(entry.client_id)
            if current is not None and entry.clock < current.clock:
                continue  # stale: clients apply the same rule and will ignore it too
            if entry.state is None:
                self.awareness.pop(entry.client_id, None)
                if owned is not None:
                    owned.discard(entry.client_id)
            else:
                self.awareness[entry.client_id] = entry
                if owned is not None:
                    owned.add(entry.client_id)
        # Echo to the sender too: the y-websocket client counts 30 s without any message
        # as a dead connection, and its own awareness renewals are what it gets back.
        return [Broadcast(raw, None)]
