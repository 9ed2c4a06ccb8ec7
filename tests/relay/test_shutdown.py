"""Graceful shutdown under many rooms: every socket gets 1012, everything relayed is
stored, and the rooms' final checkpoints are committed while the clients still owe their
replies to the close frames, once per room unless the room changes afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from pycrdt import Doc, Text

from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB
from collab.sync.protocol import encode_update
from tests import process
from tests.conftest import ROOT, editor, eventually, raw_client, start_server

ROOMS = 12


def _checkpoints(db: str | Path) -> dict[str, list[int]]:
    """Each document's checkpoints, by name: the seqs they are as of."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.name, c.upto_seq FROM checkpoints c JOIN documents d ON d.id = c.doc_id "
            "ORDER BY d.name, c.upto_seq"
        ).fetchall()
    found: dict[str, list[int]] = {}
    for name, upto_seq in rows:
        found.setdefault(name, []).append(upto_seq)
    return found


def _updates(db: str | Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.name, count(*) FROM updates u JOIN documents d ON d.id = u.doc_id "
            "GROUP BY d.name"
        ).fetchall()
    return dict(rows)


def _typed(text: str) -> list[bytes]:
    """The updates of typing ``text`` one character at a time."""
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for char in text:
        doc.get(ROOT, type=Text).insert(len(str(doc.get(ROOT, type=Text))), char)
    return updates


async def test_checkpoints_are_committed_before_the_clients_answer_the_close(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Once the shutdown has sent its close frames it commits every changed room's final
    checkpoint, before any client has answered; the hub's own close then writes no
    second one."""
    names = [f"room{i}" for i in range(ROOMS)]
    async with (
        start_server(config.replace(room_grace=30.0)) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        hub = server.app[HUB]
        clients = []
        for i, name in enumerate(names):
            client = await stack.enter_async_context(raw_client(session, server.url(name)))
            clients.append(client)
            await client.handshake()
            for update in _typed(f"text {i:02d}"):
                await client.ws.send_bytes(encode_update(update))
        await eventually(lambda: all(hub.rooms[n].seq == len(_typed("text 00")) for n in names))
        await hub.store.flush()
        assert await asyncio.to_thread(_checkpoints, config.db) == {}
        await server.app.shutdown()  # on_shutdown: commit, close with 1012, checkpoints
        # No client has read anything yet, so none has answered its close frame (these
        # clients do not answer by themselves): the checkpoints are there all the same.
        seq = len(_typed("text 00"))
        assert await asyncio.to_thread(_checkpoints, config.db) == {n: [seq] for n in names}
        for client in clients:
            assert await client.closed_with() == CloseCode.SERVICE_RESTART
            await client.ws.close()  # the answer
    assert await asyncio.to_thread(_checkpoints, config.db) == {n: [seq] for n in names}


async def test_a_room_changed_after_the_shutdown_checkpoints_is_checkpointed_again(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A change the server makes to a room after the shutdown's checkpoints (a restore)
    is committed, and that room, only that one, gets another checkpoint before the server
    stops; the rooms reload whole."""
    async with start_server(config.replace(room_grace=30.0)) as server:
        hub = server.app[HUB]
        for name in ("changed", "still"):
            async with editor(session, server.url(name)) as alice:
                alice.text += name
                await eventually(lambda: hub.store.backlog_bytes == 0 and name in hub.rooms)
        await server.app.shutdown()
        assert await asyncio.to_thread(_checkpoints, config.db) == {"changed": [1], "still": [1]}
        late: Doc[Any] = Doc()
        late.apply_update(hub.rooms["changed"].doc.get_update())
        late.get(ROOT, type=Text).insert(len("changed"), " later")
        update = late.get_update(hub.rooms["changed"].doc.get_state())
        assert await hub.apply("changed", update, "server") == 2
    assert await asyncio.to_thread(_checkpoints, config.db) == {"changed": [1, 2], "still": [1]}
    assert await asyncio.to_thread(_updates, config.db) == {"changed": 2, "still": 1}
    async with start_server(config) as server:
        for name, text in (("changed", "changed later"), ("still", "still")):
            async with editor(session, server.url(name)) as reader:
                assert str(reader) == text


async def test_sigterm_under_many_rooms_closes_all_with_1012_and_stores_all(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """SIGTERM to ``collab serve`` with two clients in each of many rooms, just after the
    last edits were relayed: every client gets 1012, the server exits 0, every relayed
    edit is stored with a checkpoint of its room as of its last one, and a restarted
    server serves every document whole."""
    db = tmp_path / "collab.db"
    # A long commit window: only the shutdown can have stored the last edits.
    server = await process.start(db, tmp_path / "log", "--commit-interval", "30")
    names = [f"room{i}" for i in range(ROOMS)]
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for i, name in enumerate(names):
            writer = await stack.enter_async_context(raw_client(session, server.url(name)))
            watcher = await stack.enter_async_context(raw_client(session, server.url(name)))
            clients += [writer, watcher]
            await writer.handshake()
            await watcher.handshake()
            updates = _typed(f"room {i} ")
            for update in updates:
                await writer.ws.send_bytes(encode_update(update))
            for _ in updates:  # relayed: the server's acknowledgement (y-websocket has none)
                await watcher.recv_bytes()
        server.signal(signal.SIGTERM)
        codes = await asyncio.gather(*(client.closed_with(10) for client in clients))
        assert codes == [CloseCode.SERVICE_RESTART] * len(clients)
        for client in clients:
            await client.ws.close()
        assert await server.wait() == 0
    stored = await asyncio.to_thread(_updates, db)
    assert stored == {name: len(_typed(f"room {i} ")) for i, name in enumerate(names)}
    assert await asyncio.to_thread(_checkpoints, db) == {n: [stored[n]] for n in names}
    restarted = await process.start(db, tmp_path / "log", port=server.port)
    try:
        for i, name in enumerate(names):
            async with editor(session, restarted.url(name)) as reader:
                assert str(reader) == f"room {i} "
    finally:
        restarted.signal(signal.SIGTERM)
        assert await restarted.wait() == 0
