"""The store's connections: engines, SQLite's pragmas and threads, and database failures.

Owns what the rest of the store runs its SQL on: the async engine every read and small
write uses, and on SQLite a synchronous engine with one writer thread and a few reader
threads (so a whole commit or a whole room load is one hop to a thread, not a dozen
round trips through aiosqlite), whose own connections are ``driver.py``'s. Owns the URL
check, the pragmas every SQLite connection gets, and the one mapping from "the database
cannot answer now" to ``StoreUnavailable``.
It runs no query of its own but the WAL truncation; it never queues or orders writes
(``writer.py`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    ProgrammingError,
    TimeoutError as PoolTimeout,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from collab.errors import StoreUnavailable
from collab.store.driver import DriverConnection, Reader, Threads

__all__ = ["Database", "Reader", "check_url", "guard", "out_of_space", "unavailable"]

# SQLite truncates a reset WAL back to this size: four of the writer's default batches.
_WAL_LIMIT = 16 * 1024 * 1024
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


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot do this now" rather than a bug or a
    conflict the caller handles (a unique name taken: ``IntegrityError``)."""
    if isinstance(exc, DBAPIError):
        return not isinstance(exc, IntegrityError | ProgrammingError | DataError)
    # The pool had no connection to give, or a driver failed to reach the server.
    return isinstance(exc, PoolTimeout | OSError)


def out_of_space(exc: BaseException) -> bool:
    """Whether SQLite failed for want of disk space (or failed to write at all)."""
    name = getattr(getattr(exc, "orig", None), "sqlite_errorname", None) or ""
    return name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR")


@contextlib.asynccontextmanager
async def guard(limit: float | None) -> AsyncIterator[None]:
    """Bound a block to ``limit`` seconds (``None``: no bound); a timeout, or a failure
    that means the database is unavailable, raises ``StoreUnavailable`` (other errors,
    such as an ``IntegrityError`` the caller handles, pass through)."""
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError as exc:
        within = "in time" if limit is None else f"within {limit:g} s"
        raise StoreUnavailable(f"database did not answer {within}") from exc
    except (DBAPIError, PoolTimeout, OSError) as exc:
        if not unavailable(exc):
            raise
        raise StoreUnavailable("database unavailable") from exc


def _truncate_wal(conn: DriverConnection) -> None:
    # After a failed commit on a full disk the WAL keeps the size it grew to; copying its
    # committed frames into the database and cutting it to zero gives that space back.
    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").close()


def _set_result(future: asyncio.Future[_T], result: _T) -> None:
    if not future.done():  # not cancelled (a timeout) meanwhile
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


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


class Database:
    """The engines and threads of one store, between ``open`` and ``close``.

    Args:
        url: an SQLAlchemy async URL.
        busy_timeout_ms: SQLite's wait for a lock another connection holds.
    """

    def __init__(self, url: str, busy_timeout_ms: int) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
        self._engine: AsyncEngine | None = None
        self.sync_engine: Engine | None = None
        """SQLite only: the synchronous engine of the writer's and the readers' threads."""
        self._write_thread: Threads | None = None
        self._read_threads: Threads | None = None
        self._local = threading.local()  # each reader thread's Reader
        self._writer: DriverConnection | None = None  # the writer thread's (SQLite)
        self._write_trace: Callable[[str, Any], None] | None = None
        self._pragmas: Callable[[Any, Any], None] | None = None
        self.readers: list[Reader] = []  # every Reader, closed by close()
        self._read_trace: Callable[[str], None] | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "Store.open() first"
        return self._engine

    async def open(self) -> None:
        """Create the engines (and on SQLite the threads); connects lazily."""
        # Creating an engine touches the file system (path resolution): start-up work, but
        # still kept off the event loop. A fixed pool: overflow connections are opened and
        # closed per use, and opening an SQLite connection (pragmas, functions) is what a
        # burst of joins would pay for.
        self._engine = await asyncio.to_thread(
            create_async_engine, self.url, pool_size=10, max_overflow=0
        )
        if self._engine.dialect.name != "sqlite":
            return
        pragmas = _sqlite_pragmas(self.busy_timeout_ms)
        event.listen(self._engine.sync_engine, "connect", pragmas)
        # Through aiosqlite every driver call is a round trip to its thread: about six per
        # commit plus the pool's rollback on return (0.8 ms of CPU per commit, as much as
        # SQLite's own work for 100 rows), a dozen per room load (4 ms). So the writer runs
        # each whole batch, and a room load all its queries, in one hop to a thread that
        # uses a plain sqlite3 connection: the writer's thread and each reader thread keep
        # one of their own (``DriverConnection``, ``Reader``); the other reads take one from
        # this pool. Each connection is used by one thread at a time, never shared.
        self.sync_engine = await asyncio.to_thread(
            create_engine,
            make_url(self.url).set(drivername="sqlite"),
            pool_size=_READ_THREADS,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )
        event.listen(self.sync_engine, "connect", pragmas)
        self._write_thread = Threads(1, "collab-store-writer")
        self._read_threads = Threads(_READ_THREADS, "collab-store-reader")
        self._pragmas = pragmas

    async def close(self) -> None:
        """Stop the threads and close every connection."""
        for threads in (self._write_thread, self._read_threads):
            if threads is not None:
                # A batch cancelled by the writer's close timeout may still be running
                # there: it ends within busy_timeout at most.
                await asyncio.to_thread(threads.shutdown)
        self._write_thread = self._read_threads = None
        readers, self.readers = self.readers, []
        for reader in readers:  # their threads have ended
            reader.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.sync_engine is not None:
            await asyncio.to_thread(self.sync_engine.dispose)
            self.sync_engine = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def read(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)``, synchronous, on a reader thread (SQLite) or through
        ``AsyncConnection.run_sync`` (asyncpg): all its queries in one hop."""
        if self.sync_engine is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn, *args)
        return await self._hop(self._read_threads, self._in_thread, fn, args)

    async def read_direct(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Like ``read``, but on SQLite ``fn`` gets the thread's ``Reader``, whose
        statements go straight to the driver (the room loads)."""
        if self.sync_engine is None:
            return await self.read(fn, *args)
        return await self._hop(self._read_threads, self._with_reader, fn, args)

    @classmethod
    async def _hop(
        cls,
        threads: Threads | None,
        run: Callable[..., _T],
        fn: Callable[..., _T],
        args: tuple[Any, ...],
    ) -> _T:
        """``run(fn, *args)`` on one of ``threads``; its result (or error) here.

        One asyncio future, settled from the thread with one ``call_soon_threadsafe``:
        ``run_in_executor`` also chains a second future to the executor's and copies its
        state across, which cost 57,000 more instructions per load (3% of a connect).
        """
        assert threads is not None, "Database.open() first"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        threads.submit(cls._settle_from_thread, loop, future, run, fn, args)
        return await future

    @staticmethod
    def _settle_from_thread(
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[_T],
        run: Callable[..., _T],
        fn: Callable[..., _T],
        args: tuple[Any, ...],
    ) -> None:
        try:
            result = run(fn, *args)
        # Not blind: every failure, even a BaseException, is raised in the awaiting
        # coroutine, as run_in_executor would; otherwise the load would hang.
        except BaseException as exc:  # noqa: BLE001
            settle = partial(_set_exception, future, exc)
        else:
            settle = partial(_set_result, future, result)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle)

    def trace_reads(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback`` with each statement the ``Reader``s run, which no engine
        event sees (``None``: stop). For tests that count statements."""
        self._read_trace = callback
        for reader in list(self.readers):
            reader.trace(callback)

    def trace_writes(self, callback: Callable[[str, Any], None] | None) -> None:
        """Call ``callback(statement, parameters)`` with each statement the writer runs,
        and ``callback("COMMIT", None)`` after each of its commits, on SQLite, where no
        engine event sees them (``None``: stop). For tests that observe commits."""
        self._write_trace = callback
        if self._writer is not None:
            self._writer.trace(callback)

    def _with_reader(self, fn: Callable[..., _T], *args: Any) -> _T:
        reader: Reader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = Reader(*self._connect())
            reader.trace(self._read_trace)
            self.readers.append(reader)  # list.append is atomic: threads may race here
        return fn(reader, *args)

    def _with_writer(self, fn: Callable[..., _T], *args: Any) -> _T:
        writer = self._writer
        if writer is None:
            writer = self._writer = DriverConnection(*self._connect())
            writer.trace(self._write_trace)
        return fn(writer, *args)

    def _connect(self) -> tuple[sqlite3.Connection, Dialect]:
        """A connection of the calling thread's own, outside the pool (which the other
        reads share), with the pragmas every connection gets."""
        engine = self.sync_engine
        assert engine is not None
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        assert self._pragmas is not None
        conn = None
        try:
            connect: Any = sqlite3.connect  # the dialect's arguments, typed loosely
            conn = connect(*cargs, **{**cparams, "check_same_thread": False})
            self._pragmas(conn, None)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
        return conn, engine.dialect

    async def write(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(connection, *args)`` for the writer only: on SQLite on the writer's
        thread, with its ``DriverConnection``, in one hop (as ``read_direct``); through
        ``AsyncConnection.run_sync`` on PostgreSQL."""
        if self.sync_engine is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(fn, *args)
        return await self._hop(self._write_thread, self._with_writer, fn, args)

    async def truncate_wal(self) -> None:
        """SQLite: give back the space the WAL grew to (on the writer's thread, between
        its commits). A failure is raised: the disk may still be full."""
        await self.write(_truncate_wal)

    def _in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(connection, *args)`` on a connection of the synchronous engine (in one
        of the store's threads)."""
        assert self.sync_engine is not None
        with self.sync_engine.connect() as conn:
            return fn(conn, *args)
