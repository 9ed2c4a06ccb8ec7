"""Room lifecycle and persistence through a running server: restarts, unloading,
checkpoints, slow consumers, an overloaded store, dead connections."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from pycrdt import Doc, Text

from collab.config import Config, database_url
from collab.errors import CloseCode, ProtocolError, RateLimited
from collab.http.state import HUB
from collab.relay.connection import Connection, binary_frame
from collab.relay.hub import Hub
from collab.relay.limits import TokenBucket
from collab.store import Store
from collab.sync.protocol import AwarenessEntry, decode, encode_awareness, encode_update
from collab.sync.room import Room
from tests.conftest import ROOT, editor, eventually, raw_client, start_server


def _rows(db: str, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _update(text: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get(ROOT, type=Text).insert(0, text)
    return doc.get_update()


async def test_restart_serves_everything(config: Config, session: aiohttp.ClientSession) -> None:
    """After a clean restart a late joiner gets the full document."""
    async with start_server(config) as server, editor(session, server.url("keep")) as alice:
        for i in range(50):
            alice.text += str(i % 10)
        await eventually(lambda: server.app[HUB].rooms["keep"].seq == 50)
    async with start_server(config) as server, editor(session, server.url("keep")) as late:
        assert len(str(late)) == 50


async def test_empty_room_unloads_after_grace_and_reloads(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """An empty room is checkpointed and unloaded after the grace period, then reloads whole."""
    async with start_server(config) as server:
        hub = server.app[HUB]
        async with editor(session, server.url("nap")) as alice:
            alice.text += "zzz"
            await eventually(lambda: hub.rooms["nap"].seq == 1)
        await eventually(lambda: "nap" not in hub.rooms, what="unload")
        assert await asyncio.to_thread(_rows, config.db, "SELECT upto_seq FROM checkpoints") == [
            (1,)
        ]
        async with editor(session, server.url("nap")) as late:
            assert str(late) == "zzz"


async def test_rejoin_during_grace_keeps_room(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A member joining during the grace period reuses the loaded room."""
    async with start_server(config.replace(room_grace=5.0)) as server:
        hub = server.app[HUB]
        async with editor(session, server.url("stay")) as alice:
            alice.text += "a"
        room = hub.rooms["stay"]
        async with editor(session, server.url("stay")) as again:
            assert str(again) == "a"
            assert hub.rooms["stay"] is room


async def test_checkpoints_by_policy_never_delete_log(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """Checkpoints are written every N updates, the log keeps every update, reload is exact."""
    cfg = config.replace(checkpoint_updates=5)
    async with start_server(cfg) as server, editor(session, server.url("cp")) as alice:
        for i in range(12):
            alice.text += chr(97 + i)
        await eventually(lambda: server.app[HUB].rooms["cp"].seq == 12)
    updates = await asyncio.to_thread(_rows, cfg.db, "SELECT seq FROM updates ORDER BY seq")
    checkpoints = await asyncio.to_thread(
        _rows, cfg.db, "SELECT upto_seq FROM checkpoints ORDER BY upto_seq"
    )
    assert [r[0] for r in updates] == list(range(1, 13))
    assert [r[0] for r in checkpoints] == [5, 10, 12]  # 12: written when the server stopped
    async with start_server(cfg) as server, editor(session, server.url("cp")) as late:
        assert str(late) == "abcdefghijkl"


async def test_authorship_is_recorded(config: Config, session: aiohttp.ClientSession) -> None:
    """Each stored update records its connection and the name the client gave."""
    async with start_server(config) as server:
        async with editor(session, server.url("who", "user=alice")) as alice:
            alice.text += "a"
            await eventually(lambda: server.app[HUB].rooms["who"].seq == 1)
        await server.app[HUB].store.flush()
        rows = await asyncio.to_thread(
            _rows, config.db, "SELECT author, connection_id FROM updates"
        )
        assert rows[0][0] == "alice" and rows[0][1]


async def test_author_from_awareness_name(config: Config, session: aiohttp.ClientSession) -> None:
    """Without a user parameter, the name announced in awareness is recorded."""
    source: Doc[Any] = Doc()
    source.get(ROOT, type=Text).insert(0, "q")
    async with start_server(config) as server, raw_client(session, server.url("aw")) as client:
        await client.handshake()
        await client.ws.send_bytes(
            encode_awareness([AwarenessEntry(5, 1, {"user": {"name": "carol"}})])
        )
        await client.ws.send_bytes(encode_update(source.get_update()))
        await eventually(lambda: server.app[HUB].rooms["aw"].seq == 1)
        await server.app[HUB].store.flush()
        rows = await asyncio.to_thread(_rows, config.db, "SELECT author FROM updates")
        assert rows == [("carol",)]


async def test_slow_consumer_is_dropped_with_1013(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A client that stops reading is closed with 1013 while the others get every update."""
    cfg = config.replace(outbox_max_bytes=256 * 1024)
    chunk = "x" * 50_000
    async with start_server(cfg) as server:
        url = server.url("slow")
        async with editor(session, url) as alice, editor(session, url) as bob:
            async with session.ws_connect(url, max_msg_size=0) as slow:
                room = server.app[HUB].rooms["slow"]
                for i in range(400):  # 20 MB through a reader that reads nothing
                    alice.text += chunk
                    if any(m.close_code for m in room.members):
                        break
                    # Paced by the reader that reads: only the one that stops falls behind
                    # (unpaced, a loaded machine could leave bob 256 KB behind too).
                    size = (i + 1) * len(chunk)
                    await eventually(lambda: len(str(bob)) == size, timeout=30)
                await eventually(
                    lambda: any(m.close_code == CloseCode.TRY_AGAIN_LATER for m in room.members),
                    timeout=30,
                    what="the slow member to be closed",
                )
                alice.text += "end"
                await eventually(lambda: str(bob).endswith("end"), timeout=30)
                code = None
                while code is None:  # now read what reached the socket, then the close frame
                    msg = await asyncio.wait_for(slow.receive(), 30)
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        code = msg.data  # the code in the server's close frame
                assert code == CloseCode.TRY_AGAIN_LATER


async def test_store_backlog_limit_turns_writers_away(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """When the store is too far behind, a writer is closed with 1013 and nothing is lost."""
    cfg = config.replace(store_max_backlog=1, commit_interval=3.0)
    async with start_server(cfg) as server, editor(session, server.url("full")) as watcher:
        source: Doc[Any] = Doc()
        text = source.get(ROOT, type=Text)
        updates: list[bytes] = []
        source.observe(lambda e: updates.append(e.update))
        text += "a"
        text += "b"
        async with raw_client(session, server.url("full")) as writer:
            await writer.handshake()
            await writer.ws.send_bytes(encode_update(updates[0]))
            await eventually(lambda: str(watcher) == "a")
            await writer.ws.send_bytes(encode_update(updates[1]))
            assert await writer.closed_with() == CloseCode.TRY_AGAIN_LATER
        assert str(watcher) == "a"


async def test_dead_connection_is_dropped_and_awareness_removed(
    config: Config, session: aiohttp.ClientSession
) -> None:
    """A client that stops answering pings is dropped and its awareness removal broadcast."""
    async with start_server(config.replace(heartbeat=0.2)) as server:
        url = server.url("ping")
        async with raw_client(session, url) as watcher:
            await watcher.handshake()
            async with session.ws_connect(url, autoping=False, heartbeat=None) as dead:
                await dead.receive()  # step1
                announce = encode_awareness([AwarenessEntry(9, 1, {"user": {"name": "zed"}})])
                await dead.send_bytes(announce)
                assert await watcher.recv_bytes() == announce
                # watcher answers pings (autoping), dead does not.
                removal = decode(await watcher.recv_bytes(timeout=10))
                assert removal == decode(encode_awareness([AwarenessEntry(9, 1, None)]))


class _Wire:
    """A transport that keeps what is written to it (``Connection``'s direct path)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.frames.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


class _Socket:
    async def send_bytes(self, data: bytes) -> None:
        raise AssertionError("every frame here takes the direct path")

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        return True


@dataclass
class _Framing:
    """A Hub on a real store with three direct-path members of room "framing" (alice,
    bob, and reader, who is read-only) and four one-character updates (``abcd``)."""

    hub: Hub
    room: Room[Connection]
    wires: dict[str, _Wire]
    conns: dict[str, Connection]
    updates: list[bytes]

    @property
    def plain(self) -> bytes:
        """The first update, framed plainly: ``Hub.receive`` reads it without ``decode``."""
        return encode_update(self.updates[0])

    @property
    def padded(self) -> bytes:
        """The second update with its message type as a two-byte varint: only ``decode``
        reads it."""
        return b"\x80" + encode_update(self.updates[1])


@asynccontextmanager
async def _framing(config: Config) -> AsyncIterator[_Framing]:
    store = Store(database_url(config.db), commit_interval=config.commit_interval)
    await store.open()
    hub = Hub(store, config)
    try:
        wires = {name: _Wire() for name in ("alice", "bob", "reader")}
        conns = {
            name: Connection(_Socket(), name, author=name, max_bytes=1 << 20, transport=wire)
            for name, wire in wires.items()
        }
        conns["reader"].read_only = True
        for conn in conns.values():
            room = await hub.join("framing", conn)
        for wire in wires.values():
            wire.frames.clear()  # the joins' SyncStep1
        source: Doc[Any] = Doc()
        text = source.get(ROOT, type=Text)
        updates: list[bytes] = []
        source.observe(lambda e: updates.append(e.update))
        for ch in "abcd":
            text += ch
        bench = _Framing(hub, room, wires, conns, updates)
        assert bench.plain[:2] == b"\x00\x02"
        assert decode(bench.padded) == decode(encode_update(updates[1]))
        yield bench
    finally:
        await hub.close()


async def test_updates_are_relayed_byte_for_byte_with_or_without_decode(config: Config) -> None:
    """A plainly framed update (read without ``decode``) and the same kind of update framed
    otherwise both reach every other member unchanged, and never the sender."""
    async with _framing(config) as f:
        f.hub.receive(f.room, f.conns["alice"], f.plain)
        f.hub.receive(f.room, f.conns["alice"], f.padded)
        relayed = [binary_frame(f.plain), binary_frame(f.padded)]
        assert f.wires["bob"].frames == relayed and f.wires["reader"].frames == relayed
        assert f.wires["alice"].frames == []
        assert f.room.seq == 2 and str(f.room.doc.get(ROOT, type=Text)) == "ab"


async def test_updates_are_stored_with_their_author_on_either_path(config: Config) -> None:
    """Both framings are stored in order, each with the author of the member who sent it."""
    async with _framing(config) as f:
        f.hub.receive(f.room, f.conns["alice"], f.plain)
        f.hub.receive(f.room, f.conns["bob"], f.padded)
        await f.hub.store.flush()
        rows = await asyncio.to_thread(
            _rows, config.db, "SELECT seq, author, data FROM updates ORDER BY seq"
        )
        assert rows == [(1, "alice", f.updates[0]), (2, "bob", f.updates[1])]


async def test_updates_are_counted_the_same_on_either_path(config: Config) -> None:
    """Messages, updates, deliveries and bytes out count both framings alike."""
    async with _framing(config) as f:
        before = dataclasses.replace(f.hub.stats)
        f.hub.receive(f.room, f.conns["alice"], f.plain)
        f.hub.receive(f.room, f.conns["alice"], f.padded)
        stats = f.hub.stats
        assert stats.messages_in - before.messages_in == 2
        assert stats.updates_in - before.updates_in == 2
        assert stats.deliveries - before.deliveries == 4
        assert stats.bytes_out - before.bytes_out == 2 * (len(f.plain) + len(f.padded))


async def test_an_update_from_a_read_only_member_is_dropped(config: Config) -> None:
    """A read-only member's update is neither applied, relayed nor refused with an error."""
    async with _framing(config) as f:
        f.hub.receive(f.room, f.conns["reader"], f.plain)
        assert f.room.seq == 0
        assert all(wire.frames == [] for wire in f.wires.values())


async def test_a_member_over_its_update_rate_is_refused(config: Config) -> None:
    """With its bucket empty, a member's next update raises RateLimited and is not applied."""
    async with _framing(config) as f:
        f.conns["bob"].bucket = TokenBucket(1.0, 1.0, time.monotonic())
        f.hub.receive(f.room, f.conns["bob"], f.plain)
        with pytest.raises(RateLimited):
            f.hub.receive(f.room, f.conns["bob"], f.padded)
        assert f.room.seq == 1


async def test_a_malformed_update_is_refused_whole(config: Config) -> None:
    """An update with trailing bytes raises ProtocolError: nothing applied, nothing relayed."""
    async with _framing(config) as f:
        with pytest.raises(ProtocolError):
            f.hub.receive(f.room, f.conns["alice"], f.plain + b"\x00")
        assert f.room.seq == 0
        assert all(wire.frames == [] for wire in f.wires.values())


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
