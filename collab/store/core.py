"""The Store: group-committed writes through one writer, and loading rooms.

Writes go through one writer task, in order, with group commit: ``append`` and
``checkpoint`` only queue a row (they never wait), and the writer commits what is queued,
oldest first, at most ``commit_interval`` seconds after the first row of the batch
arrived, in transactions of at most ``batch_rows`` rows and ``batch_bytes`` bytes (so a
backlog never becomes one transaction too large to fit). That bounds how much a crash can
lose without paying a commit per keystroke. When a commit fails (locked database, full
disk, the server gone) the updates stay queued and are retried with backoff, the queued
checkpoints are dropped (they are derived data: the log holds everything), and the store
says it is ``stalled`` until a commit succeeds again; rooms keep serving from memory
meanwhile. The queue is bounded in bytes: past ``max_backlog`` the hub turns writers away
(close 1013) so memory cannot grow without limit, and their clients keep their edits and
resend them on reconnect.

Reads (``load``) use pooled connections of their own; in SQLite's WAL mode they never
block the writer. Every wait on the database (``load``, ``schema_status``, the reads of
the other store modules through ``connect``/``begin``) is bounded by ``db_timeout``, and
a timeout or a database failure raises ``StoreUnavailable`` (close 1013, HTTP 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
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
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    ProgrammingError,
    TimeoutError as PoolTimeout,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from collab.clock import now_ms
from collab.errors import StoreUnavailable
from collab.store.models import (
    CheckpointRow,
    Document,
    UpdateRow,
)

__all__ = [
    "DocumentInfo",
    "Loaded",
    "Store",
    "StoreClosed",
    "StoreUnavailable",
    "check_url",
    "now_ms",
    "upgrade_schema",
]


log = logging.getLogger(__name__)

# migrations/ ships inside the package as collab.migrations (see pyproject.toml).
_MIGRATIONS = files("collab.migrations")
_MAX_BACKOFF = 5.0
_BATCH_BYTES = 4 * 1024 * 1024  # per transaction: a few MB fits wherever a commit can
_BATCH_ROWS = 10_000
_WAL_LIMIT = 4 * _BATCH_BYTES  # SQLite truncates a reset WAL back to this size
_READ_THREADS = 4  # SQLite: room loads run in these, a whole load per hop
_T = TypeVar("_T")
# A queued row: (row, its bytes, whether it is a checkpoint, its number in the queue).
_Entry = tuple[dict[str, Any], int, bool, int]


def check_url(url: str) -> None:
    """Refuse a database URL the store cannot work with.

    Raises:
        ValueError: an in-memory SQLite database, which each of the store's connections
            would see as a different, empty database.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (parsed.database or ":memory:") == ":memory:":
        raise ValueError("an in-memory SQLite database cannot be shared; give a file path")


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


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot do this now" rather than a bug or a
    conflict the caller handles (a unique name taken: ``IntegrityError``)."""
    if isinstance(exc, DBAPIError):
        return not isinstance(exc, IntegrityError | ProgrammingError | DataError)
    # The pool had no connection to give, or a driver failed to reach the server.
    return isinstance(exc, PoolTimeout | OSError)


def _out_of_space(exc: BaseException) -> bool:
    """Whether SQLite failed for want of disk space (or failed to write at all)."""
    name = getattr(getattr(exc, "orig", None), "sqlite_errorname", None) or ""
    return name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR")


def _truncate_wal(conn: Connection) -> None:
    # After a failed commit on a full disk the WAL keeps the size it grew to; copying its
    # committed frames into the database and cutting it to zero gives that space back.
    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").close()


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL: readers never block the writer. synchronous=NORMAL: a commit survives a
        # process crash (kill -9); only an OS crash or power cut can lose the last commits.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
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
        db_timeout: seconds a wait on the database may take before ``StoreUnavailable``
            (``None``, the default for the command-line tools: no bound; the server
            passes ``Config.db_timeout``).
        batch_bytes, batch_rows: the most one transaction of the writer carries (a single
            larger row still goes, alone).
    """

    def __init__(
        self,
        url: str,
        *,
        commit_interval: float = 0.05,
        close_timeout: float = 10.0,
        busy_timeout_ms: int = 5000,
        db_timeout: float | None = None,
        batch_bytes: int = _BATCH_BYTES,
        batch_rows: int = _BATCH_ROWS,
    ) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self.db_timeout = db_timeout
        self.batch_bytes = batch_bytes
        self.batch_rows = batch_rows
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
        self._rows: deque[_Entry] = deque()  # to write, oldest first
        self._creates: dict[str, asyncio.Future[int]] = {}  # documents to create, by name
        self._queued = 0  # rows ever queued
        # Every row numbered below this is committed (or, a checkpoint, dropped). Rows are
        # settled oldest first, so one number says it; a flush waits for it to pass.
        self._settled = 0
        self._recheck = False  # the last commit failed: it may have landed all the same
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
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "Store.open() first"
        return self._engine

    @property
    def write_engine(self) -> Engine:
        """The engine whose connections the writer commits on (for observing commits)."""
        return self._sync_engine or self.engine.sync_engine

    @property
    def stalled(self) -> bool:
        """Whether the store cannot commit now: the last commit failed, or the one in
        flight has taken longer than ``db_timeout``. Cleared by the next good commit."""
        if self.stalled_since is not None:
            return True
        started, limit = self._commit_started, self.db_timeout
        return started is not None and limit is not None and time.monotonic() - started > limit

    def bounded(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Bound a wait on the database: a block that takes longer than ``db_timeout``,
        or fails because the database is unavailable, raises ``StoreUnavailable``
        (other errors, such as an ``IntegrityError`` the caller handles, pass through)."""
        return self._guard(self.db_timeout)

    @contextlib.asynccontextmanager
    async def connect(self, *, bounded: bool = True) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for reads. The whole block is ``bounded`` unless told
        otherwise (long maintenance: dump, load, compaction, purge); a database failure
        raises ``StoreUnavailable`` either way."""
        async with self._guard(self.db_timeout if bounded else None):
            async with self.engine.connect() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def begin(self, *, bounded: bool = True) -> AsyncIterator[AsyncConnection]:
        """Like ``connect``, in a transaction committed at the end of the block (the
        small direct writes of the other store modules)."""
        async with self._guard(self.db_timeout if bounded else None):
            async with self.engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _guard(self, limit: float | None) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(limit):
                yield
        except TimeoutError as exc:
            within = "in time" if limit is None else f"within {limit:g} s"
            raise StoreUnavailable(f"database did not answer {within}") from exc
        except (DBAPIError, PoolTimeout, OSError) as exc:
            if not _unavailable(exc):
                raise
            raise StoreUnavailable("database unavailable") from exc

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
                    len(self._rows),
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
        """The database's schema revision and the newest one this code knows.

        Raises:
            StoreUnavailable: no answer within ``db_timeout``, or the database failed.
        """
        if self._head is None:
            # Reading the migration scripts touches the disk: once, off the event loop.
            self._head = await asyncio.to_thread(_head_revision)
        async with self.connect() as conn:
            return await conn.run_sync(_current_revision), self._head

    async def load(self, name: str) -> Loaded:
        """Fetch what the room ``name`` needs to start, creating the document if new.

        Raises:
            StoreUnavailable: the database did not answer (or create the document)
                within ``db_timeout``, or failed.
        """
        async with self.bounded():
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
            # another is how a burst of new rooms would exhaust the pool. A creation that
            # times out stays queued: the document is created once the writer can.
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
        async with self.connect() as conn:
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
            {
                "doc_id": doc_id,
                "seq": seq,
                "created_ms": created_ms if created_ms is not None else now_ms(),
                "data": data,
                "connection_id": connection_id,
                "author": author,
            },
            len(data),
            False,
        )

    def checkpoint(self, doc_id: int, upto_seq: int, state: bytes) -> None:
        """Queue a checkpoint: the whole document as of update ``upto_seq``."""
        self._queue(
            {"doc_id": doc_id, "upto_seq": upto_seq, "created_ms": now_ms(), "state": state},
            len(state),
            True,
        )

    async def flush(self) -> None:
        """Wait until every row queued so far is committed (a checkpoint dropped after a
        failed commit counts as settled). It waits as long as that takes: a reader that
        must answer in time flushes inside ``bounded()``."""
        if self._settled >= self._queued:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, future))
        self._urgent.set()
        await future

    def _queue(self, row: dict[str, Any], size: int, checkpoint: bool) -> None:
        if self._closing and self._writer is None:
            raise StoreClosed("store is closed")
        rows = self._rows
        if not rows:
            # Rows queued while a batch commits find the queue empty too, so each batch's
            # window starts with its own first row.
            self._first_queued_at = asyncio.get_running_loop().time()
        rows.append((row, size, checkpoint, self._queued))
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
            if not (self._rows or self._creates):
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
            creates, self._creates = self._creates, {}
            updates = [entry[0] for entry in batch if not entry[2]]
            checkpoints = [entry[0] for entry in batch if entry[2]]
            started = loop.time()
            self._commit_started = time.monotonic()
            try:
                created = await self._commit(updates, checkpoints, list(creates))
            except Exception as exc:  # any failure: keep the updates, retry; never drop them
                self._commit_started = None
                self._rows.extendleft(reversed(batch))
                self._creates = {**creates, **self._creates}
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
                if self._sync_engine is not None and _out_of_space(exc):
                    self._wal_grew = True
                    await self._truncate_wal()
                await asyncio.sleep(backoff)
                continue
            self._commit_started = None
            backoff = 0.0
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(loop.time() - started)
            for name, future in creates.items():
                if not future.done():
                    future.set_result(created[name])
            self.backlog_bytes -= sum(entry[1] for entry in batch)
            if self.stalled_since is not None:
                await self._recovered()
            self._settle()

    def _failed(self) -> tuple[bool, int]:
        """After a failed commit: count it, and drop every queued checkpoint. Returns
        whether it is the first failure since the last good commit, and how many
        checkpoints were dropped."""
        self.write_errors += 1
        self._recheck = True  # a commit cut off at COMMIT may have landed
        first = self.stalled_since is None
        if first:
            self.stalled_since = time.monotonic()
        # A checkpoint is the document as of some update, which the log holds anyway:
        # retrying it only makes the transaction that must fit larger. Loads read the
        # newest checkpoint that was stored, and the updates after it.
        kept = deque(entry for entry in self._rows if not entry[2])
        dropped = len(self._rows) - len(kept)
        if dropped:
            self.backlog_bytes -= sum(entry[1] for entry in self._rows if entry[2])
            self.checkpoints_dropped += dropped
            self._rows = kept
            self._settle()  # a flush waiting for nothing but checkpoints is done
        return first, dropped

    async def _truncate_wal(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._write_thread, self._in_thread, _truncate_wal
            )
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
        if self._recheck and updates:
            # The previous commit failed; if it failed only after the database had made
            # it durable (a connection cut at COMMIT), its rows are there already, and
            # writing them again would fail on the primary key forever.
            updates = self._unwritten(conn, updates)
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

    def _unwritten(self, conn: Connection, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of ``updates`` with a seq of their own that are not stored yet."""
        wanted: dict[int, set[int]] = {}
        for row in updates:
            if row["seq"] is not None and not row.get("_assigned"):
                wanted.setdefault(row["doc_id"], set()).add(row["seq"])
        stored: set[tuple[int, int]] = set()
        for doc_id, seqs in wanted.items():
            found = conn.execute(
                select(UpdateRow.seq).where(
                    UpdateRow.doc_id == doc_id, UpdateRow.seq.between(min(seqs), max(seqs))
                )
            )
            stored.update((doc_id, seq) for seq in found.scalars() if seq in seqs)
        conn.rollback()  # end the read, so the write below begins its own transaction
        self._recheck = False
        return [r for r in updates if (r["doc_id"], r["seq"]) not in stored]

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

    def _settle(self) -> None:
        """Move ``_settled`` up to the oldest row still queued, and release the flushes
        that were waiting for it (called by the writer between commits only)."""
        self._settled = self._rows[0][3] if self._rows else self._queued
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
