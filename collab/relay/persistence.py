"""What the hub reads from the store: a room at load, a catch-up, a checkpoint from the log.

Stored updates that cannot be applied are skipped at load and counted
(``history.replay``), so no stored row can make a document unopenable. Large documents
are replayed in a worker thread, off the event loop. See ``docs/reliability.md``.
This module never writes an update and never touches a connection.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING

from collab.config import Config
from collab.errors import DocumentDeleted, Overloaded
from collab.history.replay import replay
from collab.store import Store
from collab.sync.lineage import Retired
from collab.sync.protocol import EMPTY_UPDATE
from collab.sync.room import Room

if TYPE_CHECKING:
    from collab.relay.connection import Connection

__all__ = ["check_backlog", "checkpoint_from_log", "load_room", "missing_from_store"]

log = logging.getLogger(__name__)

# Replaying more than this many bytes runs in a worker thread, off the event loop.
_REPLAY_IN_THREAD = 256 * 1024


async def load_room(store: Store, config: Config, name: str) -> tuple[Room[Connection], int]:
    """Read room ``name`` from ``store``: its latest checkpoint, then the updates after it.

    A new document is not waited for: the room starts with a provisional id, under which
    its rows are queued from the first update on (the writer creates the document in the
    same commit as, or before, them), and takes the real id once that commit is done. So
    a join to a new room costs one read, never a commit of its own.

    Returns:
        The room, and how many stored rows were skipped because they cannot be applied.

    Raises:
        DocumentDeleted: the room's document is deleted.
        StoreUnavailable: the database did not answer in time.
    """
    loaded = await store.load(name, provisional=True)
    if loaded.deleted_ms is not None:
        raise DocumentDeleted("document deleted")
    size = len(loaded.checkpoint or b"") + sum(map(len, loaded.updates))
    skipped: list[int] = []
    if size > _REPLAY_IN_THREAD:
        doc = await asyncio.to_thread(replay, loaded.checkpoint, loaded.updates, skipped)
    else:
        doc = replay(loaded.checkpoint, loaded.updates, skipped)
    if skipped:
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
        checkpoint_updates=config.checkpoint_updates,
        checkpoint_bytes=config.checkpoint_bytes,
        size=size,
        max_size=config.max_document_size,
        # Lineages the name retired: their holders' uploads are refused (4410).
        retired=Retired(loaded.retired) if loaded.retired else None,
        lineage=loaded.lineage,
    )
    if room.doc_id < 0:
        # A new document has nothing to replay: no await since ``load``, so the writer
        # cannot have created it and forgotten the provisional id yet.
        store.when_created(room.doc_id, partial(setattr, room, "doc_id"))
    log.debug("loaded room %r: %d updates after checkpoint", name, len(loaded.updates))
    return room, len(skipped)


async def missing_from_store(store: Store, room: Room[Connection]) -> bytes | None:
    """What the stored document has that ``room`` lacks, as one update; ``None`` if
    nothing (after relayed messages were missed, on several nodes)."""
    loaded = await store.load(room.name)
    stored = await asyncio.to_thread(replay, loaded.checkpoint, loaded.updates)
    missing = stored.get_update(room.doc.get_state())
    return None if missing == EMPTY_UPDATE else missing


async def checkpoint_from_log(store: Store, name: str) -> None:
    """Checkpoint room ``name`` from the committed log (on several nodes, a node's own
    document also holds updates other nodes have not committed yet: only the log says
    what "as of seq N" is)."""
    await store.flush()
    loaded = await store.load(name)
    if not loaded.updates:
        return
    stored = await asyncio.to_thread(replay, loaded.checkpoint, loaded.updates)
    store.checkpoint(loaded.doc_id, loaded.last_seq, stored.get_update())


def check_backlog(store: Store, config: Config) -> None:
    """Refuse a write while storage is behind: past ``store_max_backlog`` bytes not yet
    committed, or past the small ``store_stalled_backlog`` while the store cannot commit
    at all (an outage), so little is relayed that is not stored.

    Raises:
        Overloaded: either bound is passed (1013; the client keeps its edit and re-sends
            it when it reconnects).
    """
    backlog = store.backlog_bytes
    if backlog > config.store_max_backlog or (
        backlog > config.store_stalled_backlog and store.stalled
    ):
        raise Overloaded("storage is behind, retry later")
