"""The Store: group-committed writes through one writer, and loading rooms.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Select,
    and_,
    case,
    create_engine,
    event,
    func,
    insert,
    make_url,
    or_,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from collab.models import (
    CheckpointRow,
    Document,
    UpdateRow,
)

__all__ = [
    "DocumentInfo",
    "Loaded",
    "Store",
    "StoreClosed",
    "check_url",
    "now_ms",
    "upgrade_schema",
]


log = logging.getLogger(__name__)

# migrations/ ships inside the package as collab.migrations (see pyproject.toml).
_MIGRATIONS = files("collab.migrations")
_MAX_BACKOFF = 5.0
_READ_THREADS = 4  # SQLite: room loads run in these, a whole load per hop
_T = TypeVar("_T")


def check_url(url: str) -> None:
    """Refuse a database URL the store cannot work with.

    Raises:
        ValueError: an in-memory SQLite database, which each of the store's connections
            would see as a different, empty database.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (parsed.database or ":memory:") == ":memory:":
        raise ValueError("an in-memory SQLite database cannot be shared; give a file path")


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


def _newest_checkpoint_query(doc_id: int, upto_seq: int | None) -> Select[int, bytes]:
    query = select(CheckpointRow.upto_seq, CheckpointRow.state).where(
        CheckpointRow.doc_id == doc_id
    )
    if upto_seq is not None:
        query = query.where(CheckpointRow.upto_seq <= upto_seq)
    return query.order_by(CheckpointRow.upto_seq.desc()).limit(1)


async def newest_checkpoint(
    conn: AsyncConnection, doc_id: int, upto_seq: int | None = None
) -> tuple[int, bytes | None]:
    """The newest checkpoint of ``doc_id`` (as of ``upto_seq`` at most): its seq and state,
    or ``(0, None)`` when there is none."""
    row = (await conn.execute(_newest_checkpoint_query(doc_id, upto_seq))).first()
    return (row[0], row[1]) if row else (0, None)


def _load_rows(conn: Connection, name: str) -> Loaded | None:
    """What room ``name`` needs to start; ``None`` if there is no such document."""
    found = conn.execute(
        select(Document.id, Document.deleted_ms).where(Document.name == name)
    ).first()
    if found is None:
        return None
    doc_id = found.id
    if found.deleted_ms is not None:
        return Loaded(doc_id, None, 0, [], 0, found.deleted_ms)
    newest = conn.execute(_newest_checkpoint_query(doc_id, None)).first()
    checkpoint_seq, checkpoint = (newest[0], newest[1]) if newest else (0, None)
    rows = conn.execute(
        select(UpdateRow.seq, UpdateRow.data)
        .where(UpdateRow.doc_id == doc_id, UpdateRow.seq > checkpoint_seq)
        .order_by(UpdateRow.seq)
    ).all()
    last_seq = rows[-1][0] if rows else checkpoint_seq
    return Loaded(doc_id, checkpoint, checkpoint_seq, [r[1] for r in rows], last_seq)


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
        # SQLite only: a synchronous engine, used by the writer's thread and by the
        # threads that load rooms (see open()).
        self._sync_engine: Engine | None = None
        self._write_thread: ThreadPoolExecutor | None = None
        self._read_threads: ThreadPoolExecutor | None = None
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
        """Connect, bring the schema to the newest revision, and start the writer.

        Raises:
            ValueError: an in-memory SQLite database, which each of the store's
                connections would see as a different, empty database.
        """
        check_url(self.url)
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
            # Through aiosqlite every driver call is a round trip to its thread: about six
            # per commit plus the pool's rollback on return (0.8 ms of CPU per commit, as
            # much as SQLite's own work for 100 rows), a dozen per room load (4 ms). So
            # the writer runs each whole batch, and a room load all its queries, in one
            # hop to a thread that uses a plain sqlite3 connection. Each connection is
            # used by one thread at a time (the pool hands it out), never shared.
            self._sync_engine = await asyncio.to_thread(
                create_engine,
                make_url(self.url).set(drivername="sqlite"),
                pool_size=1 + _READ_THREADS,
                max_overflow=0,
                connect_args={"check_same_thread": False},
            )
            event.listen(self._sync_engine, "connect", _sqlite_pragmas(self.busy_timeout_ms))
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="collab-store-writer")
            self._read_threads = ThreadPoolExecutor(
                _READ_THREADS, thread_name_prefix="collab-store-reader"
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
        for threads in (self._write_thread, self._read_threads):
            if threads is not None:
                # A batch cancelled by the timeout above may still be running there: it
                # ends within busy_timeout at most.
                await asyncio.to_thread(threads.shutdown)
        self._write_thread = self._read_threads = None
        if self._sync_engine is not None:
            await asyncio.to_thread(self._sync_engine.dispose)
            self._sync_engine = None
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
        if self._sync_engine is not None:
            loaded = await asyncio.get_running_loop().run_in_executor(
                self._read_threads, self._in_thread, _load_rows, name
            )
        else:
            async with self.engine.connect() as conn:
                loaded = await conn.run_sync(_load_rows, name)
        if loaded is not None:
            return loaded
        # Outside the read connection: holding one pooled connection while asking for
        # another is how a burst of new rooms would exhaust the pool.
        return Loaded(await self._create(name), None, 0, [], 0)

    def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(connection, *args)`` on a connection of the synchronous engine (in one
        of the store's threads)."""
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            return fn(conn, *args)

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
        # "Last edited" is the newest update's time: one primary-key lookup per document
        # (created_ms grows with seq). Counting and measuring updates costs a scan of
        # each document's rows, so it is done for the page's documents only.
        updated = func.coalesce(
            select(UpdateRow.created_ms)
            .where(UpdateRow.doc_id == Document.id)
            .order_by(UpdateRow.seq.desc())
            .limit(1)
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
                    # (after a random pause, so two nodes do not collide in lockstep). A
                    # checkpoint another node wrote meanwhile is skipped on the retry.
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
        if self._sync_engine is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._write_thread,
                self._in_thread,
                self._write_batch,
                updates,
                checkpoints,
                creates,
            )
        async with self.engine.connect() as conn:
            return await conn.run_sync(self._write_batch, updates, checkpoints, creates)

    def _write_batch(
        self,
        conn: Connection,
        updates: list[dict[str, Any]],
        checkpoints: list[dict[str, Any]],
        creates: list[str],
    ) -> dict[str, int]:
        """Write one batch in one transaction; return the ids of the documents created.

        Synchronous: it runs in the SQLite writer's thread, or for an async driver
        (asyncpg) through ``AsyncConnection.run_sync``. It only reads the rows handed to
        it, which the event loop leaves alone until the commit is over, and numbers them.
        """
        created: dict[str, int] = {}
        with conn.begin():
            if creates:
                # Names another node (or an earlier batch) created already are reused.
                find = select(Document.name, Document.id).where(Document.name.in_(creates))
                existing = {row[0]: row[1] for row in conn.execute(find)}
                missing = [n for n in creates if n not in existing]
                if missing:
                    at = now_ms()
                    conn.execute(
                        insert(Document), [{"name": n, "created_ms": at} for n in missing]
                    )
                    existing.update((row[0], row[1]) for row in conn.execute(find))
                created = existing
            if updates:
                self._number(conn, updates)
                # The one statement run per keystroke's worth of rows: straight to the
                # driver's executemany, without per-row parameter processing.
                sql, columns = self._insert_update_sql(conn)
                conn.exec_driver_sql(sql, [tuple(r[c] for c in columns) for r in updates])
            if checkpoints:
                # The same checkpoint may be built twice (by two nodes, or by one node for
                # two reasons at once): it is the same state, so keep the first.
                fresh = []
                seen: set[tuple[int, int]] = set()
                for row in checkpoints:
                    key = (row["doc_id"], row["upto_seq"])
                    if key in seen:
                        continue
                    seen.add(key)
                    found = conn.execute(
                        select(CheckpointRow.upto_seq).where(
                            CheckpointRow.doc_id == row["doc_id"],
                            CheckpointRow.upto_seq == row["upto_seq"],
                        )
                    )
                    if found.first() is None:
                        fresh.append(row)
                if fresh:
                    conn.execute(insert(CheckpointRow), fresh)
        return created

    def _insert_update_sql(self, conn: Connection) -> tuple[str, tuple[str, ...]]:
        if self._update_sql is None:
            compiled = insert(UpdateRow).compile(dialect=conn.dialect)
            names = compiled.positiontup
            if names is None:  # a dialect with named parameters: make them positional
                raise RuntimeError(f"unsupported parameter style {conn.dialect.paramstyle}")
            self._update_sql = (compiled.string, tuple(names))
        return self._update_sql

    def _number(self, conn: Connection, updates: list[dict[str, Any]]) -> bool:
        """Give rows queued with ``seq=None`` the next numbers of their document's log;
        return whether there were any."""
        unnumbered = [row for row in updates if row["seq"] is None or row.get("_assigned")]
        if not unnumbered:
            return False
        docs = {row["doc_id"] for row in unnumbered}
        tops = conn.execute(
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
