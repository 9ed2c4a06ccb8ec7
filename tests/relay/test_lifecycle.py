"""Room and connection lifecycles through a running server: the room states and their
moves, eviction, the close code a lost peer is recorded with, the author every stored
update gets, and failed background tasks."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import sqlite3
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB
from collab.relay.residency import TRANSITIONS, IllegalTransition, Residency, RoomState
from collab.relay.tasks import Background
from collab.sync.protocol import encode_update
from tests.conftest import ROOT, Server, editor, eventually, raw_client, start_server

_MOVE = re.compile(r"room '(?P<room>[^']+)': (?P<from>[A-Z]+) -> (?P<to>[A-Z]+)")


def _moves(caplog: pytest.LogCaptureFixture, room: str) -> list[tuple[str, str]]:
    moves = []
    for record in caplog.records:
        match = _MOVE.fullmatch(record.getMessage())
        if record.name == "collab.relay.residency" and match and match["room"] == room:
            moves.append((match["from"], match["to"]))
    return moves


def _update(text: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get(ROOT, type=Text).insert(0, text)
    return doc.get_update()


async def _closes(session: aiohttp.ClientSession, server: Server, code: int) -> float:
    async with session.get(server.http + "/metrics") as response:
        body = await response.text()
    match = re.search(rf'^collab_closes_total{{code="{code}"}} (\S+)$', body, re.M)
    return float(match[1]) if match else 0.0


async def test_room_moves_loading_live_draining_unloading_gone(
    config: Config, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A room is loaded by its first joiner, drains when its last member leaves, and
    unloads after the grace period, through exactly these states."""
    caplog.set_level(logging.DEBUG, logger="collab.relay.residency")
    async with start_server(config) as server:
        hub = server.app[HUB]
        async with editor(session, server.url("cycle")) as alice:
            assert hub.state("cycle") is RoomState.LIVE
            alice.text += "x"
            await eventually(lambda: hub.rooms["cycle"].seq == 1)
        await eventually(lambda: hub.state("cycle") is RoomState.GONE, what="unloaded")
    assert _moves(caplog, "cycle") == [
        ("LOADING", "LIVE"),
        ("LIVE", "DRAINING"),
        ("DRAINING", "UNLOADING"),
        ("UNLOADING", "GONE"),
    ]


async def test_join_while_draining_brings_the_room_back_live(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A member joining during the grace period moves the same room back to LIVE."""
    async with start_server(config.replace(room_grace=30.0)) as server:
        hub = server.app[HUB]
        async with editor(session, server.url("back")) as alice:
            alice.text += "a"
        await eventually(lambda: hub.state("back") is RoomState.DRAINING, what="draining")
        room = hub.rooms["back"]
        async with editor(session, server.url("back")) as again:
            assert str(again) == "a"
            assert hub.state("back") is RoomState.LIVE and hub.rooms["back"] is room


async def test_evicted_room_closes_members_with_4404_and_refuses_joins_until_undeleted(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Deleting a loaded room's document closes its members with 4404 and unloads it;
    joins are refused with 4404 until the document is undeleted."""
    async with start_server(config) as server:
        hub = server.app[HUB]
        async with raw_client(session, server.url("doomed")) as member:
            await member.handshake()
            await member.ws.send_bytes(encode_update(_update("bye")))
            await eventually(lambda: hub.rooms["doomed"].seq == 1)
            async with session.delete(server.http + "/api/docs/doomed") as response:
                assert response.status == 200, await response.text()
            assert await member.closed_with() == CloseCode.DOCUMENT_DELETED
        await eventually(lambda: hub.state("doomed") is RoomState.GONE, what="unloaded")
        async with raw_client(session, server.url("doomed")) as refused:
            assert await refused.closed_with() == CloseCode.DOCUMENT_DELETED
        async with session.post(server.http + "/api/docs/doomed/undelete") as response:
            assert response.status == 200, await response.text()
        async with editor(session, server.url("doomed")) as back:
            assert str(back) == "bye"
            assert hub.state("doomed") is RoomState.LIVE


async def test_peer_lost_mid_send_is_recorded_as_1006(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A client whose connection breaks while the server is still sending to it is
    recorded in /metrics as closed with 1006, not as a normal close."""
    cfg = config.replace(outbox_max_bytes=1 << 30)
    async with start_server(cfg) as server, editor(session, server.url("lost")) as alice:
        hub = server.app[HUB]
        # A bare socket that upgrades and then never reads: what the server sends piles
        # up in the kernel's buffers, then in the connection's queue.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.test_server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws/lost HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
        await eventually(lambda: len(hub.rooms["lost"].members) == 2, what="joined")
        # The bare socket has sent nothing; the editor has (its sync handshake).
        (silent,) = [m for m in hub.rooms["lost"].members if m.received == 0]
        chunk = "x" * 50_000
        for _ in range(2000):
            alice.text += chunk
            if silent.queued_bytes:
                break
            await asyncio.sleep(0)  # let the relay deliver
        await eventually(lambda: silent.queued_bytes > 0, what="a send in flight")
        before = await _closes(session, server, CloseCode.ABNORMAL_CLOSURE)
        writer.transport.abort()  # unread data in the socket: the kernel sends a reset
        await eventually(lambda: silent.close_code is not None, what="noticed")
        await eventually(lambda: hub.members == 1, what="left")
        assert silent.close_code == CloseCode.ABNORMAL_CLOSURE
        assert await _closes(session, server, CloseCode.ABNORMAL_CLOSURE) == before + 1


async def test_update_from_an_anonymous_client_is_stored_under_its_connection_id(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """With no token, no ``?user=`` and no name in awareness, an update's author is its
    connection (``connection:<id>``, as history names it), so every update has one."""
    async with start_server(config) as server, raw_client(session, server.url("anon")) as client:
        hub = server.app[HUB]
        await client.handshake()
        await client.ws.send_bytes(encode_update(_update("?")))
        await eventually(lambda: hub.rooms["anon"].seq == 1)
        await hub.store.flush()
        rows = await asyncio.to_thread(
            _rows, config.db, "SELECT author, connection_id FROM updates"
        )
        [(author, connection_id)] = rows
        assert connection_id and author == f"connection:{connection_id}"


def _rows(db: str, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def test_failed_background_task_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spawned task that raises is logged at ERROR with its exception and forgotten."""

    async def fail() -> None:
        raise RuntimeError("disk on fire")

    background = Background()
    task = background.spawn(fail(), name="collab-test-fail")
    await asyncio.wait([task])
    await eventually(lambda: not background.tasks, what="forgotten")
    [record] = [r for r in caplog.records if r.name == "collab.relay.tasks"]
    assert record.levelno == logging.ERROR and "collab-test-fail" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "disk on fire"


def test_illegal_room_transition_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """A move the state table does not have raises and is logged, and changes nothing."""
    slot = Residency("r")
    assert RoomState.UNLOADING not in TRANSITIONS[RoomState.LOADING]
    with pytest.raises(IllegalTransition):
        slot.move(RoomState.UNLOADING)
    assert slot.state is RoomState.LOADING
    assert "illegal transition LOADING -> UNLOADING" in caplog.text
