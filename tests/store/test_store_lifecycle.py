"""Documents' lifecycle and revoked tokens in the store, on SQLite and PostgreSQL, and
migration 0003 down and up again on both."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from collab.store import DocumentStore, HistoryStore, Store, TokenStore, now_ms
from tests.services import open_store

REPO = Path(__file__).parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The same store on a real SQLite file and on a fresh PostgreSQL database."""
    async with open_store(request.param, tmp_path) as store:
        yield store


async def test_soft_delete_hides_keeps_and_restores(store: Store) -> None:
    """A deleted document leaves the list and history reads, keeps its rows, refuses to
    load as a room, and comes back whole when undeleted."""
    documents = DocumentStore(store)
    created = await documents.create("doc")
    assert created is not None and created.deleted_ms is None
    assert await documents.create("doc") is None
    store.append(created.id, 1, b"u1", connection_id="c", author="ann")
    await store.flush()

    at = now_ms()
    assert await documents.delete("doc", at)
    assert not await documents.delete("doc", at)  # already deleted
    assert not await documents.delete("nope", at)
    found = await documents.find("doc")
    assert found is not None and found.deleted_ms == at
    assert await store.list_documents() == []
    assert await HistoryStore(store).document("doc") is None
    assert await HistoryStore(store).document_names() == []
    loaded = await store.load("doc")
    assert (loaded.doc_id, loaded.deleted_ms, loaded.updates) == (created.id, at, [])
    assert await documents.deleted_among(["doc", "other"]) == {"doc"}
    assert await documents.create("doc") is None  # the name stays taken

    assert await documents.undelete("doc")
    assert not await documents.undelete("doc")
    assert [d.name for d in await store.list_documents()] == ["doc"]
    again = await store.load("doc")
    assert (again.deleted_ms, again.updates) == (None, [b"u1"])


async def test_purge_removes_only_what_is_due(store: Store) -> None:
    """Purge removes documents deleted before the cutoff with every row of theirs, and
    leaves later deletions and live documents alone."""
    documents = DocumentStore(store)
    ids = {}
    for name in ("old", "recent", "live"):
        created = await documents.create(name)
        assert created is not None
        ids[name] = created.id
        store.append(created.id, 1, b"u", connection_id=None, author=None)
        store.checkpoint(created.id, 1, b"s")
    await store.flush()
    await HistoryStore(store).add_named_version(ids["old"], 1, "v1", None)
    await HistoryStore(store).record_compaction(
        ids["old"],
        upto_seq=1,
        granularity_ms=1,
        rows_before=1,
        rows_after=1,
        bytes_before=1,
        bytes_after=1,
    )
    await documents.delete("old", 1_000)
    await documents.delete("recent", 5_000)
    assert await documents.purge(2_000, dry_run=True) == ["old"]
    assert await documents.find("old") is not None
    assert await documents.purge(2_000) == ["old"]
    assert await documents.find("old") is None
    assert await documents.purge(2_000) == []
    assert await documents.find("recent") is not None
    live = await store.load("live")
    assert (live.checkpoint, live.last_seq) == (b"s", 1)  # untouched
    assert (await documents.create("old")) is not None  # the name is free again


async def test_revoked_tokens(store: Store) -> None:
    """Revocations are listed until the token would have expired anyway."""
    tokens = TokenStore(store)
    assert await tokens.revoke("a", expires_ms=1_000)
    assert not await tokens.revoke("a")
    assert await tokens.revoke("b")
    assert await tokens.revoked() == {"a", "b"}
    assert await tokens.purge(500) == 0
    assert await tokens.purge(2_000) == 1
    assert await tokens.revoked() == {"b"}


async def _alembic(url: str, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-c",
        str(REPO / "alembic.ini"),
        *args,
        env={**os.environ, "COLLAB_DB": url},
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


async def _schema_names(url: str, kind: str, table: str) -> set[str | None]:
    """The names of ``table``'s columns or indexes (``kind``), as the database has them."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(
                await conn.run_sync(
                    lambda sync: [
                        item["name"] for item in getattr(sync.dialect, f"get_{kind}")(sync, table)
                    ]
                )
            )
    finally:
        await engine.dispose()


async def _columns(url: str) -> set[str | None]:
    return await _schema_names(url, "columns", "documents")


async def test_migration_0003_down_and_up(store: Store) -> None:
    """Revision 0003 downgrades to 0002 (data kept) and upgrades again, on both engines."""
    created = await DocumentStore(store).create("kept")
    assert created is not None
    await DocumentStore(store).delete("kept", 1)
    await TokenStore(store).revoke("t")
    url = store.url
    await store.close()
    assert "deleted_ms" in await _columns(url)
    await _alembic(url, "downgrade", "0002")
    assert "deleted_ms" not in await _columns(url)
    await _alembic(url, "upgrade", "head")
    assert "deleted_ms" in await _columns(url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM documents"))).scalars().all()
            revoked = (await conn.execute(text("SELECT count(*) FROM revoked_tokens"))).scalar()
    finally:
        await engine.dispose()
    assert (list(names), revoked) == (["kept"], 0)
    await store.open()


async def _update_indexes(url: str) -> set[str | None]:
    return await _schema_names(url, "indexes", "updates")


async def test_migration_0004_drops_the_time_index_and_back(store: Store) -> None:
    """Revision 0004 drops the updates time index (the log is kept) and its downgrade
    recreates it, on both engines."""
    doc_id = (await store.load("kept")).doc_id
    store.append(doc_id, 1, b"\x00\x00", connection_id=None, author=None)
    await store.flush()
    url = store.url
    await store.close()
    assert "ix_updates_doc_id_created_ms" not in await _update_indexes(url)
    await _alembic(url, "downgrade", "0003")
    assert "ix_updates_doc_id_created_ms" in await _update_indexes(url)
    await _alembic(url, "upgrade", "head")
    assert "ix_updates_doc_id_created_ms" not in await _update_indexes(url)
    await store.open()
    assert (await store.load("kept")).updates == [b"\x00\x00"]


def _state_vector(rows: list[bytes]) -> bytes:
    from collab.sync.lineage import state_vector_of

    return state_vector_of(rows)


async def test_a_reset_archives_the_history_and_a_purge_removes_it(store: Store) -> None:
    """A reset keeps the old rows under an archived row no listing, name or dump reaches;
    the history store finds it by lineage; purging the name removes the archive too, and
    its retired lineage stays, no longer readable."""
    from pycrdt import Doc, Text

    documents, history = DocumentStore(store), HistoryStore(store)
    created = await documents.create("doc")
    assert created is not None
    doc: Doc[Text] = Doc()
    doc.get("content", type=Text).insert(0, "old")
    store.append(created.id, 1, doc.get_update(), connection_id="c", author="ann")
    await store.flush()
    old = (await documents.lineage("doc")).current  # type: ignore[union-attr]
    done = await documents.reset("doc", _state_vector)
    assert done is not None and (done.retired, done.seq) == (old, 0)
    assert await documents.reset("nope", _state_vector) is None
    assert [d.name for d in await store.list_documents()] == ["doc"]
    assert await history.document_names() == ["doc"]
    assert old is not None
    archived = await history.lineage("doc", old)
    assert archived is not None and archived.id == created.id and archived.last_seq == 1
    current = await history.document("doc")
    assert current is not None and current.id != created.id and current.last_seq == 0
    lineage = await documents.lineage("doc")
    assert lineage is not None and [(r.reason, r.readable) for r in lineage.retired] == [
        ("reset", True)
    ]

    assert await documents.delete("doc", now_ms() - 10_000)
    assert await documents.purge(now_ms(), state_vector=_state_vector) == ["doc"]
    assert await history.lineage("doc", old) is None
    loaded = await store.load("doc")  # a new document of that name
    # The reset's lineage; the purged history was empty, so nobody can hold any of it.
    assert loaded.updates == [] and len(loaded.retired) == 1
    async with store.connect() as conn:
        rows = (await conn.execute(text("SELECT count(*) FROM updates"))).scalar()
    assert rows == 0


async def test_states_among_reports_deleted_lineage_and_retirement(store: Store) -> None:
    """``states_among`` (the poll every server runs over its loaded rooms) answers, for
    each name that has a document, whether it is deleted, its lineage and when its name
    last retired one; names without a document are left out; more names than one query
    takes (500) are all answered. The same on SQLite (straight to the driver) and
    PostgreSQL."""
    documents = DocumentStore(store)
    for name in ("kept", "gone", "again"):
        await documents.create(name)
    await documents.delete("gone", now_ms())
    before = await documents.states_among(["again"])
    reset = await documents.reset("again", state_vector=lambda _state: b"\x00")
    assert reset is not None
    many = [f"n-{i}" for i in range(1, 1101)]
    for name in many[:3]:
        await documents.create(name)
    states = await documents.states_among(["kept", "gone", "again", "missing", *many])
    assert sorted(states) == sorted(["kept", "gone", "again", *many[:3]])
    assert not states["kept"].deleted and states["kept"].retired_ms is None
    assert states["gone"].deleted
    assert states["again"].lineage != before["again"].lineage
    assert states["again"].retired_ms is not None and states["again"].retired_ms > 0
    assert all(not states[n].deleted and states[n].lineage for n in many[:3])
