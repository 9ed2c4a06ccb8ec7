"""Bad input: each kind closes only the offending connection, with its exact close code,
and leaves the room, its other members and the stored history untouched."""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from collab.config import Config, database_url
from collab.errors import CloseCode
from collab.http.state import HUB
from collab.store.models import UpdateRow
from collab.sync.protocol import encode_sync_step1, encode_update, write_var_uint
from collab.sync.ydoc import apply_unless_known
from tests.conftest import ROOT, Server, editor, eventually, raw_client, start_server

BAD_MESSAGES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x80", id="truncated-type-varint"),
    pytest.param(b"\x00\x02\x05abc", id="truncated-payload"),
    pytest.param(b"\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff", id="overlong-varint"),
    pytest.param(b"\x00\x07\x00", id="unknown-sync-step"),
    pytest.param(b"\x00\x02\x03\xff\xff\xff", id="invalid-yjs-update"),
    pytest.param(b"\x00\x02\x00", id="empty-yjs-update"),
    pytest.param(b"\x00\x01\x00", id="empty-sync-step2"),
    pytest.param(b"\x00\x02\x02\x00\x00trailing", id="trailing-bytes"),
    pytest.param(b"\x01\x06\x01\x01\x01\x02{x", id="awareness-bad-json"),
    pytest.param(b"\x01\x07\x01\x01\x01\x03[1]", id="awareness-not-object"),
    pytest.param(b"\x01\x04\x09\x01\x01\x00", id="awareness-count-lies"),
    pytest.param(b"\x01\x06\x01\x01\x01\x02\xff\xfe", id="awareness-bad-utf8"),
    pytest.param(b"\x00\x00\x01\x05", id="invalid-state-vector"),
]


async def _stored_updates(server: Server) -> int:
    engine = create_async_engine(database_url(server.config.db))
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(UpdateRow))).scalar_one()
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("bad", BAD_MESSAGES)
async def test_malformed_message_closes_only_that_connection(
    server: Server, session: aiohttp.ClientSession, bad: bytes
) -> None:
    """A malformed binary message closes its sender with 1007; the room carries on intact."""
    url = server.url("victim")
    async with editor(session, url) as alice, editor(session, url) as bob:
        alice.text += "safe"
        await eventually(lambda: str(bob) == "safe")
        async with raw_client(session, url) as mallory:
            await mallory.handshake()
            await mallory.ws.send_bytes(bad)
            assert await mallory.closed_with() == CloseCode.INVALID_PAYLOAD
        bob.text += "!"
        await eventually(lambda: str(alice) == "safe!")
        async with editor(session, url) as late:
            assert str(late) == "safe!"


async def test_text_frame_gets_1003(server: Server, session: aiohttp.ClientSession) -> None:
    """A text frame closes the connection with 1003 (the protocol is binary)."""
    async with raw_client(session, server.url("text")) as client:
        await client.handshake()
        await client.ws.send_str("hello")
        assert await client.closed_with() == CloseCode.UNSUPPORTED_DATA


async def test_oversized_message_gets_1009(config: Config, session: aiohttp.ClientSession) -> None:
    """A message over max_message_size closes with 1009 and is neither applied nor stored."""
    limit = 64 * 1024
    async with start_server(config.replace(max_message_size=limit)) as server:
        async with editor(session, server.url("big")) as alice:
            alice.text += "kept"
            async with raw_client(session, server.url("big")) as client:
                await client.handshake()
                await client.ws.send_bytes(encode_update(b"\x00" * (limit + 1)))
                assert await client.closed_with() == CloseCode.MESSAGE_TOO_BIG
            async with editor(session, server.url("big")) as late:
                assert str(late) == "kept"


def test_default_message_limit_fits_large_documents() -> None:
    """The default limit is far above aiohttp's 4 MiB, so a big first sync or paste fits."""
    assert Config().max_message_size >= 32 * 1024 * 1024


@pytest.mark.parametrize(
    "name", ["%00evil", "a" * 600, "tab%09name"], ids=["nul", "too-long", "control"]
)
async def test_bad_room_name_gets_4400(
    server: Server, session: aiohttp.ClientSession, name: str
) -> None:
    """An invalid room name is refused with 4400, which tells clients not to retry."""
    async with raw_client(session, server.url(name)) as client:
        assert await client.closed_with() == CloseCode.BAD_REQUEST
    assert not server.app[HUB].rooms


async def test_invalid_update_is_not_stored(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """After a rejected update, the log holds exactly the valid updates."""
    url = server.url("log")
    async with editor(session, url) as alice:
        alice.text += "one"
        async with raw_client(session, url) as mallory:
            await mallory.handshake()
            await mallory.ws.send_bytes(b"\x00\x02\x03\xff\xff\xff")
            assert await mallory.closed_with() == CloseCode.INVALID_PAYLOAD
        alice.text += "two"
        await eventually(lambda: server.app[HUB].rooms["log"].seq == 2)
    await eventually(lambda: server.app[HUB].store.backlog_bytes == 0)
    assert await _stored_updates(server) == 2


async def test_unknown_message_type_is_ignored(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Unknown message types are ignored: the connection stays open and keeps working."""
    source: Doc[Any] = Doc()
    source.get(ROOT, type=Text).insert(0, "z")
    async with (
        raw_client(session, server.url("unknown")) as client,
        editor(session, server.url("unknown")) as watcher,
    ):
        await client.handshake()
        await client.ws.send_bytes(b"\x07\x01\x02")
        await client.ws.send_bytes(encode_update(source.get_update()))
        await eventually(lambda: str(watcher) == "z")


POISON = bytes.fromhex(
    "0002300102ffffffffffffff0f00050107636f6e74656e74077b2278223a317d0080808080100"
    "17f0180808080088080808008"
)
"""A 50-byte update that made yrs panic ("attempt to divide by zero") and poisoned the
room's document (issue 10): a client id past 2**53, a GC of 2**32 clocks, a delete-set
range at clock 2**31."""


async def _closes(server: Server, session: aiohttp.ClientSession, code: int) -> float:
    async with session.get(server.http + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(f'collab_closes_total{{code="{code}",protocol="y-websocket"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_poison_update_closes_only_its_sender(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """The update that poisoned rooms closes its sender with 1007; the room, its members and
    the stored history carry on, and a later joiner syncs."""
    url = server.url("victim")
    async with editor(session, url) as alice:
        alice.text += "safe"
        async with raw_client(session, url) as mallory:
            await mallory.handshake()
            await mallory.ws.send_bytes(POISON)
            assert await mallory.closed_with() == CloseCode.INVALID_PAYLOAD
        alice.text += "!"
        async with editor(session, url) as late:
            await eventually(lambda: str(late) == "safe!")
    await eventually(lambda: "victim" not in server.app[HUB].rooms)
    async with editor(session, url) as reopened:
        assert str(reopened) == "safe!"
    assert await _closes(server, session, CloseCode.INVALID_PAYLOAD) == 1


async def test_stored_row_that_cannot_be_applied_is_quarantined(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A stored update yrs cannot apply (written before validation existed) is skipped at
    load and counted: the document still opens with everything else, over the WebSocket
    and over REST."""
    url = server.url("old")
    async with editor(session, url) as alice:
        alice.text += "kept"
    hub = server.app[HUB]
    await eventually(lambda: "old" not in hub.rooms)
    doc_id = (await hub.store.load("old")).doc_id
    hub.store.append(doc_id, 2, POISON[3:], connection_id=None, author="mallory")
    hub.store.append(doc_id, 3, b"\x05\x05\x05", connection_id=None, author="mallory")
    await hub.store.flush()
    async with session.get(server.http + "/api/docs/old/content") as response:
        assert (response.status, await response.text()) == (200, "kept")
    await eventually(lambda: "old" not in hub.rooms, what="unloaded again")
    async with editor(session, url) as bob:
        assert str(bob) == "kept"
        bob.text += " and more"
        await eventually(lambda: hub.rooms["old"].seq == 4)
    assert hub.stats.quarantined == 2
    async with session.get(server.http + "/metrics") as response:
        assert "collab_updates_quarantined_total 2.0" in await response.text()


@pytest.mark.parametrize(
    ("depth", "opening", "closing"),
    [
        pytest.param(10_000, b'{"a":', b"}", id="10k-objects"),
        pytest.param(100_000, b'{"a":', b"}", id="100k-objects"),
        pytest.param(100_000, b"[", b"]", id="100k-arrays"),
    ],
)
async def test_deeply_nested_awareness_gets_1007(
    config: Config, session: aiohttp.ClientSession, depth: int, opening: bytes, closing: bytes
) -> None:
    """Awareness JSON nested deeper than the JSON parser goes (a RecursionError) is
    malformed (1007), not a server error. max_awareness_size is raised to 1 MiB so that
    the depth is what is refused: 100,000 levels are over the 64 KiB default (1009)."""
    state = opening * depth + b"1" + closing * depth
    inner = b"\x01\x01\x01" + write_var_uint(len(state)) + state
    settings = config.replace(max_awareness_size=1024 * 1024)
    assert len(state) < settings.max_awareness_size < settings.max_message_size
    async with start_server(settings) as server:
        async with raw_client(session, server.url("deep")) as client:
            await client.handshake()
            await client.ws.send_bytes(b"\x01" + write_var_uint(len(inner)) + inner)
            assert await client.closed_with() == CloseCode.INVALID_PAYLOAD

        async def counted() -> bool:
            return await _closes(server, session, CloseCode.INVALID_PAYLOAD) == 1

        await eventually(counted, what="1007 counted")


def _awareness(client_id: int, clock: int, size: int = 0) -> bytes:
    state = b'{"user":{"name":"m"},"pad":"' + b"x" * size + b'"}'
    inner = b"".join(map(write_var_uint, (1, client_id, clock, len(state)))) + state
    return b"\x01" + write_var_uint(len(inner)) + inner


async def test_awareness_flood_is_closed_with_1013(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A connection sending awareness faster than its limit is closed with 1013 (clients
    retry later), counted, and an editor in the same room is untouched."""
    async with start_server(config.replace(awareness_burst=50)) as server:
        url = server.url("flood")
        async with editor(session, url) as alice, raw_client(session, url) as mallory:
            await mallory.handshake()
            for clock in range(1, 200):
                await mallory.ws.send_bytes(_awareness(7, clock))
            assert await mallory.closed_with() == CloseCode.TRY_AGAIN_LATER
            alice.text += "still here"
            async with editor(session, url) as bob:
                await eventually(lambda: str(bob) == "still here")
        assert server.app[HUB].stats.awareness_limited == 1


async def test_oversized_awareness_gets_1009(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """An awareness message over max_awareness_size closes with 1009, recorded as 1009."""
    async with raw_client(session, server.url("fat")) as client:
        await client.handshake()
        await client.ws.send_bytes(_awareness(7, 1, size=server.config.max_awareness_size))
        assert await client.closed_with() == CloseCode.MESSAGE_TOO_BIG
    await eventually(lambda: not server.app[HUB].rooms)
    assert await _closes(server, session, CloseCode.MESSAGE_TOO_BIG) == 1


async def test_close_code_sent_by_aiohttp_is_the_one_recorded(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A message over max_message_size is refused by aiohttp itself with 1009: metrics
    record 1009 too, not 1000."""
    async with start_server(config.replace(max_message_size=1024)) as server:
        async with raw_client(session, server.url("big")) as client:
            await client.handshake()
            await client.ws.send_bytes(encode_update(b"\x00" * 2048))
            assert await client.closed_with() == CloseCode.MESSAGE_TOO_BIG
        await eventually(lambda: not server.app[HUB].rooms)
        assert await _closes(server, session, CloseCode.MESSAGE_TOO_BIG) == 1
        assert await _closes(server, session, CloseCode.NORMAL) == 0


async def test_room_whose_document_panics_is_reset_and_reloaded(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """If yrs panics on a room's document (here: poisoned behind the validator's back), the
    room is thrown away, every member is closed with 1011, and reconnecting members find it
    reloaded from the store with everything stored."""
    url = server.url("poisoned")
    hub = server.app[HUB]
    async with editor(session, url) as alice, raw_client(session, url) as bob:
        await bob.handshake()
        alice.text += "stored"
        await eventually(lambda: hub.rooms["poisoned"].seq == 1)
        room = hub.rooms["poisoned"]
        with contextlib.suppress(BaseException):  # a PanicException: the doc is now broken
            apply_unless_known(room.doc, POISON[3:])  # as Room applies, validator aside
        # This document panics when encoded: the next joiner's SyncStep1 finds out.
        async with raw_client(session, url) as carol:
            await carol.recv_bytes()  # the server's SyncStep1
            await carol.ws.send_bytes(encode_sync_step1(b"\x00"))
            assert await carol.closed_with() == CloseCode.INTERNAL_ERROR
        assert await bob.closed_with() == CloseCode.INTERNAL_ERROR
        await eventually(lambda: alice.ws.closed, what="alice closed too")
        assert alice.ws.close_code == CloseCode.INTERNAL_ERROR
    assert "poisoned" not in hub.rooms and hub.stats.rooms_reset == 1
    async with editor(session, url) as again:
        assert str(again) == "stored"
        again.text += " and on"
        await eventually(lambda: hub.rooms["poisoned"].seq == 2)
    async with session.get(server.http + "/metrics") as response:
        assert "collab_rooms_reset_total 1.0" in await response.text()
    assert await _closes(server, session, CloseCode.INTERNAL_ERROR) == 3


async def test_a_document_poisoned_at_shutdown_costs_only_its_checkpoint(
    config: Config, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A room whose document turns out to be poisoned only when the server stops (its
    final checkpoint panics in yrs): the shutdown goes on, an edit just made in another
    room is committed, and after a restart both documents open with everything stored."""
    async with start_server(config) as server:
        hub = server.app[HUB]
        async with editor(session, server.url("poisoned")) as alice:
            alice.text += "stored"
            await eventually(lambda: hub.rooms["poisoned"].seq == 1)
            with contextlib.suppress(BaseException):  # a PanicException: the doc is broken
                apply_unless_known(hub.rooms["poisoned"].doc, POISON[3:])
            async with editor(session, server.url("other")) as bob:
                bob.text += "fresh edit"
                await eventually(lambda: hub.rooms["other"].seq == 1)
                # Both still connected: the server stops under them.
                await server.test_server.close()
    assert "document failed in yrs at unload; no final checkpoint" in caplog.text
    async with start_server(config) as server:
        async with editor(session, server.url("other")) as other:
            assert str(other) == "fresh edit"
        async with editor(session, server.url("poisoned")) as poisoned:
            assert str(poisoned) == "stored"
