"""The store through storage outages, with a real server and real Yjs clients: a full
disk (a small tmpfs), a locked SQLite file, PostgreSQL refusing connections (the
writer's own retries, bounded batches and dropped checkpoints are in test_writer.py).

Nothing is mocked: the disk is really full, the lock is another connection's, the
PostgreSQL backends are really terminated (in a database created for the test only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from pycrdt import Text
from sqlalchemy import select

from collab.config import Config
from collab.history.replay import replay
from collab.http.state import HUB
from collab.store import DocumentStore, Store
from collab.store.models import UpdateRow
from tests.conftest import ROOT, TIMEOUT_FACTOR, Editor, Server, editor, eventually, start_server
from tests.services import PG_ADMIN, postgres_database, postgres_process

DB_TIMEOUT = 1.0
CHUNK = 32 * 1024  # characters typed per edit on the full disk


def _missing(what: str) -> None:
    if os.environ.get("COLLAB_REQUIRE_SERVICES") == "1":
        pytest.fail(f"COLLAB_REQUIRE_SERVICES=1 but {what}")
    pytest.skip(what)


@contextlib.asynccontextmanager
async def small_disk(path: Path, size: str = "8m") -> AsyncIterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (needs root), unmounted afterwards."""
    if os.geteuid() != 0:
        _missing("mounting a tmpfs needs root")
    await asyncio.to_thread(path.mkdir)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    done = await asyncio.to_thread(subprocess.run, mount, capture_output=True, text=True)
    if done.returncode != 0:
        _missing(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(path)], check=True)


def _config(db: str, **changes: Any) -> Config:
    return Config(
        db=db,
        commit_interval=0.01,
        room_grace=30.0,
        heartbeat=30.0,
        db_timeout=DB_TIMEOUT,
        revocation_poll=0,
        **changes,
    )


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    """GET ``url``: its status and how long the answer took."""
    started = time.monotonic()
    async with session.get(url) as answer:
        await answer.read()
        return answer.status, time.monotonic() - started


async def _stored(store: Store, name: str) -> tuple[str, list[int]]:
    """The text the database holds for ``name`` and the seqs of its stored updates."""
    loaded = await store.load(name)
    doc = await asyncio.to_thread(replay, loaded.checkpoint, loaded.updates)
    async with store.connect() as conn:
        seqs = (
            await conn.execute(
                select(UpdateRow.seq)
                .where(UpdateRow.doc_id == loaded.doc_id)
                .order_by(UpdateRow.seq)
            )
        ).scalars()
        return str(doc.get(ROOT, type=Text)), list(seqs)


async def _type(writer: Editor, reader: Editor, text: str) -> None:
    """Append ``text`` in ``writer`` and wait until ``reader`` has it (relayed)."""
    writer.text += text
    await eventually(lambda: str(reader) == str(writer), what="the edit relayed")


def _hold_write_lock(
    db: Path, locked: threading.Event, release: threading.Event, seconds: float
) -> None:
    """Hold SQLite's write lock on ``db`` from another connection (set ``locked`` once held)
    until ``release`` is set or ``seconds`` have passed."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def _outage_checks(server: Server, session: aiohttp.ClientSession, room: str) -> bool:
    """While the store cannot commit: readiness, reads and creations fail fast, and a join
    to a new room is answered fast. Returns whether that join was served (the database
    still answers reads, so the room opens from memory and its document is created when
    commits resume) rather than refused with 1013 (it does not)."""
    store = server.app[HUB].store
    bound = (DB_TIMEOUT + 1.5) * TIMEOUT_FACTOR
    status, took = await _get(session, f"{server.http}/readyz")
    assert (status, took < bound) == (503, True), (status, took)
    # A read of the open room commits its queue first: that cannot happen now.
    status, took = await _get(session, f"{server.http}/api/docs/{room}/content")
    assert (status, took < bound) == (503, True), (status, took)
    status, took = await _get(session, f"{server.http}/api/docs")
    assert status in (200, 503) and took < bound, (status, took)
    # A join to a new room never waits for the writer to create its document: it needs
    # one read, which either answers (served) or fails (1013), in time.
    started = time.monotonic()
    async with session.ws_connect(server.url("brand-new"), autoclose=False) as ws:
        msg = await asyncio.wait_for(ws.receive(), bound)
        served = msg.type is aiohttp.WSMsgType.BINARY
        if not served:
            assert msg.type is aiohttp.WSMsgType.CLOSE, msg
            assert ws.close_code == 1013
    assert time.monotonic() - started < bound
    assert store.stalled and store.stalled_since is not None
    async with session.get(f"{server.http}/metrics") as answer:
        assert "collab_store_stalled 1.0" in await answer.text()
    return served


async def _created_after_outage(server: Server, served: bool) -> None:
    """The new room a join opened during the outage has its document once commits are
    back."""
    if served:
        found = await DocumentStore(server.app[HUB].store).find("brand-new")
        assert found is not None and found.deleted_ms is None


async def test_full_disk_recovers_when_space_comes_back(tmp_path: Path) -> None:
    """On a full disk the store stalls (readiness and reads answer 503 in time, queued
    checkpoints are dropped), and once space is freed every accepted update is committed,
    readiness is back and new edits are stored, without a restart."""
    async with small_disk(tmp_path / "disk") as disk:
        config = _config(str(disk / "collab.db"), checkpoint_bytes=64 * 1024)
        async with start_server(config) as server, aiohttp.ClientSession() as session:
            store = server.app[HUB].store
            url = server.url("doc")
            async with editor(session, url) as alice, editor(session, url) as bob:
                await _type(alice, bob, "start ")
                await store.flush()
                stats = await asyncio.to_thread(os.statvfs, disk)
                filler = disk / "filler"
                room = stats.f_bavail * stats.f_frsize - 768 * 1024
                await asyncio.to_thread(filler.write_bytes, b"\0" * room)
                for n in range(200):
                    if store.stalled and store.write_errors >= 3:
                        break
                    await _type(alice, bob, chr(ord("a") + n % 26) * CHUNK)
                else:
                    raise AssertionError("the disk never filled up")
                await _type(bob, alice, "typed while full")  # relayed from memory
                assert store.backlog_bytes > 0
                served = await _outage_checks(server, session, "doc")
                assert store.checkpoints_dropped > 0

                await asyncio.to_thread(filler.unlink)
                freed = time.monotonic()
                await eventually(
                    lambda: not store.stalled and store.backlog_bytes == 0,
                    timeout=20,
                    what="the store to catch up",
                )
                recovered = time.monotonic() - freed
                status, _ = await _get(session, f"{server.http}/readyz")
                assert status == 200
                await _created_after_outage(server, served)
                text, seqs = await _stored(store, "doc")
                assert text == str(alice)
                assert seqs == list(range(1, len(seqs) + 1))  # no gaps
                await _type(alice, bob, " and after")
                await store.flush()
                assert (await _stored(store, "doc"))[0] == str(alice)
                print(f"recovered {recovered:.2f}s after space came back")


async def test_locked_sqlite_file_serves_from_memory_and_catches_up(tmp_path: Path) -> None:
    """While another connection holds the SQLite write lock for 10 s, editors keep
    syncing, reads answer within the timeout (or 503), and after the lock is released
    everything is committed."""
    db = tmp_path / "collab.db"
    async with start_server(_config(str(db))) as server, aiohttp.ClientSession() as session:
        store = server.app[HUB].store
        url = server.url("doc")
        async with editor(session, url) as alice, editor(session, url) as bob:
            await _type(alice, bob, "before ")
            await store.flush()
            locked = threading.Event()
            # The lock is held for 10 s, whatever happens.
            holder = asyncio.create_task(
                asyncio.to_thread(_hold_write_lock, db, locked, threading.Event(), 10)
            )
            try:
                assert await asyncio.to_thread(locked.wait, 10)
                for n in range(40):
                    await _type(alice if n % 2 else bob, bob if n % 2 else alice, f"{n} ")
                await eventually(lambda: store.stalled, what="the store to stall")
                served = await _outage_checks(server, session, "doc")
                answer = await session.post(f"{server.http}/api/docs", json={"name": "fresh"})
                assert answer.status == 503, await answer.text()
                for n in range(40, 60):
                    await _type(alice if n % 2 else bob, bob if n % 2 else alice, f"{n} ")
                assert not holder.done()  # all of it happened while the lock was held
            finally:
                await holder
            await eventually(
                lambda: not store.stalled and store.backlog_bytes == 0,
                timeout=15,
                what="the store to catch up",
            )
            assert (await _get(session, f"{server.http}/readyz"))[0] == 200
            await _created_after_outage(server, served)
            text, seqs = await _stored(store, "doc")
            assert text == str(alice) == str(bob)
            assert seqs == list(range(1, len(seqs) + 1))


async def _terminate(admin: asyncpg.Connection, database: str) -> int:
    killed = await admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return int(killed)


async def test_postgresql_outage_loses_nothing(tmp_path: Path) -> None:
    """When every PostgreSQL backend of the database is terminated and connections are
    refused for a while, editing goes on from memory and the store catches up by itself,
    losing nothing acknowledged."""
    async with postgres_database() as url, aiohttp.ClientSession() as session:
        database = url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            async with start_server(_config(url)) as server:
                store = server.app[HUB].store
                room = server.url("doc")
                async with editor(session, room) as alice, editor(session, room) as bob:
                    await _type(alice, bob, "before ")
                    await store.flush()
                    await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                    try:
                        assert await _terminate(admin, database) > 0
                        for n in range(30):
                            await _type(alice, bob, f"{n} ")
                        await eventually(lambda: store.stalled, what="the store to stall")
                        await _outage_checks(server, session, "doc")
                    finally:
                        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
                    back = time.monotonic()
                    await eventually(
                        lambda: not store.stalled and store.backlog_bytes == 0,
                        timeout=15,
                        what="the store to catch up",
                    )
                    recovered = time.monotonic() - back
                    # Killed again mid-stream: the next commits reconnect by themselves.
                    for n in range(20):
                        await _type(bob, alice, f"b{n} ")
                        if n == 5:
                            await _terminate(admin, database)
                    await store.flush()
                    assert (await _get(session, f"{server.http}/readyz"))[0] == 200
                    text, seqs = await _stored(store, "doc")
                    assert text == str(alice)
                    assert seqs == list(range(1, len(seqs) + 1))
                    print(f"recovered {recovered:.2f}s after connections were allowed")
        finally:
            await admin.close()


async def test_postgresql_restarted_while_clients_edit_loses_nothing() -> None:
    """PostgreSQL really restarted (pg_ctl restart -m fast, on a cluster of the test's own)
    while two editors type: editing goes on from memory, the store reconnects by itself,
    and every edit relayed is in the database afterwards, in one unbroken run of seqs."""
    async with postgres_process() as postgres, aiohttp.ClientSession() as session:
        async with start_server(_config(postgres.url)) as server:
            store = server.app[HUB].store
            room = server.url("doc")
            async with editor(session, room) as alice, editor(session, room) as bob:
                await _type(alice, bob, "before ")
                await store.flush()
                restart = asyncio.create_task(postgres.restart())
                during = 0
                while not restart.done() and during < 500:
                    await _type(alice, bob, f"{during} ")
                    during += 1
                await restart
                for n in range(20):
                    await _type(bob, alice, f"after{n} ")
                await eventually(
                    lambda: not store.stalled and store.backlog_bytes == 0,
                    timeout=15,
                    what="the store to catch up",
                )
                assert during > 0  # some edits were made while PostgreSQL restarted
                text, seqs = await _stored(store, "doc")
                assert text == str(alice) == str(bob)
                assert seqs == list(range(1, len(seqs) + 1))


async def test_writers_are_turned_away_while_the_store_cannot_commit(tmp_path: Path) -> None:
    """While the store cannot commit, a writer is closed with 1013 once the uncommitted
    backlog passes ``store_stalled_backlog``; everything relayed before that is stored once
    the store is back, and the writer's reconnect re-sends the rest."""
    db = tmp_path / "collab.db"
    config = _config(str(db), store_stalled_backlog=16 * 1024)
    async with start_server(config) as server, aiohttp.ClientSession() as session:
        store = server.app[HUB].store
        url = server.url("doc")
        async with editor(session, url) as watcher:
            async with editor(session, url) as alice:
                await _type(alice, watcher, "before ")
                await store.flush()
                release = threading.Event()
                locked = threading.Event()
                holder = asyncio.create_task(
                    asyncio.to_thread(_hold_write_lock, db, locked, release, 20)
                )
                try:
                    assert await asyncio.to_thread(locked.wait, 10)
                    for n in range(200):
                        if alice.ws.closed:
                            break
                        alice.text += chr(ord("a") + n % 26) * 1024
                        await eventually(
                            lambda: alice.ws.closed or str(watcher) == str(alice),
                            what="relayed or refused",
                        )
                    else:
                        raise AssertionError("the writer was never turned away")
                    assert alice.ws.close_code == 1013
                    assert store.stalled
                    relayed = str(watcher)
                    # The bound applies from the moment the store is known to be stalled (a
                    # commit failed, or took db_timeout): what came before that is queued.
                    assert len(relayed) - len("before ") >= 16 * 1024
                finally:
                    release.set()
                    await holder
            await eventually(
                lambda: not store.stalled and store.backlog_bytes == 0,
                timeout=15,
                what="the store to catch up",
            )
            text, seqs = await _stored(store, "doc")
            assert text == relayed
            assert seqs == list(range(1, len(seqs) + 1))
