"""The single writer and its group commit, on a real SQLite file and a real PostgreSQL
database: batching, numbering at commit time, two writers racing, bounded transactions,
and what a failed commit keeps, drops and does not write twice."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from collab.config import database_url
from collab.store import Store, StoreClosed
from tests.conftest import TIMEOUT_FACTOR, eventually
from tests.services import open_store, postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same store on a real SQLite file and on a fresh PostgreSQL database."""
    async with open_store(request.param, tmp_path, busy_timeout_ms=20) as store:
        yield store


async def test_flush_with_nothing_queued_returns_at_once(store: Store) -> None:
    """A flush with every row settled does not wait for the writer."""
    await asyncio.wait_for(store.flush(), 0.5 * TIMEOUT_FACTOR)
    assert store.commits == 0


async def test_append_after_close_is_refused(tmp_path: Path) -> None:
    """A row queued after ``close`` raises ``StoreClosed`` instead of being lost."""
    async with open_store("sqlite", tmp_path) as store:
        doc_id = (await store.load("doc")).doc_id
    with pytest.raises(StoreClosed):
        store.append(doc_id, 1, b"late", connection_id=None, author=None)
    with pytest.raises(StoreClosed):
        store.checkpoint(doc_id, 1, b"state")


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    """``close`` commits the rows still inside the group window."""
    async with open_store("sqlite", tmp_path, commit_interval=30.0) as store:
        doc_id = (await store.load("doc")).doc_id
        store.append(doc_id, 1, b"a", connection_id=None, author=None)
        assert store.backlog_bytes == 1
    async with open_store("sqlite", tmp_path) as again:
        assert (await again.load("doc")).updates == [b"a"]


async def test_locked_database_is_retried_without_loss(tmp_path: Path) -> None:
    """While another process holds SQLite's write lock, commits fail, rows wait, then land."""
    store = Store(database_url(str(tmp_path / "s.db")), commit_interval=0.01, busy_timeout_ms=20)
    await store.open()
    try:
        await _locked_database_is_retried_without_loss(store, tmp_path)
    finally:
        await store.close()


async def _locked_database_is_retried_without_loss(store: Store, tmp_path: Path) -> None:
    doc_id = (await store.load("doc")).doc_id
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()

    holder = asyncio.create_task(asyncio.to_thread(hold_lock))
    await asyncio.to_thread(locked.wait, 10)
    store.append(doc_id, 1, b"a", connection_id=None, author=None)
    await eventually(lambda: store.write_errors >= 2, what="failed commits")
    assert store.backlog_bytes == 1  # kept in memory
    release.set()
    await holder
    await asyncio.wait_for(store.flush(), 10)
    assert (await store.load("doc")).updates == [b"a"]
    assert store.backlog_bytes == 0


async def test_group_commit_batches(store: Store) -> None:
    """Updates queued within one window are committed together (no commit per update)."""
    doc_id = (await store.load("doc")).doc_id
    for seq in range(1, 501):
        store.append(doc_id, seq, b"x", connection_id=None, author=None)
    await store.flush()
    assert store.commits <= 3


async def test_an_unhurried_flush_waits_for_the_group_window(tmp_path: Path) -> None:
    """``flush(hurry=False)`` (Hocuspocus's SyncStatus) returns with the commit that the
    window brings, and never forces one: with a 30 s window nothing commits until a
    hurried flush asks, and then both return."""
    async with open_store("sqlite", tmp_path, commit_interval=30.0) as store:
        doc_id = (await store.load("doc")).doc_id
        before = store.commits  # creating the document committed
        store.append(doc_id, 1, b"a", connection_id=None, author=None)
        patient = asyncio.ensure_future(store.flush(hurry=False))
        await asyncio.sleep(0.2)  # a bound on what must not happen: no commit is forced
        assert not patient.done() and store.commits == before
        await asyncio.wait_for(store.flush(), 5 * TIMEOUT_FACTOR)
        await asyncio.wait_for(patient, 1 * TIMEOUT_FACTOR)
        assert store.commits == before + 1
        assert (await store.load("doc")).updates == [b"a"]


async def test_numbers_assigned_at_commit_continue_the_log(store: Store) -> None:
    """Updates queued without a seq get the next numbers after the stored ones."""
    doc_id = (await store.load("doc")).doc_id
    store.append(doc_id, 1, b"a", connection_id=None, author=None)
    await store.flush()
    for data in (b"b", b"c"):
        store.append(doc_id, None, data, connection_id=None, author=None)
    await store.flush()
    loaded = await store.load("doc")
    assert (loaded.updates, loaded.last_seq) == ([b"a", b"b", b"c"], 3)


async def test_two_stores_racing_for_numbers_lose_nothing(store: Store) -> None:
    """Two writers (two nodes) appending to one document at once: no gaps, no duplicates."""
    other = Store(store.url, commit_interval=0.005, busy_timeout_ms=5000)
    await other.open(upgrade=False)
    try:
        doc_id = (await store.load("race")).doc_id
        for i in range(100):
            store.append(doc_id, None, b"s%d" % i, connection_id=None, author=None)
            other.append(doc_id, None, b"o%d" % i, connection_id=None, author=None)
            if i % 10 == 0:
                await asyncio.sleep(0.003)
        await asyncio.gather(store.flush(), other.flush())
    finally:
        await other.close()
    loaded = await store.load("race")
    assert loaded.last_seq == 200 and len(set(loaded.updates)) == 200


async def test_the_same_checkpoint_twice_is_kept_once(store: Store) -> None:
    """A checkpoint queued twice (two nodes, or two reasons at once) is stored once."""
    doc_id = (await store.load("doc")).doc_id
    store.append(doc_id, 1, b"a", connection_id=None, author=None)
    store.checkpoint(doc_id, 1, b"state")
    store.checkpoint(doc_id, 1, b"state")
    await asyncio.wait_for(store.flush(), 10)
    store.checkpoint(doc_id, 1, b"state")
    await asyncio.wait_for(store.flush(), 10)
    assert store.write_errors == 0
    loaded = await store.load("doc")
    assert (loaded.checkpoint, loaded.checkpoint_seq) == (b"state", 1)


def _payload_bytes(value: Any) -> list[bytes]:
    """Every bytes value in a statement's parameters, however the dialect nests them."""
    if isinstance(value, bytes | memoryview):
        return [bytes(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [b for item in value for b in _payload_bytes(item)]
    return []


@pytest.fixture(params=["sqlite", "postgresql"])
async def small_batches(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store whose writer commits at most 64 KiB or 50 rows per transaction."""
    async with open_store(
        request.param, tmp_path, batch_bytes=64 * 1024, batch_rows=50, commit_interval=0.2
    ) as store:
        yield store


async def test_backlog_commits_in_bounded_batches_oldest_first(small_batches: Store) -> None:
    """A large queued backlog is committed in transactions of at most the bound, oldest
    rows first, and every row lands."""
    store = small_batches
    doc_id = (await store.load("doc")).doc_id
    transactions: list[list[bytes]] = []
    current: list[bytes] = []

    def executed(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            current.extend(_payload_bytes(params))

    def committed(_conn: Any) -> None:
        if current:
            transactions.append(list(current))
            current.clear()

    def traced(statement: str, params: Any) -> None:
        if statement == "COMMIT":
            committed(None)
        else:
            executed(None, None, statement, params)

    # The writer commits on SQLite's writer thread, straight to the driver (traced), and
    # on PostgreSQL on the async engine's connections (engine events).
    engine = store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", executed)
    event.listen(engine, "commit", committed)
    store.trace_writes(traced)
    try:
        for seq in range(1, 401):
            data = b"u%05d" % seq + b"." * 1500
            store.append(doc_id, seq, data, connection_id=None, author=None)
            if seq % 100 == 0:
                store.checkpoint(doc_id, seq, b"c%05d" % seq + b"." * 20_000)
        assert store.backlog_bytes == 400 * 1506 + 4 * 20_006
        await store.flush()
    finally:
        store.trace_writes(None)
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "commit", committed)
    assert store.backlog_bytes == 0
    sizes = [sum(map(len, rows)) for rows in transactions]
    assert max(sizes) <= 64 * 1024, sizes
    assert max(map(len, transactions)) <= 50
    assert len(transactions) >= (400 * 1506 + 4 * 20_006) // (64 * 1024)
    expected = []
    for seq in range(1, 401):
        expected.append(b"u%05d" % seq)
        if seq % 100 == 0:
            expected.append(b"c%05d" % seq)
    # Within a transaction the updates go before the checkpoints; across transactions
    # each one carries the next oldest rows.
    position = {key: i for i, key in enumerate(expected)}
    order = [
        k for rows in transactions for k in sorted((r[:6] for r in rows), key=position.__getitem__)
    ]
    assert order == expected
    loaded = await store.load("doc")
    assert (loaded.checkpoint_seq, loaded.last_seq) == (400, 400)
    print(f"{len(transactions)} transactions, largest {max(sizes)} bytes")


async def test_failed_commit_drops_checkpoints_keeps_updates(tmp_path: Path) -> None:
    """A failed commit drops the queued checkpoints (counted, backlog shrunk) and keeps the
    updates, which land once the database takes writes again; loads then use the newest
    stored checkpoint."""
    async with open_store("sqlite", tmp_path, busy_timeout_ms=20) as store:
        doc_id = (await store.load("doc")).doc_id
        store.append(doc_id, 1, b"u1", connection_id=None, author=None)
        store.checkpoint(doc_id, 1, b"state-1")
        await store.flush()
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(10)
            conn.execute("ROLLBACK")
            conn.close()

        holder = asyncio.create_task(asyncio.to_thread(hold_lock))
        try:
            await asyncio.to_thread(locked.wait, 5)
            store.append(doc_id, 2, b"u2", connection_id=None, author=None)
            store.checkpoint(doc_id, 2, b"state-2")
            store.append(doc_id, 3, b"u3", connection_id=None, author=None)
            await eventually(lambda: store.checkpoints_dropped == 1, what="a dropped checkpoint")
            assert store.stalled and store.backlog_bytes == 4
        finally:
            release.set()
            await holder
        await asyncio.wait_for(store.flush(), 10 * TIMEOUT_FACTOR)
        assert (store.stalled, store.stalled_since) == (False, None)
        loaded = await store.load("doc")
        assert (loaded.checkpoint, loaded.updates, loaded.last_seq) == (
            b"state-1",
            [b"u2", b"u3"],
            3,
        )


async def test_rows_a_failed_commit_stored_anyway_are_not_written_twice(tmp_path: Path) -> None:
    """After a failed commit, rows found stored already (a commit cut off at COMMIT that
    landed) are skipped instead of failing on the primary key forever."""
    async with open_store("sqlite", tmp_path, busy_timeout_ms=20) as store:
        doc_id = (await store.load("doc")).doc_id
        locked, release = threading.Event(), threading.Event()

        def land_first_two() -> None:
            # Holds the write lock while the store's commits fail, then commits rows 1 and
            # 2 itself, as if the store's own commit had landed after all.
            conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(10)
            conn.executemany(
                "INSERT INTO updates (doc_id, seq, created_ms, data) VALUES (?, ?, 0, ?)",
                [(doc_id, 1, b"u1"), (doc_id, 2, b"u2")],
            )
            conn.execute("COMMIT")
            conn.close()

        holder = asyncio.create_task(asyncio.to_thread(land_first_two))
        try:
            await asyncio.to_thread(locked.wait, 5)
            for seq in (1, 2, 3):
                store.append(doc_id, seq, b"u%d" % seq, connection_id=None, author=None)
            await eventually(lambda: store.write_errors >= 1, what="a failed commit")
        finally:
            release.set()
            await holder
        await asyncio.wait_for(store.flush(), 10 * TIMEOUT_FACTOR)
        loaded = await store.load("doc")
        assert (loaded.updates, loaded.last_seq, store.stalled) == (
            [b"u1", b"u2", b"u3"],
            3,
            False,
        )


async def test_a_provisional_document_is_created_with_its_first_rows(store: Store) -> None:
    """``load(provisional=True)`` of a new name commits nothing and gives the same
    provisional id to every load until the commit; rows queued under it are stored under
    the real id, in one transaction with the document, which ``when_created`` reports."""
    first = await store.load("new", provisional=True)
    again = await store.load("new", provisional=True)
    assert first.doc_id == again.doc_id < 0 and store.commits == 0
    told: list[int] = []
    store.when_created(first.doc_id, told.append)
    store.append(first.doc_id, 1, b"a", connection_id=None, author=None)
    store.checkpoint(first.doc_id, 1, b"state")
    await store.flush()
    assert store.commits == 1
    loaded = await store.load("new")
    assert (told, loaded.updates, loaded.checkpoint) == ([loaded.doc_id], [], b"state")
    assert loaded.last_seq == 1 and loaded.doc_id > 0
    with pytest.raises(ValueError):  # forgotten once its rows are settled
        store.when_created(first.doc_id, told.append)


async def test_an_unknown_provisional_id_is_refused_before_it_is_queued(store: Store) -> None:
    """A negative id the store never gave cannot reach the queue, where it would fail
    every commit that carried it."""
    with pytest.raises(ValueError):
        store.append(-99, 1, b"a", connection_id=None, author=None)
    with pytest.raises(ValueError):
        store.checkpoint(-99, 1, b"state")
    assert store.backlog_bytes == 0


async def test_a_provisional_document_survives_failed_commits(tmp_path: Path) -> None:
    """While SQLite's write lock is held elsewhere, a new document and its rows wait in
    memory (their ids rolled back with each failed commit), then land as one document."""
    async with open_store("sqlite", tmp_path, commit_interval=0.01, busy_timeout_ms=20) as store:
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(30)
            conn.execute("COMMIT")
            conn.close()

        await store.load("before")  # the database file exists and is at head
        holder = asyncio.create_task(asyncio.to_thread(hold_lock))
        await asyncio.to_thread(locked.wait, 10)
        tmp = (await store.load("held", provisional=True)).doc_id
        told: list[int] = []
        store.when_created(tmp, told.append)
        store.append(tmp, 1, b"a", connection_id=None, author=None)
        await eventually(lambda: store.write_errors >= 2, what="failed commits")
        store.append(tmp, 2, b"b", connection_id=None, author=None)
        assert told == []
        release.set()
        await holder
        await asyncio.wait_for(store.flush(), 10 * TIMEOUT_FACTOR)
        loaded = await store.load("held")
        assert (told, loaded.updates) == ([loaded.doc_id], [b"a", b"b"])


async def test_two_nodes_numbering_one_document_never_collide(tmp_path: Path) -> None:
    """Two stores on one PostgreSQL database (two nodes) appending to the same document at
    once, every commit numbering its rows (``seq=None``): each commit locks the
    document's row before it reads the largest seq, so none fails on the primary key and
    is renumbered (``seq_races``), and the log is numbered 1..N without a gap."""
    async with postgres_database() as url:
        nodes = [Store(url, commit_interval=0.002) for _ in range(2)]
        for node in nodes:
            await node.open()
        try:
            doc_id = (await nodes[0].load("shared")).doc_id
            assert (await nodes[1].load("shared")).doc_id == doc_id
            for round_ in range(40):
                for i, node in enumerate(nodes):
                    for k in range(3):
                        data = b"%d-%d-%d" % (round_, i, k)
                        node.append(doc_id, None, data, connection_id=None, author=None)
                await asyncio.gather(*(node.flush() for node in nodes))
            assert [node.seq_races for node in nodes] == [0, 0]
            loaded = await nodes[0].load("shared")
            assert len(loaded.updates) == 40 * 2 * 3
            assert loaded.last_seq == 40 * 2 * 3
        finally:
            for node in nodes:
                await node.close()
