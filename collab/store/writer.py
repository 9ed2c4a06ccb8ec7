"""The single writer: every write of the log, in order, with group commit.

``append`` and ``checkpoint`` only queue a row (they never wait), and the writer task
commits what is queued, oldest first, at most ``commit_interval`` seconds after the first
row of the batch arrived, in transactions of at most ``batch_rows`` rows and
``batch_bytes`` bytes (so a backlog never becomes one transaction too large to fit). That
bounds how much a crash can lose without paying a commit per keystroke. When a commit
fails (locked database, full disk, the server gone) the updates stay queued and are
retried with backoff, the queued checkpoints are dropped (they are derived data: the log
holds everything), and the writer says it is ``stalled`` until a commit succeeds again;
rooms keep serving from memory meanwhile. The queue is bounded in bytes: past
``max_backlog`` the hub turns writers away (close 1013) so memory cannot grow without
limit, and their clients keep their edits and resend them on reconnect.

New documents go through the same queue: ``provisional(name)`` gives a room a
provisional (negative) id at once and queues the document's row, which the next group
commit creates in the same transaction as, and before, the first rows that use the id
(the batch resolves the name to the real id there). So a room opens without waiting for
a commit of its own, and no update row can ever be stored without its document.
``when_created`` tells the holder of the provisional id the real one right after that
commit; rows queued meanwhile are given it when their batch is taken.

Owns the queue, the batch loop, backlog accounting, the stalled state, provisional
document ids, and flushes and their waiters. The SQL of one batch is ``batch.py``'s; the
connections are ``engine.py``'s.
``Store`` is a ``Writer``: the queue and its counters are the store's own attributes, so
``append`` (once per relayed update) and the hub's per-update look at ``backlog_bytes``
cost no more than a plain attribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from collab.clock import now_ms
from collab.store.batch import BatchWriter
from collab.store.engine import Database, out_of_space

__all__ = ["BATCH_BYTES", "BATCH_ROWS", "StoreClosed", "Writer"]

log = logging.getLogger(__name__)

BATCH_BYTES = 4 * 1024 * 1024  # per transaction: a few MB fits wherever a commit can
BATCH_ROWS = 10_000
_MAX_BACKOFF = 5.0
# A queued row: (row, its bytes, its kind, its number in the queue).
_Entry = tuple[dict[str, Any], int, int, int]
_UPDATE, _CHECKPOINT, _CREATE = 0, 1, 2


class StoreClosed(RuntimeError):
    """A write was queued after ``close``."""


class Writer:
    """The queue of rows to write and the task that commits them.

    Args:
        db: the connections to commit on (opened before ``_start_writer``).
        commit_interval: the group-commit window, in seconds.
        close_timeout: how long ``_stop_writer`` waits for the queue to drain.
        db_timeout: how long a commit may take before the writer counts as ``stalled``.
        batch_bytes, batch_rows: the most one transaction carries (a single larger row
            still goes, alone).
    """

    def __init__(
        self,
        db: Database,
        *,
        commit_interval: float,
        close_timeout: float,
        db_timeout: float | None,
        batch_bytes: int,
        batch_rows: int,
    ) -> None:
        self._db = db
        self.db_timeout = db_timeout
        self.batch_bytes = batch_bytes
        self.batch_rows = batch_rows
        self.commit_interval = commit_interval
        self.close_timeout = close_timeout
        self._batch = BatchWriter()
        self._rows: deque[_Entry] = deque()  # to write, oldest first
        # Provisional document ids (negative): queued for creation, by name and by id...
        self._pending: dict[str, int] = {}
        self._pending_names: dict[int, str] = {}
        self._on_created: dict[int, list[Callable[[int], None]]] = {}
        self._last_tmp = 0
        # ... and created: the real id, kept until every row queued with the provisional
        # one is settled (``_retire``: the row count at creation, and the id).
        self._ids: dict[int, int] = {}
        self._retire: deque[tuple[int, int]] = deque()
        self._creations = 0  # rows queued up to the newest creation (a read waits for it)
        self._queued = 0  # rows ever queued
        # Every row numbered below this is committed (or, a checkpoint, dropped). Rows are
        # settled oldest first, so one number says it; a flush waits for it to pass.
        self._settled = 0
        self._wal_grew = False  # a commit failed for want of space: truncate the WAL
        self._commit_started: float | None = None  # monotonic time of the commit in flight
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()  # rows were queued
        self._urgent = asyncio.Event()  # commit now: a flush or close is waiting
        self._first_queued_at = 0.0
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.backlog_bytes = 0
        self.on_commit: Callable[[float], None] | None = None  # called with each duration
        self.write_errors = 0  # failed commits since start
        self.seq_races = 0  # commits retried because another node took the same seqs
        self.commits = 0  # successful commits since start
        self.checkpoints_dropped = 0  # checkpoints not written because a commit failed
        self.stalled_since: float | None = None
        """``time.monotonic()`` of the first failed commit since the last good one."""

    @property
    def stalled(self) -> bool:
        """Whether the store cannot commit now: the last commit failed, or the one in
        flight has taken longer than ``db_timeout``. Cleared by the next good commit."""
        if self.stalled_since is not None:
            return True
        started, limit = self._commit_started, self.db_timeout
        return started is not None and limit is not None and time.monotonic() - started > limit

    def append(
        self,
        doc_id: int,
        seq: int | None,
        data: bytes,
        *,
        connection_id: str | None,
        author: str | None,
        created_ms: int | None = None,
        inserted: int | None = None,
        deleted: int | None = None,
    ) -> None:
        """Queue update ``seq`` of document ``doc_id``; committed within the window.

        ``inserted`` and ``deleted`` are what the update inserts and deletes, as
        ``collab.sync.update.measure`` counts (the room's validator counted them); stored
        with the row so the timeline reads numbers instead of decoding the update.
        ``None`` is stored as ``NULL``, "not measured": the timeline measures such rows.

        With ``seq=None`` the number is assigned at commit time: the next after the
        largest stored one. That is how several server nodes share one document's log:
        the commit locks the document's row first (``BatchWriter._lock``), and should two
        nodes take the same numbers all the same, one commit fails on the primary key and
        the writer retries it with fresh numbers.

        ``doc_id`` may be a provisional id (``provisional``).

        Raises:
            ValueError: a negative ``doc_id`` that is no provisional id of this store.
        """
        if doc_id < 0:
            doc_id = self._document(doc_id)
        self._queue(
            {
                "doc_id": doc_id,
                "seq": seq,
                "created_ms": created_ms if created_ms is not None else now_ms(),
                "data": data,
                "connection_id": connection_id,
                "author": author,
                "inserted": inserted,
                "deleted": deleted,
            },
            len(data),
            _UPDATE,
        )

    def checkpoint(self, doc_id: int, upto_seq: int, state: bytes) -> None:
        """Queue a checkpoint: the whole document as of update ``upto_seq`` (``doc_id``
        may be provisional, as for ``append``)."""
        if doc_id < 0:
            doc_id = self._document(doc_id)
        self._queue(
            {"doc_id": doc_id, "upto_seq": upto_seq, "created_ms": now_ms(), "state": state},
            len(state),
            _CHECKPOINT,
        )

    def provisional(self, name: str) -> int:
        """A provisional id for the new document ``name``, at once: its row is queued
        and created by the group commit that carries it (the same one as the first
        updates queued with the id, or an earlier one). The same name gets the same id
        until then. Rows may be queued with it right away.

        The caller has checked that no document ``name`` is stored; one that appears
        meanwhile (another node, ``POST /api/docs``) is the one the id resolves to.
        """
        tmp = self._pending.get(name)
        if tmp is None:
            self._last_tmp -= 1
            tmp = self._last_tmp
            self._queue({"name": name, "tmp": tmp, "created_ms": now_ms()}, 0, _CREATE)
            self._pending[name] = tmp
            self._pending_names[tmp] = name
            self._creations = self._queued
        return tmp

    def when_created(self, tmp: int, callback: Callable[[int], None]) -> None:
        """Call ``callback(real_id)`` once the document of provisional id ``tmp`` is
        committed (at once if it is). Register it before the next ``await`` after
        ``provisional``: the real id is only kept while rows queued with ``tmp`` remain.

        Raises:
            ValueError: ``tmp`` is not a provisional id of this store (any more).
        """
        real = self._ids.get(tmp)
        if real is not None:
            callback(real)
        elif tmp in self._pending_names:
            self._on_created.setdefault(tmp, []).append(callback)
        else:
            raise ValueError(f"unknown provisional document id {tmp}")

    def _document(self, tmp: int) -> int:
        """The id to queue a row under for provisional id ``tmp``: the real one once
        created, else ``tmp`` (the batch that creates it resolves it)."""
        real = self._ids.get(tmp)
        if real is not None:
            return real
        if tmp not in self._pending_names:
            # Queued, it would fail every commit that carries it: refuse it here.
            raise ValueError(f"unknown provisional document id {tmp}")
        return tmp

    async def flush(self, *, hurry: bool = True) -> None:
        """Wait until every row queued so far is committed (a checkpoint dropped after a
        failed commit counts as settled). It waits as long as that takes: a reader that
        must answer in time flushes inside ``bounded()``.

        ``hurry``: commit now rather than at the end of the group window. ``False`` waits
        for the commit that would happen anyway (an acknowledgement that must mean
        "stored" but must not cost a transaction of its own: Hocuspocus's SyncStatus).
        """
        await self._settled_up_to(self._queued, hurry)

    async def _creations_settled(self) -> None:
        """Wait until every document queued for creation so far is committed (now, not at
        the end of the window): a read must find every document a room has opened."""
        await self._settled_up_to(self._creations, True)

    async def _settled_up_to(self, target: int, hurry: bool) -> None:
        if self._settled >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        if hurry:
            self._urgent.set()
        await future

    def _start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="collab-store-writer")

    async def _stop_writer(self) -> None:
        """Commit everything queued and stop the writer; after ``close_timeout`` seconds
        give up and say how much was not stored."""
        if self._writer is None:
            return
        self._closing = True
        self._wakeup.set()
        self._urgent.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), self.close_timeout)
        except TimeoutError:
            self._writer.cancel()
            log.error(
                "store closed with %d rows (%d bytes) not written",
                len(self._rows),
                self.backlog_bytes,
            )
        self._writer = None

    async def _create(self, name: str) -> int:
        """Create document ``name`` now (not at the end of the window: someone waits for
        its id) and return its id."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def created(doc_id: int) -> None:
            if not future.done():  # the waiter may have given up
                future.set_result(doc_id)

        self.when_created(self.provisional(name), created)
        self._urgent.set()
        return await future

    def _queue(self, row: dict[str, Any], size: int, kind: int) -> None:
        if self._closing and self._writer is None:
            raise StoreClosed("store is closed")
        rows = self._rows
        if not rows:
            # Rows queued while a batch commits find the queue empty too, so each batch's
            # window starts with its own first row.
            self._first_queued_at = asyncio.get_running_loop().time()
        rows.append((row, size, kind, self._queued))
        self._queued += 1
        self.backlog_bytes += size
        self._wakeup.set()

    def _take_batch(self) -> list[_Entry]:
        """Take the oldest queued rows, at most ``batch_rows`` of them and ``batch_bytes``
        bytes (at least one row, however large)."""
        rows, batch = self._rows, list[_Entry]()
        size, limit, most = 0, self.batch_bytes, self.batch_rows
        while rows and len(batch) < most:
            entry = rows[0]
            if batch and size + entry[1] > limit:
                break
            batch.append(rows.popleft())
            size += entry[1]
        return batch

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.0
        while True:
            if not self._rows:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # The group window: wait until the oldest queued row is commit_interval old,
            # unless someone is waiting for a flush.
            delay = self._first_queued_at + self.commit_interval - loop.time()
            if delay > 0 and not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), delay)
            self._urgent.clear()
            # Oldest first; what is left is older than the window, so it goes next at once.
            batch = self._take_batch()
            updates, checkpoints, creates = self._split(batch)
            started = loop.time()
            self._commit_started = time.monotonic()
            try:
                created = await self._db.write(self._batch.write, updates, checkpoints, creates)
            except Exception as exc:  # any failure: keep the updates, retry; never drop them
                self._commit_started = None
                for row in (*updates, *checkpoints):
                    # The ids this transaction resolved were rolled back with it.
                    if "_tmp" in row:
                        row["doc_id"] = row.pop("_tmp")
                self._rows.extendleft(reversed(batch))
                if isinstance(exc, IntegrityError) and any(r.get("_assigned") for r in updates):
                    # Another node took the same update numbers first: renumber and retry
                    # (after a random pause, so two nodes do not collide in lockstep). A
                    # checkpoint another node wrote meanwhile is skipped on the retry.
                    self.seq_races += 1
                    log.info("update numbers taken by another node; renumbering")
                    await asyncio.sleep(random.uniform(0, 0.02))
                    continue
                backoff = min(_MAX_BACKOFF, max(0.05, backoff * 2))
                first, dropped = self._failed()
                log.log(
                    logging.ERROR if first else logging.WARNING,
                    "store commit failed; %d rows (%d bytes) kept in memory, %d queued "
                    "checkpoints dropped, retrying in %.2fs: %s",
                    len(self._rows),
                    self.backlog_bytes,
                    dropped,
                    backoff,
                    exc,
                    exc_info=first,  # the traceback once per outage, not once per retry
                )
                if self._db.sync_engine is not None and out_of_space(exc):
                    self._wal_grew = True
                    await self._truncate_wal()
                await asyncio.sleep(backoff)
                continue
            self._commit_started = None
            backoff = 0.0
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(loop.time() - started)
            if created:
                self._created(created)
            self.backlog_bytes -= sum(entry[1] for entry in batch)
            if self.stalled_since is not None:
                await self._recovered()
            self._settle()

    def _split(
        self, batch: list[_Entry]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """A batch's updates, checkpoints and creations; rows queued with a provisional
        id whose document an earlier commit created get its real id now."""
        updates: list[dict[str, Any]] = []
        checkpoints: list[dict[str, Any]] = []
        creates: list[dict[str, Any]] = []
        ids = self._ids
        for row, _size, kind, _number in batch:
            if kind == _CREATE:
                creates.append(row)
                continue
            if ids and row["doc_id"] < 0:
                row["doc_id"] = ids.get(row["doc_id"], row["doc_id"])
            (updates if kind == _UPDATE else checkpoints).append(row)
        return updates, checkpoints, creates

    def _created(self, created: dict[int, int]) -> None:
        """After a commit that created documents: remember their real ids until the rows
        queued with the provisional ones are settled, and tell whoever waits for them."""
        for tmp, real in created.items():
            name = self._pending_names.pop(tmp, None)
            if name is None:
                continue  # not (or no longer) pending: nothing waits for its real id
            del self._pending[name]
            self._ids[tmp] = real
            self._retire.append((self._queued, tmp))
            for callback in self._on_created.pop(tmp, ()):
                try:
                    callback(real)
                except Exception:  # one holder's failure never stops the writer
                    log.exception("telling the id of new document %r failed", name)

    def _failed(self) -> tuple[bool, int]:
        """After a failed commit: count it, and drop every queued checkpoint. Returns
        whether it is the first failure since the last good commit, and how many
        checkpoints were dropped."""
        self.write_errors += 1
        self._batch.recheck = True  # a commit cut off at COMMIT may have landed
        first = self.stalled_since is None
        if first:
            self.stalled_since = time.monotonic()
        # A checkpoint is the document as of some update, which the log holds anyway:
        # retrying it only makes the transaction that must fit larger. Loads read the
        # newest checkpoint that was stored, and the updates after it.
        kept = deque(entry for entry in self._rows if entry[2] != _CHECKPOINT)
        dropped = len(self._rows) - len(kept)
        if dropped:
            self.backlog_bytes -= sum(e[1] for e in self._rows if e[2] == _CHECKPOINT)
            self.checkpoints_dropped += dropped
            self._rows = kept
            self._settle()  # a flush waiting for nothing but checkpoints is done
        return first, dropped

    async def _truncate_wal(self) -> None:
        try:
            await self._db.truncate_wal()
        except (DBAPIError, OSError) as exc:  # the disk may still be full: the retry tells
            log.debug("WAL truncation failed: %s", exc)

    async def _recovered(self) -> None:
        assert self.stalled_since is not None
        stalled_for = time.monotonic() - self.stalled_since
        self.stalled_since = None
        log.warning(
            "store commits again after %.1fs (%d failed commits, %d checkpoints dropped "
            "since start)",
            stalled_for,
            self.write_errors,
            self.checkpoints_dropped,
        )
        if self._wal_grew:
            self._wal_grew = False
            await self._truncate_wal()  # give back the space the WAL grew to

    def _settle(self) -> None:
        """Move ``_settled`` up to the oldest row still queued, and release the flushes
        that were waiting for it (called by the writer between commits only)."""
        self._settled = self._rows[0][3] if self._rows else self._queued
        retire = self._retire
        while retire and retire[0][0] <= self._settled:
            self._ids.pop(retire.popleft()[1], None)
        self._release_waiters()

    def _release_waiters(self) -> None:
        still = []
        for target, future in self._waiters:
            if self._settled >= target:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((target, future))
        self._waiters = still
