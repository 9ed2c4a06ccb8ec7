"""The store on a real SQLite file, schema built by the Alembic migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from collab.store import Store
from collab.store.history import HistoryStore
from tests.services import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same store on a real SQLite file and on a fresh PostgreSQL database."""
    async with open_store(request.param, tmp_path, busy_timeout_ms=20) as store:
        yield store


async def test_append_flush_load(store: Store) -> None:
    """Queued updates are committed by flush and come back from load in order."""
    loaded = await store.load("doc")
    assert (loaded.checkpoint, loaded.updates, loaded.last_seq) == (None, [], 0)
    for seq in range(1, 4):
        store.append(loaded.doc_id, seq, bytes([seq]), connection_id="c", author=None)
    await store.flush()
    again = await store.load("doc")
    assert again.doc_id == loaded.doc_id
    assert (again.updates, again.last_seq) == ([b"\x01", b"\x02", b"\x03"], 3)


async def test_load_starts_from_newest_checkpoint(store: Store) -> None:
    """Load returns the newest checkpoint and only the updates after it."""
    doc_id = (await store.load("doc")).doc_id
    for seq in range(1, 6):
        store.append(doc_id, seq, bytes([seq]), connection_id=None, author=None)
        if seq in (2, 4):
            store.checkpoint(doc_id, seq, b"state-%d" % seq)
    await store.flush()
    loaded = await store.load("doc")
    assert (loaded.checkpoint, loaded.checkpoint_seq) == (b"state-4", 4)
    assert (loaded.updates, loaded.last_seq) == ([b"\x05"], 5)


async def test_concurrent_creation_of_one_name_gives_one_document(store: Store) -> None:
    """Many loads of a new name at once create exactly one document."""
    results = await asyncio.gather(*(store.load("same") for _ in range(20)))
    assert len({r.doc_id for r in results}) == 1


async def test_burst_of_new_documents(store: Store) -> None:
    """A burst of distinct new documents each get their own id."""
    results = await asyncio.gather(*(store.load(f"doc-{i}") for i in range(200)))
    assert len({r.doc_id for r in results}) == 200


async def test_seq_at_and_first_seq_after_search_by_time(store: Store) -> None:
    """Lookups by time find the last update at or before a moment (and the first after
    it) by seq alone, gaps in the log (merged runs) included."""
    doc_id = (await store.load("doc")).doc_id
    # seqs 1..300 with some missing, as compaction leaves them; several rows per ms
    stored = [seq for seq in range(1, 301) if seq % 7 != 3]
    for seq in stored:
        store.append(
            doc_id, seq, b"u", connection_id=None, author=None, created_ms=1000 + seq // 3
        )
    await store.flush()
    history = HistoryStore(store)
    for ms in (0, 999, 1000, 1001, 1040, 1041, 1050, 1099, 1100, 5000):
        expected = max((s for s in stored if 1000 + s // 3 <= ms), default=0)
        after = min((s for s in stored if 1000 + s // 3 > ms), default=None)
        assert await history.seq_at(doc_id, ms) == expected, ms
        assert await history.first_seq_after(doc_id, ms) == after, ms
    empty = (await store.load("empty")).doc_id
    assert await history.seq_at(empty, 5000) == 0
    assert await history.first_seq_after(empty, 5000) is None
