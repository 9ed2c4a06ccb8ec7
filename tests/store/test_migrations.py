"""Schema upgrades started at the same moment on one empty database: serialized by the
migration lock (PostgreSQL advisory lock, SQLite ``flock``), so every node comes up."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
from pycrdt import Doc, Text

from tests.conftest import TIMEOUT_FACTOR
from tests.process import ServerProcess, start
from tests.services import postgres_database

NODES = 3


async def _stop(servers: list[ServerProcess]) -> None:
    for server in servers:
        if server.process.returncode is None:
            server.signal(signal.SIGTERM)
    for server in servers:
        await server.wait(20)


async def test_three_nodes_start_at_once_on_an_empty_postgresql(tmp_path: Path) -> None:
    """Three servers started together on an empty PostgreSQL database all come up ready."""
    async with postgres_database() as url:
        results = await asyncio.gather(
            *(start(url, tmp_path / f"node-{i}.log") for i in range(NODES)),
            return_exceptions=True,
        )
        servers = [r for r in results if isinstance(r, ServerProcess)]
        try:
            failures = [r for r in results if isinstance(r, BaseException)]
            logs = "\n".join(
                (tmp_path / f"node-{i}.log").read_text(errors="replace") for i in range(NODES)
            )
            assert not failures, f"{failures}\n{logs}"
            async with aiohttp.ClientSession() as session:
                for server in servers:
                    async with session.get(f"http://127.0.0.1:{server.port}/readyz") as answer:
                        assert answer.status == 200, await answer.text()
        finally:
            await _stop(servers)


async def test_three_upgrades_at_once_of_a_new_sqlite_file(tmp_path: Path) -> None:
    """Three ``collab db upgrade`` runs started together on a new SQLite file all succeed
    and leave one schema at the newest revision."""
    db = tmp_path / "new.db"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collab",
            "db",
            "upgrade",
            "--db",
            str(db),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(NODES)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in processes)), 60 * TIMEOUT_FACTOR
    )
    for process, (output, _) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output.decode()

    def versions() -> list[str]:
        with sqlite3.connect(db) as conn:
            return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]

    assert len(await asyncio.to_thread(versions)) == 1
    assert (tmp_path / "new.db.lock").exists()


def _upgrade(url: str, revision: str) -> None:
    from alembic import command

    from collab.store.schema import _alembic_config

    command.upgrade(_alembic_config(url), revision)


async def test_documents_older_than_lineages_get_one(tmp_path: Path) -> None:
    """Migration 0005 gives every existing document a lineage of its own (so a dump made
    afterwards names each history), on SQLite and on PostgreSQL."""
    from collab.config import database_url

    async with postgres_database() as pg:
        urls = [database_url(str(tmp_path / "old.db")), pg]
        for url in urls:
            await asyncio.to_thread(_upgrade, url, "0004")
            await asyncio.to_thread(_insert_old_documents, url)
            await asyncio.to_thread(_upgrade, url, "head")
            lineages = await asyncio.to_thread(_lineages, url)
            assert len(lineages) == 2 and all(len(x) == 16 for x in lineages), lineages
            assert len(set(lineages)) == 2


async def test_updates_older_than_counts_are_measured_by_the_timeline(tmp_path: Path) -> None:
    """Migration 0007 adds ``inserted`` and ``deleted`` as NULL to the rows already stored,
    whose timeline is then measured from their bytes; new rows are stored with their
    counts. On SQLite and on PostgreSQL."""
    from collab.config import database_url
    from collab.history.service import History
    from collab.store import Store
    from collab.sync.update import measure

    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    doc.get("content", type=Text).insert(0, "héllo 😀")
    del doc.get("content", type=Text)[0:1]
    async with postgres_database() as pg:
        for url in (database_url(str(tmp_path / "old.db")), pg):
            await asyncio.to_thread(_upgrade, url, "0006")
            await asyncio.to_thread(
                _run_sql, url, "INSERT INTO documents (name, created_ms) VALUES ('a', 1)"
            )
            await asyncio.to_thread(
                _run_sql,
                url,
                "INSERT INTO updates (doc_id, seq, created_ms, data, author) "
                f"SELECT id, 1, 2, {_blob(url, updates[0])}, 'ann' FROM documents",
            )
            await asyncio.to_thread(_upgrade, url, "head")
            counts = "SELECT inserted, deleted FROM updates ORDER BY seq"
            assert await asyncio.to_thread(_run_sql, url, counts) == [(None, None)]
            store = Store(url, commit_interval=0.01)
            await store.open()
            try:
                history = History(store)
                head = await history.head("a")
                stats = measure(updates[1])
                store.append(
                    head.id,
                    2,
                    updates[1],
                    connection_id=None,
                    author="ann",
                    created_ms=3,
                    inserted=stats.inserted,
                    deleted=stats.deleted,
                )
                await store.flush()
                assert await asyncio.to_thread(_run_sql, url, counts) == [(None, None), (0, 1)]
                page = await history.timeline(
                    await history.head("a"), before=None, limit=5, gap_ms=60_000, raw=False
                )
                (entry,) = page["entries"]
                assert (entry["updates"], entry["inserted"], entry["deleted"]) == (2, 7, 1)
            finally:
                await store.close()


def _blob(url: str, data: bytes) -> str:
    """``data`` as an SQL literal of the dialect of ``url``."""
    return f"X'{data.hex()}'" if url.startswith("sqlite") else f"decode('{data.hex()}', 'hex')"


def _insert_old_documents(url: str) -> None:
    _run_sql(url, "INSERT INTO documents (name, created_ms) VALUES ('a', 1), ('b', 2)")


def _lineages(url: str) -> list[str]:
    return [row[0] for row in _run_sql(url, "SELECT lineage FROM documents ORDER BY name")]


def _run_sql(url: str, sql: str) -> list[tuple[Any, ...]]:
    """One statement on ``url`` through a throwaway async engine, from a worker thread."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> list[tuple[Any, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return [tuple(r) for r in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())
