"""The store's own sqlite3 connections and threads, past SQLAlchemy's pool.

On SQLite the store runs its hot statements straight through the driver: each reader
thread keeps a ``Reader`` (room loads), the writer's thread a ``DriverConnection`` (group
commits), and both kinds of thread take their calls from a ``Threads`` queue. Why: per
statement and per call, SQLAlchemy's pool, execution contexts and result objects, and
``ThreadPoolExecutor``'s futures and locks cost more than SQLite's own work
(``docs/performance.md``). ``engine.Database`` opens, hands out and closes them; this
module runs no query of its own.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

__all__ = ["DriverConnection", "Reader", "Threads"]

_T = TypeVar("_T")

log = logging.getLogger(__name__)


def _fetch(conn: sqlite3.Connection, sql: str, parameters: Any) -> list[Any]:
    return conn.execute(sql, parameters).fetchall()


def _guarded(sql: str, parameters: Any, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)``, a driver error raised as SQLAlchemy's ``DBAPIError`` subclass for it
    (``IntegrityError``, ``OperationalError``...), as through SQLAlchemy."""
    try:
        return fn(*args)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc


class Reader:
    """A reader thread's own sqlite3 connection, for statements sent straight to the driver.

    A room load's SELECTs through a pooled SQLAlchemy ``Connection`` cost about 310,000
    instructions of the reader's thread per load (the pool's checkout and reset, an
    execution context and a result object per statement), 17 times SQLite's own work
    and an eighth of a whole connect to a new room. This runs them on the sqlite3
    connection the thread keeps for its life. As through SQLAlchemy's pysqlite driver,
    a SELECT opens no transaction: each sees what is committed when it runs. A driver
    error is raised as SQLAlchemy's ``DBAPIError``, so ``guard`` maps it as before.
    """

    __slots__ = ("_conn", "dialect")

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect = dialect

    def rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return _guarded(sql, params, _fetch, self._conn, sql, params)

    def trace(self, callback: Callable[[str], None] | None) -> None:
        self._conn.set_trace_callback(callback)

    def close(self) -> None:
        self._conn.close()


class _Rows:
    """What ``DriverConnection`` answers a statement with: its rows, already fetched."""

    __slots__ = ("_rows",)

    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def close(self) -> None:
        pass


class DriverConnection:
    """The writer thread's own sqlite3 connection, with the part of SQLAlchemy's
    ``Connection`` that ``BatchWriter`` uses (``dialect``, ``begin``, ``execute``,
    ``exec_driver_sql``, ``rollback``).

    A group commit through a pooled SQLAlchemy ``Connection`` paid the pool's checkout
    and reset, and an execution context and a cursor result per statement, on the
    writer's thread with the GIL held: about a third of the writer's CPU in a fan-out,
    and most of what a new room's document row cost it (docs/performance.md). Here the
    statements go to the driver as they are; the rare ones built with SQLAlchemy (a
    checkpoint's, a renumbering's) are compiled for the dialect when run. Transactions
    are the driver's, as through SQLAlchemy's pysqlite dialect: the first write begins
    one, ``begin()`` commits it at the end of its block or rolls it back on an error. A
    driver error is raised as SQLAlchemy's ``DBAPIError`` (``IntegrityError``,
    ``OperationalError``...), so the writer and ``guard`` handle it as before.
    """

    __slots__ = ("_conn", "_trace", "dialect")

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        self._conn = conn
        self.dialect = dialect
        self._trace: Callable[[str, Any], None] | None = None

    def trace(self, callback: Callable[[str, Any], None] | None) -> None:
        """Call ``callback(statement, parameters)`` before each statement, and
        ``callback("COMMIT", None)`` after each commit (tests observe the writer)."""
        self._trace = callback

    @contextlib.contextmanager
    def begin(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        _guarded("COMMIT", None, self._conn.commit)
        if self._trace is not None:
            self._trace("COMMIT", None)

    def rollback(self) -> None:
        _guarded("ROLLBACK", None, self._conn.rollback)

    def exec_driver_sql(self, sql: str, parameters: Any = ()) -> _Rows:
        """Run ``sql`` with ``parameters``: a tuple for one execution, a list of tuples
        for the driver's executemany."""
        if self._trace is not None:
            self._trace(sql, parameters)
        if type(parameters) is list:
            _guarded(sql, parameters, self._conn.executemany, sql, parameters)
            return _Rows([])
        return _Rows(_guarded(sql, parameters, _fetch, self._conn, sql, parameters))

    def execute(self, statement: Any, parameters: list[dict[str, Any]] | None = None) -> _Rows:
        """Compile a SQLAlchemy ``statement`` for the dialect and run it: once, or once
        per dict of ``parameters`` (an insert's rows)."""
        if not parameters:
            # Expanding parameters (IN lists) rendered as one "?" per value.
            compiled = statement.compile(
                dialect=self.dialect, compile_kwargs={"render_postcompile": True}
            )
            values = compiled.construct_params()
            return self.exec_driver_sql(
                compiled.string, tuple(values[k] for k in compiled.positiontup)
            )
        compiled = statement.compile(dialect=self.dialect, column_keys=list(parameters[0]))
        rows = []
        for row in parameters:
            values = compiled.construct_params(row)
            rows.append(tuple(values[k] for k in compiled.positiontup))
        return self.exec_driver_sql(compiled.string, rows)

    def close(self) -> None:
        self._conn.close()


class Threads:
    """A fixed set of threads that run the calls handed to ``submit``, oldest first.

    What the store needs of a thread pool and no more: a call goes on a ``SimpleQueue``
    (C code, the GIL released while a thread waits) and the first idle thread runs it.
    ``ThreadPoolExecutor`` also made a ``concurrent.futures.Future`` and a work item per
    call, took its locks and counted its idle threads, all in Python: more instructions
    than SQLite's own work for a room load of a new room. The calls here settle their
    asyncio future themselves (``Database._settle_from_thread``), so nothing is returned.
    Daemon threads: a process that exits without ``shutdown`` is not held up by them.
    """

    __slots__ = ("_queue", "_threads")

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._queue.put((fn, args))

    def shutdown(self) -> None:
        """Let the calls already submitted run, then stop every thread (blocking)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        get = self._queue.get
        while (item := get()) is not None:
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # the thread must outlive any call
                log.exception("a store thread's call failed")
