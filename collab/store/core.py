"""The Store: the one object the server and the tools hold to reach the database.

It owns the store's life (``open``: connections, the schema upgrade, the writer; ``close``:
drain the writer, close the connections), loading rooms (``load``: one read; a new name
gets a provisional id and its row is queued for the writer, which the server's rooms do
not wait for) and the bounds every wait on the database gets.
The rest it composes: the single writer with group commit is ``writer.py`` (a ``Store``
is a ``Writer``: ``append``, ``checkpoint``, ``flush``, ``stalled`` and the counters are
the writer's), connections and failures ``engine.py``, the schema ``schema.py``, the
document list ``listing.py``.

Reads (``load``) use pooled connections of their own; in SQLite's WAL mode they never
block the writer. Every wait on the database (``load``, ``schema_status``, the reads of
the other store modules through ``connect``/``begin``) is bounded by ``db_timeout``, and
a timeout or a database failure raises ``StoreUnavailable`` (close 1013, HTTP 503).
``connect``/``begin`` first wait for the documents queued for creation: every read (the
list, ``POST /api/docs``'s 409, a delete) finds each document a room has opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    Select,
    String,
    bindparam,
    cast,
    null,
    select,
    union_all,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import CompoundSelect

from collab.clock import now_ms
from collab.errors import StoreUnavailable
from collab.store.engine import Database, Reader, check_url, guard
from collab.store.listing import DocumentInfo, list_documents
from collab.store.models import CheckpointRow, Document, RetiredLineage, UpdateRow
from collab.store.schema import current_revision, head_revision, upgrade_schema
from collab.store.writer import BATCH_BYTES, BATCH_ROWS, StoreClosed, Writer

_T = TypeVar("_T")

__all__ = [
    "DocumentInfo",
    "Loaded",
    "Store",
    "StoreClosed",
    "StoreUnavailable",
    "check_url",
    "document_rows",
    "newest_checkpoint",
    "now_ms",
    "upgrade_schema",
]


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
    retired: list[bytes] = field(default_factory=list)
    """The state vectors of the lineages its name retired (``collab.sync.lineage``)."""
    lineage: str | None = None
    """Its current lineage (``None`` for a document not created yet)."""


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


class _Statement:
    """A query compiled once per dialect and run straight through the driver
    (``exec_driver_sql``): for a point query on SQLite that is 34 µs of CPU instead of
    the 114 µs a Core ``select`` costs in parameter and result processing, which a room
    load paid up to three times (``docs/performance.md``)."""

    __slots__ = ("_build", "_compiled")

    def __init__(
        self, build: Callable[[], Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]]]
    ) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {}

    def run(self, conn: Connection | Reader, **params: Any) -> Sequence[Any]:
        compiled = self._compiled.get(conn.dialect.name)
        if compiled is None:
            query = self._build().compile(dialect=conn.dialect)
            if query.positiontup is None:  # a dialect with named parameters
                raise RuntimeError(f"unsupported parameter style {conn.dialect.paramstyle}")
            compiled = (query.string, tuple(query.positiontup), dict(query.params))
            self._compiled[conn.dialect.name] = compiled
        sql, order, defaults = compiled
        values = {**defaults, **params}
        if isinstance(conn, Reader):  # a room load on SQLite: straight to the driver
            return conn.rows(sql, tuple(values[n] for n in order))
        return conn.exec_driver_sql(sql, tuple(values[n] for n in order)).all()


# The document's row and its name's retired lineages in one statement: a room load
# stays one round trip for a name that never retired anything, and for one that did.
_FIND = _Statement(
    lambda: union_all(
        select(
            Document.id, Document.deleted_ms, Document.lineage, cast(null(), LargeBinary)
        ).where(Document.name == bindparam("name")),
        select(
            cast(null(), Integer),
            cast(null(), BigInteger),
            cast(null(), String),
            RetiredLineage.state_vector,
        ).where(RetiredLineage.name == bindparam("name")),
    )
)
_NEWEST_CHECKPOINT = _Statement(
    lambda: (
        select(CheckpointRow.upto_seq, CheckpointRow.state)
        .where(CheckpointRow.doc_id == bindparam("doc_id"))
        .order_by(CheckpointRow.upto_seq.desc())
        .limit(1)
    )
)
_UPDATES_AFTER = _Statement(
    lambda: (
        select(UpdateRow.seq, UpdateRow.data)
        .where(UpdateRow.doc_id == bindparam("doc_id"), UpdateRow.seq > bindparam("after"))
        .order_by(UpdateRow.seq)
    )
)


def _load_rows(conn: Connection | Reader, name: str) -> tuple[Loaded | None, list[bytes]]:
    """What room ``name`` needs to start (``None`` if there is no such document), and
    the retired lineages of its name (a purged name has them without a document)."""
    found = _FIND.run(conn, name=name)
    retired = [bytes(r[3]) for r in found if r[3] is not None]
    documents = [r for r in found if r[0] is not None]
    if not documents:
        return None, retired
    doc_id, deleted_ms, lineage = documents[0][:3]
    return replace(document_rows(conn, doc_id, deleted_ms), lineage=lineage), retired


def document_rows(conn: Connection | Reader, doc_id: int, deleted_ms: int | None) -> Loaded:
    """A stored document's newest checkpoint and the updates after it (a deleted one's:
    nothing, unless ``deleted_ms`` is ``None``); a sync connection's work."""
    if deleted_ms is not None:
        return Loaded(doc_id, None, 0, [], 0, deleted_ms)
    newest = _NEWEST_CHECKPOINT.run(conn, doc_id=doc_id)
    checkpoint_seq, checkpoint = (newest[0][0], bytes(newest[0][1])) if newest else (0, None)
    rows = _UPDATES_AFTER.run(conn, doc_id=doc_id, after=checkpoint_seq)
    last_seq = rows[-1][0] if rows else checkpoint_seq
    return Loaded(doc_id, checkpoint, checkpoint_seq, [bytes(r[1]) for r in rows], last_seq)


class Store(Writer):
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
        batch_bytes: int = BATCH_BYTES,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        super().__init__(
            Database(url, busy_timeout_ms),
            commit_interval=commit_interval,
            close_timeout=close_timeout,
            db_timeout=db_timeout,
            batch_bytes=batch_bytes,
            batch_rows=batch_rows,
        )
        self._head: str | None = None

    @property
    def engine(self) -> AsyncEngine:
        return self._db.engine

    def trace_writes(self, callback: Callable[[str, Any], None] | None) -> None:
        """Call ``callback(statement, parameters)`` with each statement the writer runs on
        SQLite, and ``callback("COMMIT", None)`` after each of its commits: those go
        straight to the driver, where no engine event sees them (tests observe them)."""
        self._db.trace_writes(callback)

    def trace_reads(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback`` with each statement a room load runs on SQLite, where those
        go straight to the driver and no engine event sees them (tests count them)."""
        self._db.trace_reads(callback)

    def bounded(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Bound a wait on the database: a block that takes longer than ``db_timeout``,
        or fails because the database is unavailable, raises ``StoreUnavailable``
        (other errors, such as an ``IntegrityError`` the caller handles, pass through)."""
        return guard(self.db_timeout)

    @contextlib.asynccontextmanager
    async def connect(self, *, bounded: bool = True) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for reads. The whole block is ``bounded`` unless told
        otherwise (long maintenance: dump, load, compaction, purge); a database failure
        raises ``StoreUnavailable`` either way."""
        async with guard(self.db_timeout if bounded else None):
            await self._creations_settled()
            async with self.engine.connect() as conn:
                yield conn

    async def read_direct(self, fn: Callable[..., _T], *args: Any) -> _T:
        """SQLite only: ``fn(reader, *args)`` on a reader thread's own connection, its
        statements straight to the driver (``driver.Reader``), bounded and after the
        documents being created are settled, as ``connect``."""
        async with guard(self.db_timeout):
            await self._creations_settled()
            return await self._db.read_direct(fn, *args)

    @contextlib.asynccontextmanager
    async def begin(self, *, bounded: bool = True) -> AsyncIterator[AsyncConnection]:
        """Like ``connect``, in a transaction committed at the end of the block (the
        small direct writes of the other store modules)."""
        async with guard(self.db_timeout if bounded else None):
            await self._creations_settled()
            async with self.engine.begin() as conn:
                yield conn

    async def open(self, *, upgrade: bool = True) -> None:
        """Connect, bring the schema to the newest revision, and start the writer.

        Raises:
            ValueError: an in-memory SQLite database, which each of the store's
                connections would see as a different, empty database.
        """
        check_url(self.url)
        await self._db.open()
        if upgrade:
            # One query says whether the schema is current; only then is Alembic imported
            # (and its scripts read, off the event loop) to upgrade it.
            self._head = await asyncio.to_thread(head_revision)
            if await self._db.read(current_revision) != self._head:
                await asyncio.to_thread(upgrade_schema, self.url)
        self._start_writer()

    async def close(self) -> None:
        """Commit everything queued, stop the writer and close the connections.

        If the database still refuses writes after ``close_timeout`` seconds, give up and say
        how much was not stored: the clients that sent it still hold it, and upload it
        again when they reconnect (the server's SyncStep1 asks them to).
        """
        await self._stop_writer()
        await self._db.close()

    async def schema_status(self) -> tuple[str | None, str | None]:
        """The database's schema revision and the newest one this code knows.

        Raises:
            StoreUnavailable: no answer within ``db_timeout``, or the database failed.
        """
        if self._head is None:
            # Reading the migration scripts touches the disk: once, off the event loop.
            self._head = await asyncio.to_thread(head_revision)
        # Not through connect(): readiness need not wait for documents being created.
        async with self.bounded(), self.engine.connect() as conn:
            return await conn.run_sync(current_revision), self._head

    async def load(self, name: str, *, provisional: bool = False) -> Loaded:
        """Fetch what the room ``name`` needs to start (one read), creating the document
        if new.

        ``provisional``: a new document is not waited for. It gets a provisional
        (negative) id at once (``Writer.provisional``) and its row is created by the next
        group commit, with or before the first updates queued under that id; register
        ``when_created`` before the next ``await`` to learn the real id. Without it (the
        tools), the document is created now and its real id returned.

        Raises:
            StoreUnavailable: the database did not answer (or create the document)
                within ``db_timeout``, or failed.
        """
        async with self.bounded():
            # Read even when the name is still pending creation: the read finds nothing
            # yet and ``provisional`` gives back the same id, with the name's retired
            # lineages, and anything another node committed meanwhile is found.
            loaded, retired = await self._db.read_direct(_load_rows, name)
            if loaded is not None:
                return replace(loaded, retired=retired) if retired else loaded
            if provisional:
                return Loaded(self.provisional(name), None, 0, [], 0, retired=retired)
            # Outside the read connection: holding one pooled connection while asking for
            # another is how a burst of new rooms would exhaust the pool. A creation that
            # times out stays queued: the document is created once the writer can.
            return Loaded(await self._create(name), None, 0, [], 0, retired=retired)

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
        async with self.connect() as conn:
            return await list_documents(conn, contains, limit, before)
