"""Persistence: the only module that runs SQL.

Writes go through one writer task, in order, with group commit: ``append`` and
``checkpoint`` only queue a row (they never wait), and the writer commits everything
queued in one transaction at most ``commit_interval`` seconds after the first row of the
batch arrived. That bounds how much a crash can lose without paying a commit per
keystroke. When a commit fails (locked database, full disk) the batch stays queued and is
retried with backoff; rooms keep serving from memory meanwhile. The queue is bounded in
bytes: past ``max_backlog`` the hub turns writers away (close 1013) so memory cannot grow
without limit, and their clients keep their edits and resend them on reconnect.

Reads (``load``) use pooled connections of their own; in SQLite's WAL mode they never
block the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Table, and_, case, delete, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from collab.history import Row
from collab.models import (
    Base,
    CheckpointRow,
    CompactionRow,
    Document,
    NamedVersionRow,
    RevokedToken,
    UpdateRow,
)

__all__ = [
    "DocumentExists",
    "DocumentHead",
    "DocumentInfo",
    "DocumentState",
    "DocumentStore",
    "DumpBatch",
    "DumpStore",
    "HistoryStore",
    "Loaded",
    "MergedRun",
    "NamedVersion",
    "Storage",
    "Store",
    "StoreClosed",
    "TokenStore",
    "VersionSource",
    "now_ms",
    "upgrade_schema",
]

log = logging.getLogger(__name__)

# migrations/ ships inside the package as collab.migrations (see pyproject.toml).
_MIGRATIONS = files("collab.migrations")
_MAX_BACKOFF = 5.0


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch, as stored."""
    return time.time_ns() // 1_000_000


class StoreClosed(RuntimeError):
    """A write was queued after ``close``."""


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One row of the document list: what a person choosing a document wants to see."""

    id: int
    name: str
    created_ms: int
    updated_ms: int
    """Time of the newest stored update, or the creation time if there is none."""
    updates: int
    """Number of stored updates."""
    size: int
    """Bytes a load reads: the newest checkpoint plus the updates after it (the same
    measure as ``Room.size``)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a room needs to start: its newest checkpoint and the updates after it."""

    doc_id: int
    checkpoint: bytes | None
    checkpoint_seq: int
    updates: list[bytes]
    last_seq: int
    deleted_ms: int | None = None
    """Set when the document is deleted: the hub refuses to open its room."""


def _alembic_config(url: str | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def upgrade_schema(url: str) -> None:
    """Create or upgrade the schema to the newest revision (blocking: run in a thread)."""
    command.upgrade(_alembic_config(url), "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL: readers never block the writer. synchronous=NORMAL: a commit survives a
        # process crash (kill -9); only an OS crash or power cut can lose the last commits.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


class Store:
    """The update log and checkpoints of every document.

    Args:
        url: an SQLAlchemy async URL.
        commit_interval: the group-commit window, in seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        commit_interval: float = 0.05,
        close_timeout: float = 10.0,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self.commit_interval = commit_interval
        self.close_timeout = close_timeout
        self._engine: AsyncEngine | None = None
        self._head: str | None = None
        self._update_sql: tuple[str, tuple[str, ...]] | None = None
        self._updates: list[dict[str, Any]] = []
        self._checkpoints: list[dict[str, Any]] = []
        self._creates: dict[str, asyncio.Future[int]] = {}  # documents to create, by name
        self._queued = 0  # rows ever queued
        self._committed = 0  # rows ever committed
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

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "Store.open() first"
        return self._engine

    async def open(self, *, upgrade: bool = True) -> None:
        """Connect, bring the schema to the newest revision, and start the writer."""
        # Both steps touch the file system (path resolution, migration scripts): start-up
        # work, but still kept off the event loop.
        # A fixed pool: overflow connections are opened and closed per use, and opening an
        # SQLite connection (pragmas, functions) is what a burst of joins would pay for.
        self._engine = await asyncio.to_thread(
            create_async_engine, self.url, pool_size=10, max_overflow=0
        )
        if self._engine.dialect.name == "sqlite":
            event.listen(
                self._engine.sync_engine, "connect", _sqlite_pragmas(self.busy_timeout_ms)
            )
        if upgrade:
            await asyncio.to_thread(upgrade_schema, self.url)
        self._writer = asyncio.create_task(self._write_loop(), name="collab-store-writer")

    async def close(self) -> None:
        """Commit everything queued, stop the writer and close the connections.

        If the database still refuses writes after ``close_timeout`` seconds, give up and say
        how much was not stored: the clients that sent it still hold it, and upload it
        again when they reconnect (the server's SyncStep1 asks them to).
        """
        if self._writer is not None:
            self._closing = True
            self._wakeup.set()
            self._urgent.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), self.close_timeout)
            except TimeoutError:
                self._writer.cancel()
                log.error(
                    "store closed with %d rows (%d bytes) not written",
                    len(self._updates) + len(self._checkpoints),
                    self.backlog_bytes,
                )
            self._writer = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def schema_status(self) -> tuple[str | None, str | None]:
        """The database's schema revision and the newest one this code knows."""
        if self._head is None:
            # Reading the migration scripts touches the disk: once, off the event loop.
            self._head = await asyncio.to_thread(_head_revision)
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision), self._head

    async def load(self, name: str) -> Loaded:
        """Fetch what the room ``name`` needs to start, creating the document if new."""
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(Document.id, Document.deleted_ms).where(Document.name == name)
                )
            ).first()
            if found is not None:
                if found.deleted_ms is not None:
                    return Loaded(found.id, None, 0, [], 0, found.deleted_ms)
                return await self._load_rows(conn, found.id)
        # Outside the read connection: holding one pooled connection while asking for
        # another is how a burst of new rooms would exhaust the pool.
        return Loaded(await self._create(name), None, 0, [], 0)

    async def _load_rows(self, conn: AsyncConnection, doc_id: int) -> Loaded:
        row = (
            await conn.execute(
                select(CheckpointRow.upto_seq, CheckpointRow.state)
                .where(CheckpointRow.doc_id == doc_id)
                .order_by(CheckpointRow.upto_seq.desc())
                .limit(1)
            )
        ).first()
        checkpoint_seq, checkpoint = (row[0], row[1]) if row else (0, None)
        rows = (
            await conn.execute(
                select(UpdateRow.seq, UpdateRow.data)
                .where(UpdateRow.doc_id == doc_id, UpdateRow.seq > checkpoint_seq)
                .order_by(UpdateRow.seq)
            )
        ).all()
        last_seq = rows[-1][0] if rows else checkpoint_seq
        return Loaded(doc_id, checkpoint, checkpoint_seq, [r[1] for r in rows], last_seq)

    async def _create(self, name: str) -> int:
        # Creation goes through the writer like every other write, but does not wait for
        # the group window: someone is waiting to join. A burst of new rooms still shares
        # one transaction per batch.
        future = self._creates.get(name)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._creates[name] = future
            self._wakeup.set()
            self._urgent.set()
        return await asyncio.shield(future)

    async def list_documents(
        self,
        *,
        contains: str = "",
        limit: int = 50,
        before: tuple[int, int] | None = None,
    ) -> list[DocumentInfo]:
        """Documents, most recently edited first (the browser's document list); deleted
        documents are left out.

        Args:
            contains: keep only names containing this, ignoring case (ASCII case only on
                SQLite, whose lower() knows no other).
            limit: at most this many documents.
            before: ``(updated_ms, id)`` of the last document of the previous page; the
                page starts right after it (keyset pagination: stable while documents
                are edited, unlike an offset).
        """
        # "Last edited" is the newest update's time: one index lookup per document on
        # ix_updates_doc_id_created_ms. Counting and measuring updates costs a scan of
        # each document's rows, so it is done for the page's documents only.
        updated = func.coalesce(
            select(func.max(UpdateRow.created_ms))
            .where(UpdateRow.doc_id == Document.id)
            .scalar_subquery(),
            Document.created_ms,
        )
        listed = select(
            Document.id, Document.name, Document.created_ms, updated.label("updated_ms")
        ).where(Document.deleted_ms.is_(None))
        if contains:
            listed = listed.where(Document.name.icontains(contains, autoescape=True))
        docs = listed.subquery()
        page = select(docs).order_by(docs.c.updated_ms.desc(), docs.c.id.desc()).limit(limit)
        if before is not None:
            at, doc_id = before
            page = page.where(
                or_(docs.c.updated_ms < at, and_(docs.c.updated_ms == at, docs.c.id < doc_id))
            )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            ids = [row.id for row in rows]
            if not ids:
                return []
            newest = (
                select(CheckpointRow.doc_id, func.max(CheckpointRow.upto_seq).label("upto"))
                .where(CheckpointRow.doc_id.in_(ids))
                .group_by(CheckpointRow.doc_id)
                .subquery()
            )
            checkpoints = {
                doc_id: size
                for doc_id, size in await conn.execute(
                    select(CheckpointRow.doc_id, func.length(CheckpointRow.state)).join(
                        newest,
                        and_(
                            newest.c.doc_id == CheckpointRow.doc_id,
                            newest.c.upto == CheckpointRow.upto_seq,
                        ),
                    )
                )
            }
            tail = case(
                (UpdateRow.seq > func.coalesce(newest.c.upto, 0), func.length(UpdateRow.data)),
                else_=0,
            )
            counts = {
                doc_id: (count, int(tail_bytes or 0))
                for doc_id, count, tail_bytes in await conn.execute(
                    select(UpdateRow.doc_id, func.count(), func.sum(tail))
                    .outerjoin(newest, newest.c.doc_id == UpdateRow.doc_id)
                    .where(UpdateRow.doc_id.in_(ids))
                    .group_by(UpdateRow.doc_id)
                )
            }
        infos = []
        for row in rows:
            count, tail_bytes = counts.get(row.id, (0, 0))
            infos.append(
                DocumentInfo(
                    row.id,
                    row.name,
                    row.created_ms,
                    row.updated_ms,
                    count,
                    checkpoints.get(row.id, 0) + tail_bytes,
                )
            )
        return infos

    def append(
        self,
        doc_id: int,
        seq: int | None,
        data: bytes,
        *,
        connection_id: str | None,
        author: str | None,
        created_ms: int | None = None,
    ) -> None:
        """Queue update ``seq`` of document ``doc_id``; committed within the window.

        With ``seq=None`` the number is assigned at commit time: the next after the
        largest stored one. That is how several server nodes share one document's log:
        two nodes racing for the same numbers make one commit fail on the primary key,
        and the writer retries it with fresh numbers.
        """
        self._queue(
            self._updates,
            {
                "doc_id": doc_id,
                "seq": seq,
                "created_ms": created_ms if created_ms is not None else now_ms(),
                "data": data,
                "connection_id": connection_id,
                "author": author,
            },
            len(data),
        )

    def checkpoint(self, doc_id: int, upto_seq: int, state: bytes) -> None:
        """Queue a checkpoint: the whole document as of update ``upto_seq``."""
        self._queue(
            self._checkpoints,
            {"doc_id": doc_id, "upto_seq": upto_seq, "created_ms": now_ms(), "state": state},
            len(state),
        )

    async def flush(self) -> None:
        """Wait until every row queued so far is committed."""
        if self._committed >= self._queued:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, future))
        self._urgent.set()
        await future

    def _queue(self, rows: list[dict[str, Any]], row: dict[str, Any], size: int) -> None:
        if self._closing and self._writer is None:
            raise StoreClosed("store is closed")
        if not (self._updates or self._checkpoints):
            # Rows queued while a batch commits find the lists empty too, so each batch's
            # window starts with its own first row.
            self._first_queued_at = asyncio.get_running_loop().time()
        rows.append(row)
        self._queued += 1
        self.backlog_bytes += size
        self._wakeup.set()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.0
        while True:
            if not (self._updates or self._checkpoints or self._creates):
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
            updates, checkpoints, creates = self._updates, self._checkpoints, self._creates
            self._updates, self._checkpoints, self._creates = [], [], {}
            started = loop.time()
            try:
                created = await self._commit(updates, checkpoints, list(creates))
            except Exception as exc:  # any failure: keep the rows, retry; never drop them
                self._updates[:0] = updates
                self._checkpoints[:0] = checkpoints
                self._creates = {**creates, **self._creates}
                if isinstance(exc, IntegrityError) and any(r.get("_assigned") for r in updates):
                    # Another node took the same update numbers first: renumber and retry
                    # (after a random pause, so two nodes do not collide in lockstep).
                    self.seq_races += 1
                    log.info("update numbers taken by another node; renumbering")
                    await asyncio.sleep(random.uniform(0, 0.02))
                    continue
                self.write_errors += 1
                backoff = min(_MAX_BACKOFF, max(0.05, backoff * 2))
                log.exception(
                    "store commit failed; %d rows kept in memory, retrying in %.2fs",
                    len(self._updates) + len(self._checkpoints),
                    backoff,
                )
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(loop.time() - started)
            for name, future in creates.items():
                if not future.done():
                    future.set_result(created[name])
            self._committed += len(updates) + len(checkpoints)
            self.backlog_bytes -= sum(len(r["data"]) for r in updates)
            self.backlog_bytes -= sum(len(r["state"]) for r in checkpoints)
            self._release_waiters()

    async def _commit(
        self,
        updates: list[dict[str, Any]],
        checkpoints: list[dict[str, Any]],
        creates: list[str],
    ) -> dict[str, int]:
        created: dict[str, int] = {}
        async with self.engine.begin() as conn:
            if creates:
                # Names another node (or an earlier batch) created already are reused.
                find = select(Document.name, Document.id).where(Document.name.in_(creates))
                existing = {row[0]: row[1] for row in await conn.execute(find)}
                missing = [n for n in creates if n not in existing]
                if missing:
                    at = now_ms()
                    await conn.execute(
                        insert(Document), [{"name": n, "created_ms": at} for n in missing]
                    )
                    existing.update((row[0], row[1]) for row in await conn.execute(find))
                created = existing
            if updates:
                await self._number(conn, updates)
                # The one statement run per keystroke's worth of rows: straight to the
                # driver's executemany, without per-row parameter processing on the loop.
                sql, columns = self._insert_update_sql(conn)
                await conn.exec_driver_sql(sql, [tuple(r[c] for c in columns) for r in updates])
            if checkpoints:
                # Two nodes may build the same checkpoint from the log: keep the first.
                fresh = []
                for row in checkpoints:
                    found = await conn.execute(
                        select(CheckpointRow.upto_seq).where(
                            CheckpointRow.doc_id == row["doc_id"],
                            CheckpointRow.upto_seq == row["upto_seq"],
                        )
                    )
                    if found.first() is None:
                        fresh.append(row)
                if fresh:
                    await conn.execute(insert(CheckpointRow), fresh)
        return created

    def _insert_update_sql(self, conn: AsyncConnection) -> tuple[str, tuple[str, ...]]:
        if self._update_sql is None:
            compiled = insert(UpdateRow).compile(dialect=conn.dialect)
            names = compiled.positiontup
            if names is None:  # a dialect with named parameters: make them positional
                raise RuntimeError(f"unsupported parameter style {conn.dialect.paramstyle}")
            self._update_sql = (compiled.string, tuple(names))
        return self._update_sql

    async def _number(self, conn: AsyncConnection, updates: list[dict[str, Any]]) -> bool:
        """Give rows queued with ``seq=None`` the next numbers of their document's log;
        return whether there were any."""
        unnumbered = [row for row in updates if row["seq"] is None or row.get("_assigned")]
        if not unnumbered:
            return False
        docs = {row["doc_id"] for row in unnumbered}
        tops = await conn.execute(
            select(UpdateRow.doc_id, func.max(UpdateRow.seq))
            .where(UpdateRow.doc_id.in_(docs))
            .group_by(UpdateRow.doc_id)
        )
        next_seq = dict.fromkeys(docs, 1)
        next_seq.update({doc_id: (top or 0) + 1 for doc_id, top in tops})
        for row in unnumbered:
            row["seq"] = next_seq[row["doc_id"]]
            row["_assigned"] = True  # renumbered again if this commit is retried
            next_seq[row["doc_id"]] += 1
        return True

    def _release_waiters(self) -> None:
        still = []
        for target, future in self._waiters:
            if self._committed >= target:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((target, future))
        self._waiters = still


# -- History reads ------------------------------------------------------------------------
#
# Everything below serves history (collab/archive.py): read-only queries, plus the two
# small writes history owns (named versions, and compaction, the one rewrite of the log).
# None of it goes near the group-commit writer above. Reads that need more than one query
# run in one snapshot: SQLite's Python driver does not begin a transaction for a SELECT,
# so without an explicit BEGIN a compaction committed between two queries could be seen by
# the second and not by the first.


@dataclass(frozen=True, slots=True)
class DocumentHead:
    """A document as history finds it: its id and its newest version."""

    id: int
    name: str
    created_ms: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class VersionSource:
    """What rebuilding version ``seq`` needs: a checkpoint at or below it and the updates
    after the checkpoint, up to ``seq``."""

    seq: int
    created_ms: int
    checkpoint: bytes | None
    checkpoint_seq: int
    updates: list[bytes]


@dataclass(frozen=True, slots=True)
class NamedVersion:
    """A label on a version."""

    id: int
    seq: int
    name: str
    created_ms: int
    author: str | None


@dataclass(frozen=True, slots=True)
class Storage:
    """Bytes a document takes in the database (payloads only, not SQLite's overhead)."""

    rows: int
    update_bytes: int
    checkpoints: int
    checkpoint_bytes: int


@dataclass(frozen=True, slots=True)
class MergedRun:
    """A run of rows ``first_seq..last_seq`` (``rows`` of them) to replace by one row."""

    first_seq: int
    last_seq: int
    rows: int
    data: bytes
    created_ms: int
    author: str | None
    connection_id: str | None


class HistoryStore:
    """History's queries over a ``Store``'s database (SQL only; no Yjs)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        async with self.store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN")
            yield conn

    async def document(self, name: str) -> DocumentHead | None:
        """The document called ``name``, or ``None`` (also when it is deleted)."""
        last = (
            select(func.max(UpdateRow.seq))
            .where(UpdateRow.doc_id == Document.id)
            .scalar_subquery()
        )
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(Document.id, Document.created_ms, last).where(
                        Document.name == name, Document.deleted_ms.is_(None)
                    )
                )
            ).first()
        return None if row is None else DocumentHead(row[0], name, row[1], row[2] or 0)

    async def document_names(self) -> list[str]:
        """Every document's name, in name order (deleted documents left out)."""
        async with self.store.engine.connect() as conn:
            names = await conn.execute(
                select(Document.name).where(Document.deleted_ms.is_(None)).order_by(Document.name)
            )
            return list(names.scalars())

    async def version_source(self, doc_id: int, seq: int) -> VersionSource:
        """The rows that rebuild the latest version at or below ``seq`` (seqs inside a
        merged run resolve to the version before the run)."""
        async with self._snapshot() as conn:
            row = (
                await conn.execute(
                    select(UpdateRow.seq, UpdateRow.created_ms)
                    .where(UpdateRow.doc_id == doc_id, UpdateRow.seq <= seq)
                    .order_by(UpdateRow.seq.desc())
                    .limit(1)
                )
            ).first()
            if row is None:
                created = (
                    await conn.execute(select(Document.created_ms).where(Document.id == doc_id))
                ).scalar_one()
                return VersionSource(0, created, None, 0, [])
            version, created_ms = row[0], row[1]
            checkpoint = (
                await conn.execute(
                    select(CheckpointRow.upto_seq, CheckpointRow.state)
                    .where(CheckpointRow.doc_id == doc_id, CheckpointRow.upto_seq <= version)
                    .order_by(CheckpointRow.upto_seq.desc())
                    .limit(1)
                )
            ).first()
            checkpoint_seq, state = (checkpoint[0], checkpoint[1]) if checkpoint else (0, None)
            updates = (
                await conn.execute(
                    select(UpdateRow.data)
                    .where(
                        UpdateRow.doc_id == doc_id,
                        UpdateRow.seq > checkpoint_seq,
                        UpdateRow.seq <= version,
                    )
                    .order_by(UpdateRow.seq)
                )
            ).scalars()
            return VersionSource(version, created_ms, state, checkpoint_seq, list(updates))

    async def seq_at(self, doc_id: int, ms: int) -> int:
        """The last seq stored at or before time ``ms`` (0: none yet)."""
        async with self.store.engine.connect() as conn:
            seq = (
                await conn.execute(
                    select(func.max(UpdateRow.seq)).where(
                        UpdateRow.doc_id == doc_id, UpdateRow.created_ms <= ms
                    )
                )
            ).scalar()
        return int(seq or 0)

    async def rows(
        self, doc_id: int, *, after: int, upto: int, newest_first: bool = False, limit: int = -1
    ) -> list[Row]:
        """Rows with ``after < seq <= upto``, each with the first seq it covers.

        Newest first takes the newest ``limit`` of them; else the oldest.
        """
        order = UpdateRow.seq.desc() if newest_first else UpdateRow.seq
        query = (
            select(
                UpdateRow.seq,
                UpdateRow.created_ms,
                UpdateRow.data,
                UpdateRow.author,
                UpdateRow.connection_id,
            )
            .where(UpdateRow.doc_id == doc_id, UpdateRow.seq > after, UpdateRow.seq <= upto)
            .order_by(order)
        )
        if limit >= 0:
            query = query.limit(limit)
        async with self._snapshot() as conn:
            fetched = (await conn.execute(query)).all()
            if not fetched:
                return []
            oldest = fetched[-1][0] if newest_first else fetched[0][0]
            before = (
                await conn.execute(
                    select(func.max(UpdateRow.seq)).where(
                        UpdateRow.doc_id == doc_id, UpdateRow.seq < oldest
                    )
                )
            ).scalar() or 0
        ascending = fetched[::-1] if newest_first else fetched
        out: list[Row] = []
        prev = before
        for seq, created_ms, data, author, connection_id in ascending:
            out.append(Row(seq, prev + 1, created_ms, data, author, connection_id))
            prev = seq
        return out[::-1] if newest_first else out

    async def timeline_rows(
        self, doc_id: int, *, upto: int, limit: int
    ) -> list[tuple[int, int, str | None, str | None, bytes]]:
        """``(seq, created_ms, author, connection_id, data)`` of the newest ``limit`` rows
        at or below ``upto``, newest first (plain tuples: a timeline page reads thousands)."""
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    UpdateRow.seq,
                    UpdateRow.created_ms,
                    UpdateRow.author,
                    UpdateRow.connection_id,
                    UpdateRow.data,
                )
                .where(UpdateRow.doc_id == doc_id, UpdateRow.seq <= upto)
                .order_by(UpdateRow.seq.desc())
                .limit(limit)
            )
            return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def authors(
        self, doc_id: int, *, after: int, upto: int
    ) -> set[tuple[str | None, str | None]]:
        """Up to two distinct (author, connection_id) identities among rows
        ``after < seq <= upto``: enough to tell whether one person made them all."""
        where = (UpdateRow.doc_id == doc_id, UpdateRow.seq > after, UpdateRow.seq <= upto)
        async with self._snapshot() as conn:
            named = (
                await conn.execute(
                    select(UpdateRow.author)
                    .where(*where, UpdateRow.author.is_not(None))
                    .distinct()
                    .limit(2)
                )
            ).scalars()
            found: set[tuple[str | None, str | None]] = {(a, None) for a in named}
            anonymous = (
                await conn.execute(
                    select(UpdateRow.connection_id)
                    .where(*where, UpdateRow.author.is_(None))
                    .distinct()
                    .limit(2)
                )
            ).scalars()
            found.update((None, c) for c in anonymous)
        return found

    async def checkpoint_seqs(self, doc_id: int) -> list[int]:
        """Every checkpoint's ``upto_seq``, ascending."""
        async with self.store.engine.connect() as conn:
            seqs = await conn.execute(
                select(CheckpointRow.upto_seq)
                .where(CheckpointRow.doc_id == doc_id)
                .order_by(CheckpointRow.upto_seq)
            )
            return list(seqs.scalars())

    async def storage(self, doc_id: int) -> Storage:
        """How much the document's log and checkpoints take."""
        async with self._snapshot() as conn:
            rows, update_bytes = (
                await conn.execute(
                    select(
                        func.count(), func.coalesce(func.sum(func.length(UpdateRow.data)), 0)
                    ).where(UpdateRow.doc_id == doc_id)
                )
            ).one()
            checkpoints, checkpoint_bytes = (
                await conn.execute(
                    select(
                        func.count(), func.coalesce(func.sum(func.length(CheckpointRow.state)), 0)
                    ).where(CheckpointRow.doc_id == doc_id)
                )
            ).one()
        return Storage(rows, update_bytes, checkpoints, checkpoint_bytes)

    # -- named versions --

    async def named_versions(self, doc_id: int) -> list[NamedVersion]:
        """A document's named versions, newest version first."""
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    NamedVersionRow.id,
                    NamedVersionRow.seq,
                    NamedVersionRow.name,
                    NamedVersionRow.created_ms,
                    NamedVersionRow.author,
                )
                .where(NamedVersionRow.doc_id == doc_id)
                .order_by(NamedVersionRow.seq.desc(), NamedVersionRow.id.desc())
            )
            return [NamedVersion(*row) for row in rows]

    async def add_named_version(
        self, doc_id: int, seq: int, name: str, author: str | None
    ) -> NamedVersion | None:
        """Label version ``seq``; ``None`` if the document already has that name."""
        created_ms = now_ms()
        try:
            async with self.store.engine.begin() as conn:
                result = await conn.execute(
                    insert(NamedVersionRow).values(
                        doc_id=doc_id, seq=seq, name=name, created_ms=created_ms, author=author
                    )
                )
                new_id = result.inserted_primary_key
        except IntegrityError:
            return None
        assert new_id is not None
        return NamedVersion(int(new_id[0]), seq, name, created_ms, author)

    async def delete_named_version(self, doc_id: int, version_id: int) -> bool:
        """Remove a label; ``False`` if there was none with that id."""
        async with self.store.engine.begin() as conn:
            result = await conn.execute(
                delete(NamedVersionRow).where(
                    NamedVersionRow.doc_id == doc_id, NamedVersionRow.id == version_id
                )
            )
        return bool(result.rowcount)

    # -- compaction: the one rewrite of the log (see collab/compaction.py) --

    async def row_infos(
        self, doc_id: int, upto: int
    ) -> list[tuple[int, int, str | None, str | None, int]]:
        """(seq, created_ms, author, connection_id, bytes) of rows up to ``upto``."""
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    UpdateRow.seq,
                    UpdateRow.created_ms,
                    UpdateRow.author,
                    UpdateRow.connection_id,
                    func.length(UpdateRow.data),
                )
                .where(UpdateRow.doc_id == doc_id, UpdateRow.seq <= upto)
                .order_by(UpdateRow.seq)
            )
            return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def first_seq_after(self, doc_id: int, ms: int) -> int | None:
        """The first seq stored after time ``ms``."""
        async with self.store.engine.connect() as conn:
            seq = (
                await conn.execute(
                    select(func.min(UpdateRow.seq)).where(
                        UpdateRow.doc_id == doc_id, UpdateRow.created_ms > ms
                    )
                )
            ).scalar()
        return None if seq is None else int(seq)

    async def replace_runs(self, doc_id: int, runs: list[MergedRun]) -> bool:
        """Replace each run's rows by its merged row, all in one transaction.

        Each run must still consist of exactly the rows planned (another compaction may
        have got there first); otherwise nothing is changed and ``False`` returned.
        """
        async with self.store.engine.connect() as conn:
            async with conn.begin() as transaction:
                for run in runs:
                    deleted = await conn.execute(
                        delete(UpdateRow).where(
                            UpdateRow.doc_id == doc_id,
                            UpdateRow.seq >= run.first_seq,
                            UpdateRow.seq <= run.last_seq,
                        )
                    )
                    if deleted.rowcount != run.rows:
                        await transaction.rollback()
                        return False
                await conn.execute(
                    insert(UpdateRow),
                    [
                        {
                            "doc_id": doc_id,
                            "seq": run.last_seq,
                            "created_ms": run.created_ms,
                            "data": run.data,
                            "connection_id": run.connection_id,
                            "author": run.author,
                        }
                        for run in runs
                    ],
                )
        return True

    async def drop_checkpoints(self, doc_id: int, seqs: list[int]) -> None:
        """Delete the checkpoints at ``seqs`` (never the newest: the caller checked)."""
        async with self.store.engine.begin() as conn:
            for start in range(0, len(seqs), 500):
                await conn.execute(
                    delete(CheckpointRow).where(
                        CheckpointRow.doc_id == doc_id,
                        CheckpointRow.upto_seq.in_(seqs[start : start + 500]),
                    )
                )

    async def record_compaction(self, doc_id: int, **values: int) -> None:
        """Remember one compaction (``compactions`` table)."""
        async with self.store.engine.begin() as conn:
            await conn.execute(
                insert(CompactionRow).values(doc_id=doc_id, ran_ms=now_ms(), **values)
            )

    async def vacuum(self) -> None:
        """Give the space freed by compaction back to the file system (SQLite only)."""
        async with self.store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM")


# -- Dump and load (collab/dump.py) -------------------------------------------------------
#
# Moving documents with their whole history between databases. A dump reads every
# document in one snapshot, so it is consistent even while a server writes; a load writes
# each document in one transaction, so a document is either all there or not at all.
# Named versions and compactions live in tables that older schemas lack: they are looked
# up in the models' metadata and in the database, and skipped when either lacks them.

_DUMP_BATCH = 500


class DocumentExists(ValueError):
    """A load found a document of the same name, and was not told to replace it."""


@dataclass(frozen=True, slots=True)
class DumpBatch:
    """Some rows of one document, as column values (bytes for blobs).

    ``kind`` is ``document`` (one row: ``name``, ``created_ms``), ``update``,
    ``checkpoint`` or ``named_version``; rows never carry ``doc_id``.
    """

    kind: str
    rows: list[dict[str, Any]]


def _optional(name: str) -> Table | None:
    return Base.metadata.tables.get(name)


async def _has_table(conn: AsyncConnection, name: str) -> bool:
    if _optional(name) is None:
        return False
    return bool(await conn.run_sync(lambda sync: sync.dialect.has_table(sync, name)))


class DumpStore:
    """The queries of ``collab dump`` and ``collab load`` over a ``Store``'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def document_names(self, names: list[str]) -> set[str]:
        """Which of ``names`` exist (and are not deleted)."""
        found: set[str] = set()
        async with self.store.engine.connect() as conn:
            for start in range(0, len(names), _DUMP_BATCH):
                chunk = names[start : start + _DUMP_BATCH]
                rows = await conn.execute(
                    select(Document.name).where(
                        Document.name.in_(chunk), Document.deleted_ms.is_(None)
                    )
                )
                found.update(rows.scalars())
        return found

    async def dump(self, names: list[str] | None = None) -> AsyncGenerator[DumpBatch]:
        """Every document (or those named), in name order, each followed by its updates
        (by seq), checkpoints and named versions, all read in one snapshot. Deleted
        documents are left out (``collab backup`` keeps them)."""
        async with self.store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN")
            elif conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            query = select(Document.id, Document.name, Document.created_ms).where(
                Document.deleted_ms.is_(None)
            )
            if names is not None:
                query = query.where(Document.name.in_(names))
            documents = (await conn.execute(query.order_by(Document.name))).all()
            labels = (
                _optional("named_versions") if await _has_table(conn, "named_versions") else None
            )
            for doc_id, name, created_ms in documents:
                yield DumpBatch("document", [{"name": name, "created_ms": created_ms}])
                after = 0
                while True:
                    rows = (
                        await conn.execute(
                            select(
                                UpdateRow.seq,
                                UpdateRow.created_ms,
                                UpdateRow.author,
                                UpdateRow.connection_id,
                                UpdateRow.data,
                            )
                            .where(UpdateRow.doc_id == doc_id, UpdateRow.seq > after)
                            .order_by(UpdateRow.seq)
                            .limit(_DUMP_BATCH)
                        )
                    ).all()
                    if not rows:
                        break
                    yield DumpBatch("update", [dict(row._mapping) for row in rows])
                    after = rows[-1].seq
                after = -1
                while True:
                    # One at a time: each checkpoint is a whole document.
                    row = (
                        await conn.execute(
                            select(
                                CheckpointRow.upto_seq,
                                CheckpointRow.created_ms,
                                CheckpointRow.state,
                            )
                            .where(CheckpointRow.doc_id == doc_id, CheckpointRow.upto_seq > after)
                            .order_by(CheckpointRow.upto_seq)
                            .limit(1)
                        )
                    ).first()
                    if row is None:
                        break
                    yield DumpBatch("checkpoint", [dict(row._mapping)])
                    after = row.upto_seq
                if labels is not None:
                    columns = [c for c in labels.columns if c.name not in ("id", "doc_id")]
                    rows = (
                        await conn.execute(
                            select(*columns)
                            .where(labels.c.doc_id == doc_id)
                            .order_by(labels.c.seq, labels.c.id)
                        )
                    ).all()
                    if rows:
                        yield DumpBatch("named_version", [dict(row._mapping) for row in rows])

    @contextlib.asynccontextmanager
    async def load(
        self, name: str, created_ms: int, *, replace: bool = False
    ) -> AsyncIterator[Callable[[DumpBatch], Awaitable[None]]]:
        """Write one document in one transaction: yields ``insert(batch)`` for its rows;
        the transaction commits when the block ends without an exception.

        With ``replace``, an existing document of that name keeps its id (and whatever
        else refers to it) but loses its updates, checkpoints, named versions and
        compaction records to the loaded ones (and is no longer deleted, if it was).

        Raises:
            DocumentExists: the document exists and ``replace`` is false.
        """
        async with self.store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Take the write lock first: a deferred transaction that reads and then
                # writes fails outright if the server commits in between.
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            doc_id = (
                await conn.execute(select(Document.id).where(Document.name == name))
            ).scalar()
            optional = {t: await _has_table(conn, t) for t in ("named_versions", "compactions")}
            if doc_id is None:
                result = await conn.execute(
                    insert(Document).values(name=name, created_ms=created_ms)
                )
                assert result.inserted_primary_key is not None
                doc_id = int(result.inserted_primary_key[0])
            elif not replace:
                raise DocumentExists(f"document {name!r} already exists")
            else:
                for table in ("named_versions", "compactions"):
                    found = _optional(table)
                    if found is not None and optional[table]:
                        await conn.execute(delete(found).where(found.c.doc_id == doc_id))
                await conn.execute(delete(CheckpointRow).where(CheckpointRow.doc_id == doc_id))
                await conn.execute(delete(UpdateRow).where(UpdateRow.doc_id == doc_id))
                await conn.execute(
                    update(Document)
                    .where(Document.id == doc_id)
                    .values(created_ms=created_ms, deleted_ms=None)
                )
            targets: dict[str, Any] = {"update": UpdateRow, "checkpoint": CheckpointRow}
            if optional["named_versions"]:
                targets["named_version"] = _optional("named_versions")

            async def insert_batch(batch: DumpBatch) -> None:
                target = targets.get(batch.kind)
                if target is None:
                    raise ValueError(f"this database has no table for {batch.kind} rows")
                await conn.execute(
                    insert(target), [{**row, "doc_id": doc_id} for row in batch.rows]
                )

            yield insert_batch
            await conn.commit()


# -- Documents' lifecycle and revoked tokens (collab/docs_api.py, collab purge) -----------
#
# Creating a document on purpose (rather than by joining its room), deleting it softly,
# undeleting it, and purging what was deleted long enough ago; and the revoked-token list
# every server polls. Small, direct transactions: none of it is on the relay's path.


@dataclass(frozen=True, slots=True)
class DocumentState:
    """A document row, deleted or not."""

    id: int
    name: str
    created_ms: int
    deleted_ms: int | None


class DocumentStore:
    """Create, soft-delete, undelete and purge documents."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, name: str) -> DocumentState | None:
        """The document called ``name``, deleted or not; ``None`` if there is none."""
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(Document.id, Document.created_ms, Document.deleted_ms).where(
                        Document.name == name
                    )
                )
            ).first()
        return None if row is None else DocumentState(row[0], name, row[1], row[2])

    async def create(self, name: str) -> DocumentState | None:
        """Create an empty document; ``None`` if one of that name exists (even deleted)."""
        created_ms = now_ms()
        try:
            async with self.store.engine.begin() as conn:
                result = await conn.execute(
                    insert(Document).values(name=name, created_ms=created_ms)
                )
                new_id = result.inserted_primary_key
        except IntegrityError:
            return None
        assert new_id is not None
        return DocumentState(int(new_id[0]), name, created_ms, None)

    async def delete(self, name: str, at_ms: int) -> bool:
        """Mark ``name`` deleted at ``at_ms``; ``False`` if absent or deleted already."""
        async with self.store.engine.begin() as conn:
            result = await conn.execute(
                update(Document)
                .where(Document.name == name, Document.deleted_ms.is_(None))
                .values(deleted_ms=at_ms)
            )
        return bool(result.rowcount)

    async def undelete(self, name: str) -> bool:
        """Make a deleted document live again; ``False`` if it is not deleted (or absent)."""
        async with self.store.engine.begin() as conn:
            result = await conn.execute(
                update(Document)
                .where(Document.name == name, Document.deleted_ms.is_not(None))
                .values(deleted_ms=None)
            )
        return bool(result.rowcount)

    async def deleted_among(self, names: list[str]) -> set[str]:
        """Which of ``names`` are deleted (a server checks its loaded rooms)."""
        found: set[str] = set()
        async with self.store.engine.connect() as conn:
            for start in range(0, len(names), _DUMP_BATCH):
                rows = await conn.execute(
                    select(Document.name).where(
                        Document.name.in_(names[start : start + _DUMP_BATCH]),
                        Document.deleted_ms.is_not(None),
                    )
                )
                found.update(rows.scalars())
        return found

    async def purge(self, deleted_before_ms: int, *, dry_run: bool = False) -> list[str]:
        """Remove every document deleted before ``deleted_before_ms`` with all its rows
        (updates, checkpoints, named versions, compaction records); one transaction per
        document. Returns the names purged (or that would be, with ``dry_run``)."""
        async with self.store.engine.connect() as conn:
            due = (
                await conn.execute(
                    select(Document.id, Document.name)
                    .where(Document.deleted_ms < deleted_before_ms)
                    .order_by(Document.name)
                )
            ).all()
        if dry_run:
            return [row.name for row in due]
        purged = []
        for doc_id, name in due:
            async with self.store.engine.begin() as conn:
                # Still deleted (an undelete may have come in between): claim it first.
                claimed = await conn.execute(
                    update(Document)
                    .where(Document.id == doc_id, Document.deleted_ms < deleted_before_ms)
                    .values(deleted_ms=Document.deleted_ms)
                )
                if not claimed.rowcount:
                    continue
                for table in (NamedVersionRow, CompactionRow, CheckpointRow, UpdateRow):
                    await conn.execute(delete(table).where(table.doc_id == doc_id))
                await conn.execute(delete(Document).where(Document.id == doc_id))
            purged.append(name)
        return purged


class TokenStore:
    """The ids of revoked tokens (JWT ``jti``), which every server polls."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def revoke(self, jti: str, expires_ms: int | None = None) -> bool:
        """Revoke token ``jti``; ``False`` if it was revoked already.

        Args:
            expires_ms: when the token expires anyway, if known; the row is purged after.
        """
        try:
            async with self.store.engine.begin() as conn:
                await conn.execute(
                    insert(RevokedToken).values(
                        jti=jti, revoked_ms=now_ms(), expires_ms=expires_ms
                    )
                )
        except IntegrityError:
            return False
        return True

    async def revoked(self) -> set[str]:
        """Every revoked token id."""
        async with self.store.engine.connect() as conn:
            return set((await conn.execute(select(RevokedToken.jti))).scalars())

    async def purge(self, expired_before_ms: int) -> int:
        """Forget revocations of tokens that expired before ``expired_before_ms`` (an
        expired token is refused anyway); returns how many."""
        async with self.store.engine.begin() as conn:
            result = await conn.execute(
                delete(RevokedToken).where(RevokedToken.expires_ms < expired_before_ms)
            )
        return int(result.rowcount or 0)
