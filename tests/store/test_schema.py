"""The schema glue: upgrading a new SQLite file and a new PostgreSQL database to the
newest revision, and reading the revision back without Alembic, the same as Alembic (and
from an SQLite file on a plain ``sqlite3`` connection)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from collab.config import database_url
from collab.store import Store, upgrade_schema
from collab.store.schema import current_revision, file_revision, head_revision
from tests.services import postgres_database


def test_head_revision_is_the_newest_script() -> None:
    """The head is a revision of the shipped migration scripts."""
    head = head_revision()
    assert head is not None
    versions = Path(__file__).parents[2] / "migrations" / "versions"
    assert any(f'revision: str = "{head}"' in path.read_text() for path in versions.glob("*.py"))


def test_head_revision_is_alembics_head() -> None:
    """Read from the scripts' assignments, the head is the one Alembic's script directory
    computes from the same scripts."""
    from alembic.script import ScriptDirectory

    from collab.store.schema import _alembic_config

    assert head_revision() == ScriptDirectory.from_config(_alembic_config()).get_current_head()


def test_several_heads_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two scripts revising the same revision (a missing merge) make no head at all."""
    from collab.store import schema

    versions = tmp_path / "versions"
    versions.mkdir()
    scripts = [("a", "0001", None), ("b", "0002", "0001"), ("c", "0003", "0001")]
    for name, revision, down in scripts:
        text = f"revision = {revision!r}\ndown_revision = {down!r}\n"
        (versions / f"{name}.py").write_text(text)
    monkeypatch.setattr(schema, "_MIGRATIONS", tmp_path)
    with pytest.raises(RuntimeError, match="several heads"):
        head_revision()


def _both_revisions(url: str) -> tuple[str | None, str | None]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    engine = create_engine(sync_url) if "sqlite" in url else None
    if engine is None:
        return _pg_revisions(url)
    try:
        with engine.connect() as conn:
            return current_revision(conn), MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _pg_revisions(url: str) -> tuple[str | None, str | None]:
    import asyncio as aio

    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> tuple[str | None, str | None]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return (
                    await conn.run_sync(current_revision),
                    await conn.run_sync(
                        lambda c: MigrationContext.configure(c).get_current_revision()
                    ),
                )
        finally:
            await engine.dispose()

    return aio.run(read())


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_the_revision_read_is_alembics(tmp_path: Path, engine: str) -> None:
    """The plain query of ``alembic_version`` reads what Alembic's migration context
    reads, before the schema exists and after the upgrade."""
    async with contextlib.AsyncExitStack() as stack:
        if engine == "sqlite":
            url = database_url(str(tmp_path / "read.db"))
        else:
            url = await stack.enter_async_context(postgres_database())
        assert await asyncio.to_thread(_both_revisions, url) == (None, None)
        await asyncio.to_thread(upgrade_schema, url)
        head = await asyncio.to_thread(head_revision)
        assert await asyncio.to_thread(_both_revisions, url) == (head, head)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_upgrade_brings_a_new_database_to_the_head(tmp_path: Path, engine: str) -> None:
    """A new database has no revision; after ``upgrade_schema`` (twice: the second finds
    nothing to do) it is at the head, and ``Store.schema_status`` says so."""
    async with contextlib.AsyncExitStack() as stack:
        if engine == "sqlite":
            url = database_url(str(tmp_path / "new.db"))
        else:
            url = await stack.enter_async_context(postgres_database())
        head = await asyncio.to_thread(head_revision)
        store = Store(url)
        await store.open(upgrade=False)
        stack.push_async_callback(store.close)
        assert await store.schema_status() == (None, head)
        for _ in range(2):
            await asyncio.to_thread(upgrade_schema, url)
        assert await store.schema_status() == (head, head)


def test_file_revision_reads_an_sqlite_file_without_changing_it(tmp_path: Path) -> None:
    """``file_revision`` (``collab serve``'s check before it starts) says ``None`` for a
    missing file, which it does not create, and for a database without a schema; the head
    once upgraded; and refuses a file that is not a database."""
    path = tmp_path / "c.db"
    assert file_revision(str(path)) is None
    assert not path.exists()
    sqlite3.connect(path).close()  # an empty database: no alembic_version table
    assert file_revision(str(path)) is None
    upgrade_schema(database_url(str(path)))
    assert file_revision(str(path)) == head_revision()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    other = tmp_path / "notes.txt"
    other.write_text("not a database " * 100)
    with pytest.raises(sqlite3.DatabaseError):
        file_revision(str(other))


def test_file_revision_refuses_a_file_in_no_directory(tmp_path: Path) -> None:
    """A path whose directory does not exist is an error, not a new database: the server's
    own start reports it, and no upgrade is tried."""
    with pytest.raises(sqlite3.OperationalError):
        file_revision(str(tmp_path / "missing" / "c.db"))
