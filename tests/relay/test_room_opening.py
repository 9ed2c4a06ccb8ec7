"""Opening rooms (``collab.relay.persistence.load_room``, ``Writer.provisional``): a join to
a new room costs one read and never waits for a commit, its document row is created in the
same transaction as its first update, every read still finds it, and a join to a loaded
room runs no SQL at all. Real server, real sockets, a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import aiohttp
from pycrdt import Doc, Text
from sqlalchemy import event

from collab.config import Config
from collab.http.state import HUB
from collab.store import Store
from collab.sync.protocol import encode_update
from tests.conftest import ROOT, TIMEOUT_FACTOR, eventually, raw_client, start_server

# A group window no test waits for: whatever commits, something else made it commit.
_LONG_WINDOW = 30.0


def _quiet(config: Config, **changes: Any) -> Config:
    """``config`` with no background reads (the revocation poll) that a statement count
    would see."""
    return replace(config, revocation_poll=0, **changes)


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the store's engines run meanwhile (``COMMIT`` for each commit),
    first word only."""
    seen: list[str] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split(None, 2)[0].upper() + " " + _table(statement))

    def committed(_conn: Any) -> None:
        seen.append("COMMIT")

    def written(statement: str, _params: Any) -> None:
        if statement == "COMMIT":
            committed(None)
        else:
            executed(None, None, statement)

    engine = store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", executed)
    event.listen(engine, "commit", committed)
    # Room loads and the writer's commits on SQLite go straight to the driver, past the
    # engines' events.
    store.trace_reads(lambda statement: executed(None, None, statement))
    store.trace_writes(written)
    try:
        yield seen
    finally:
        store.trace_reads(None)
        store.trace_writes(None)
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "commit", committed)


def _table(statement: str) -> str:
    words = statement.replace("(", " ").split()
    for keyword in ("INTO", "FROM", "UPDATE"):
        if keyword in words:
            return words[words.index(keyword) + 1].strip('"')
    return ""


def _documents(db: str) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT id, name FROM documents ORDER BY id"))


def _update(text: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get(ROOT, type=Text).insert(0, text)
    return encode_update(doc.get_update())


async def test_a_join_to_a_new_room_waits_for_no_commit(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """With a 30 s window, a join to a new room completes its handshake with one read and no
    commit; the document row is then created by the commit that stores the first update,
    in the same transaction, and the room takes its real id."""
    config = _quiet(config, commit_interval=_LONG_WINDOW)
    async with start_server(config) as server:
        store = server.app[HUB].store
        commits = store.commits
        with statements(store) as seen:
            async with raw_client(session, server.url("fresh")) as client:
                await client.handshake()
                assert seen == ["SELECT documents"]
                assert store.commits == commits
                assert await asyncio.to_thread(_documents, config.db) == []
                room = server.app[HUB].rooms["fresh"]
                assert room.doc_id < 0  # provisional until the commit
                await client.ws.send_bytes(_update("hello"))
                await eventually(lambda: room.seq == 1, what="the update applied")
                await asyncio.wait_for(store.flush(), 5 * TIMEOUT_FACTOR)
        assert seen[1:] == ["INSERT documents", "SELECT documents", "INSERT updates", "COMMIT"]
        [(doc_id, name)] = await asyncio.to_thread(_documents, config.db)
        assert (name, room.doc_id) == ("fresh", doc_id)
        assert (await store.load("fresh")).last_seq == 1


async def test_a_join_to_a_loaded_room_runs_no_sql(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Once a room is loaded, more joins (and their handshakes) never reach the database."""
    async with start_server(_quiet(config)) as server:
        store = server.app[HUB].store
        async with raw_client(session, server.url("loaded")) as first:
            await first.handshake()
            await asyncio.wait_for(store.flush(), 5 * TIMEOUT_FACTOR)
            with statements(store) as seen:
                for _ in range(3):
                    async with raw_client(session, server.url("loaded")) as client:
                        await client.handshake()
            assert seen == []


async def test_reads_find_a_document_a_join_opened_before_its_commit(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A room opened but not committed yet is a document for every read: it is listed,
    ``POST /api/docs`` answers 409, and deleting it closes its member with 4404 and
    refuses the next join."""
    config = replace(config, commit_interval=_LONG_WINDOW)
    async with start_server(config) as server:
        async with raw_client(session, server.url("opened")) as member:
            await member.handshake()
            async with session.get(f"{server.http}/api/docs") as answer:
                assert [d["name"] for d in (await answer.json())["docs"]] == ["opened"]
            async with session.post(f"{server.http}/api/docs", json={"name": "opened"}) as answer:
                assert answer.status == 409, await answer.text()
            async with session.delete(f"{server.http}/api/docs/opened") as answer:
                assert answer.status == 200, await answer.text()
            assert await member.closed_with() == 4404
        async with raw_client(session, server.url("opened")) as late:
            assert await late.closed_with() == 4404
        assert [name for _, name in await asyncio.to_thread(_documents, config.db)] == ["opened"]
