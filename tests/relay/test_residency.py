"""Room and connection lifecycles through a running server: the room states and their
moves, eviction, the close code a lost peer is recorded with, the author every stored
update gets, and failed background tasks."""

from __future__ import annotations

import logging
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
from collab.sync.protocol import encode_update
from tests.conftest import ROOT, editor, eventually, raw_client, start_server

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


def _rows(db: str, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_illegal_room_transition_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """A move the state table does not have raises and is logged, and changes nothing."""
    slot = Residency("r")
    assert RoomState.UNLOADING not in TRANSITIONS[RoomState.LOADING]
    with pytest.raises(IllegalTransition):
        slot.move(RoomState.UNLOADING)
    assert slot.state is RoomState.LOADING
    assert "illegal transition LOADING -> UNLOADING" in caplog.text
