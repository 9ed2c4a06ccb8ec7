"""The relay end to end: real server, real port, real Yjs clients, real SQLite."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB
from collab.sync.protocol import (
    AwarenessEntry,
    SyncStep1,
    SyncStep2,
    decode,
    encode_awareness,
    encode_update,
)
from tests.conftest import ROOT, Server, editor, eventually, raw_client, start_server


async def test_two_editors_converge(server: Server, session: aiohttp.ClientSession) -> None:
    """Edits made by one editor reach the other, both ways."""
    url = server.url("doc-1")
    async with editor(session, url) as alice, editor(session, url) as bob:
        alice.text += "hello"
        await eventually(lambda: str(bob) == "hello")
        bob.text += " world"
        await eventually(lambda: str(alice) == "hello world")


async def test_late_joiner_gets_full_state(server: Server, session: aiohttp.ClientSession) -> None:
    """A client joining after edits receives the whole document in its first sync."""
    url = server.url("doc-late")
    async with editor(session, url) as alice:
        for word in ["a", "b", "c"]:
            alice.text += word
        async with editor(session, url) as late:
            await eventually(lambda: str(late) == "abc")


async def test_update_is_not_echoed_to_sender(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """The server relays an update to other members only, never back to its sender."""
    url = server.url("no-echo")
    source: Doc[Any] = Doc()
    text = source.get(ROOT, type=Text)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    text += "x"
    async with raw_client(session, url) as a, raw_client(session, url) as b:
        await a.handshake()
        await b.handshake()
        await a.ws.send_bytes(encode_update(updates[0]))
        assert await b.recv_bytes() == encode_update(updates[0])  # forwarded byte for byte
        # a sends a query-awareness probe; the reply must be the next thing it sees.
        await a.ws.send_bytes(b"\x03")
        assert (await a.recv_bytes())[0] == 1


async def test_server_sends_step1_and_answers_step1(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """On connect the server sends SyncStep1; a client's SyncStep1 gets exactly what it lacks."""
    url = server.url("steps")
    async with editor(session, url) as alice:
        alice.text += "abc"
        async with raw_client(session, url) as raw:
            first = decode(await raw.recv_bytes())
            assert isinstance(first, SyncStep1)
            local: Doc[Any] = Doc()
            await raw.ws.send_bytes(b"\x00\x00" + bytes([1]) + b"\x00")
            reply = decode(await raw.recv_bytes())
            assert isinstance(reply, SyncStep2)
            local.apply_update(reply.update)
            assert str(local.get(ROOT, type=Text)) == "abc"


async def test_awareness_is_relayed_echoed_and_removed_on_leave(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Awareness reaches everyone including the sender, and is removed when its socket goes."""
    url = server.url("aware")
    async with raw_client(session, url) as watcher:
        await watcher.handshake()
        async with raw_client(session, url) as alice:
            await alice.handshake()
            announce = encode_awareness([AwarenessEntry(42, 1, {"user": {"name": "alice"}})])
            await alice.ws.send_bytes(announce)
            assert await watcher.recv_bytes() == announce
            assert await alice.recv_bytes() == announce  # echoed back to its sender
        removal = decode(await watcher.recv_bytes())
        assert removal == decode(encode_awareness([AwarenessEntry(42, 1, None)]))


async def test_new_member_receives_current_awareness(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """A joining client gets the awareness states of those already in the room."""
    url = server.url("aware-join")
    async with raw_client(session, url) as alice:
        await alice.handshake()
        await alice.ws.send_bytes(encode_awareness([AwarenessEntry(7, 3, {"cursor": 1})]))
        await alice.recv_bytes()
        async with raw_client(session, url) as bob:
            decode(await bob.recv_bytes())  # step1
            states = decode(await bob.recv_bytes())
            assert states == decode(encode_awareness([AwarenessEntry(7, 3, {"cursor": 1})]))


async def test_simultaneous_first_joins_all_sync(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Thirty clients opening a brand-new room at the same instant all sync and converge."""
    url = server.url("stampede")

    async def join(i: int, ready: asyncio.Event, done: asyncio.Barrier) -> str:
        async with editor(session, url) as e:
            e.text.insert(0, str(i % 10))
            await done.wait()
            await eventually(lambda: len(str(e)) == 30, what="all 30 edits")
            return str(e)

    ready = asyncio.Event()
    done = asyncio.Barrier(30)
    texts = await asyncio.gather(*(join(i, ready, done) for i in range(30)))
    assert len(set(texts)) == 1


async def test_room_name_may_hold_slashes_and_unicode(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Room names are the percent-decoded rest of the path; the query string is not part of it."""
    async with editor(session, server.url("team/notes/%C3%A9t%C3%A9")) as a:
        a.text += "x"
        async with editor(session, server.url("team/notes/été", "user=bob")) as b:
            await eventually(lambda: str(b) == "x")
        async with editor(session, server.url("team/notes")) as other:
            assert str(other) == ""


@pytest.mark.parametrize("size", [65_535, 65_536, 70_000, 1_000_000])
async def test_large_update_is_stored_and_relayed(
    server: Server, session: aiohttp.ClientSession, size: int
) -> None:
    """An update of 64 KiB or more (the frame's 64-bit length form) reaches the other
    members and the log, like any other."""
    url = server.url("large")
    async with editor(session, url) as alice, editor(session, url) as bob:
        alice.text += "x" * size
        await eventually(lambda: len(str(bob)) == size, timeout=10)
    hub = server.app[HUB]
    await eventually(lambda: "large" not in hub.rooms)
    loaded = await hub.store.load("large")
    assert loaded.last_seq == 1
    async with editor(session, url) as late:
        assert len(str(late)) == size


async def test_shutdown_says_not_ready_commits_then_closes_1012(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """When shutdown starts, /readyz turns 503 at once (a load balancer drains the node),
    queued updates are committed, and only then is every socket closed with 1012."""
    async with start_server(config.replace(commit_interval=30.0)) as server:
        url = server.url("going")
        async with editor(session, url) as alice, raw_client(session, url) as bob:
            await bob.handshake()
            alice.text += "committed before the close"
            await eventually(lambda: server.app[HUB].store.backlog_bytes > 0)
            await server.app.shutdown()  # aiohttp's own shutdown signal: on_shutdown runs
            assert await bob.closed_with() == CloseCode.SERVICE_RESTART
            assert server.app[HUB].store.backlog_bytes == 0
            async with session.get(server.http + "/readyz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "shutting down"
