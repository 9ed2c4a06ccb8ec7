"""The store's connections: URL checks, SQLite's pragmas on both engines, a synchronous
read in one hop on each engine, and which failures become ``StoreUnavailable``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from collab.config import database_url
from collab.errors import StoreUnavailable
from collab.store import Store
from collab.store.driver import DriverConnection, Reader
from collab.store.engine import Database, check_url, guard
from collab.store.models import Document
from tests.services import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same store on a real SQLite file and on a fresh PostgreSQL database."""
    async with open_store(request.param, tmp_path) as store:
        yield store


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite:///db.sqlite", "postgresql+asyncpg://127.0.0.1/collab"],
)
def test_file_and_server_urls_are_accepted(url: str) -> None:
    """A file database and a database server are URLs the store can share."""
    check_url(url)


def _pragmas(conn: Connection | DriverConnection) -> tuple[str, int, int, int]:
    def one(name: str) -> object:
        return conn.exec_driver_sql(f"PRAGMA {name}").all()[0][0]

    journal, sync, busy, keys = (
        one(n) for n in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
    )
    return str(journal), int(str(sync)), int(str(busy)), int(str(keys))


async def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    """Every SQLite connection (the async engine's, the threads' engine's, and those the
    writer's thread and each reader thread keep of their own) is in WAL mode with
    synchronous=NORMAL, the busy timeout given and foreign keys on."""
    async with open_store("sqlite", tmp_path, busy_timeout_ms=1234) as store:
        expected = ("wal", 1, 1234, 1)
        async with store.connect() as conn:
            found = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            ]
            assert tuple(found) == expected
    # The writer's thread and the readers' keep sqlite3 connections of their own.
    db = Database(database_url(str(tmp_path / "other.db")), busy_timeout_ms=1234)
    await db.open()
    try:
        assert await db.write(_pragmas) == expected
        assert await db.read(_pragmas) == expected
        assert await db.read_direct(_reader_pragmas) == expected
    finally:
        await db.close()


def _reader_pragmas(reader: Reader) -> tuple[str, int, int, int]:
    journal, sync, busy, keys = (
        reader.rows(f"PRAGMA {n}", ())[0][0]
        for n in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
    )
    return str(journal), int(sync), int(busy), int(keys)


def _document_names(conn: Connection) -> list[str]:
    return list(conn.execute(text("SELECT name FROM documents ORDER BY name")).scalars())


async def test_read_runs_a_synchronous_function_on_each_engine(store: Store) -> None:
    """``Database.read`` runs a whole synchronous read in one hop: in a reader thread on
    SQLite, through ``run_sync`` on PostgreSQL."""
    for name in ("b", "a"):
        await store.load(name)
    database = Database(store.url, busy_timeout_ms=5000)
    await database.open()
    try:
        assert (database.sync_engine is not None) == store.url.startswith("sqlite")
        assert await database.read(_document_names) == ["a", "b"]
    finally:
        await database.close()


async def test_a_timeout_becomes_store_unavailable() -> None:
    """A guarded block that outlasts its bound raises ``StoreUnavailable``, naming it."""
    with pytest.raises(StoreUnavailable, match="within 0.01 s"):
        async with guard(0.01):
            await asyncio.sleep(1)


async def test_an_unreachable_server_becomes_store_unavailable() -> None:
    """A database server nobody listens for is "unavailable", not a crash."""
    store = Store("postgresql+asyncpg://postgres@127.0.0.1:9/none", db_timeout=5.0)
    await store.open(upgrade=False)
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            async with store.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await store.close()


async def test_an_integrity_error_passes_through(store: Store) -> None:
    """A conflict the caller handles (a name taken) is not turned into an outage."""
    await store.load("taken")
    with pytest.raises(IntegrityError):
        async with store.begin() as conn:
            await conn.execute(insert(Document).values(name="taken", created_ms=0))


async def test_engine_before_open_says_so(tmp_path: Path) -> None:
    """Using the engine of a store that was never opened fails with what to do."""
    with pytest.raises(AssertionError, match=r"open\(\) first"):
        Store(database_url(str(tmp_path / "s.db"))).engine


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite://"])
async def test_in_memory_sqlite_is_refused(url: str) -> None:
    """Every connection of the store would open its own empty in-memory database."""
    with pytest.raises(ValueError, match="in-memory"):
        await Store(url).open()
