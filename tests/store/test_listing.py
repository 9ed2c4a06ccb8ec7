"""The document list (``Store.list_documents``) on a real SQLite file and a real
PostgreSQL database."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from collab.config import database_url
from collab.store import Store
from tests.services import postgres_database


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_list_query_on_each_engine(tmp_path: Path, engine: str) -> None:
    """Store.list_documents orders, filters, measures and pages the same on both engines."""
    async with contextlib.AsyncExitStack() as stack:
        if engine == "sqlite":
            url = database_url(str(tmp_path / "l.db"))
        else:
            url = await stack.enter_async_context(postgres_database())
        store = Store(url, commit_interval=0.01)
        await store.open()
        stack.push_async_callback(store.close)
        ids = {}
        for i, name in enumerate(["Notes/A", "notes/b", "50%_off", "other"]):
            ids[name] = (await store.load(name)).doc_id
            for seq in range(1, i + 2):
                store.append(
                    ids[name],
                    seq,
                    b"u" * 10,
                    connection_id="c",
                    author=None,
                    created_ms=1_000_000 + i * 1000 + seq,
                )
        store.checkpoint(ids["other"], 2, b"s" * 7)
        await store.flush()
        listed = await store.list_documents()
        assert [d.name for d in listed] == ["other", "50%_off", "notes/b", "Notes/A"]
        assert [(d.updates, d.size) for d in listed] == [(4, 7 + 20), (3, 30), (2, 20), (1, 10)]
        assert listed[0].updated_ms == 1_003_004
        found = await store.list_documents(contains="NOTES/")
        assert [d.name for d in found] == ["notes/b", "Notes/A"]
        assert [d.name for d in await store.list_documents(contains="%_")] == ["50%_off"]
        first = await store.list_documents(limit=2)
        rest = await store.list_documents(before=(first[-1].updated_ms, first[-1].id))
        assert [d.name for d in first + rest] == [d.name for d in listed]
