"""Room lifecycle and persistence through a running server: restarts, unloading,
checkpoints, slow consumers, an overloaded store, dead connections."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import aiohttp
from pycrdt import Doc, Text

from collab.config import Config
from collab.errors import CloseCode
from collab.http.state import HUB
from collab.sync.protocol import AwarenessEntry, decode, encode_awareness, encode_update
from tests.conftest import ROOT, editor, eventually, raw_client, start_server


def _rows(db: str, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


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
                for _ in range(400):  # 20 MB through a reader that reads nothing
                    alice.text += chunk
                    if any(m.close_code for m in room.members):
                        break
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


async def test_update_messages_take_the_same_rules_with_or_without_decode(
    config: Config,
) -> None:
    """``Hub.receive`` reads a plainly framed Update without ``decode`` (its hot path) and
    treats it exactly as the same update framed otherwise: relayed byte for byte to the
    others, stored with its author, counted; dropped from a read-only member; rate
    limited; refused whole when malformed."""
    # Imported here, not at the top: this test was appended to a file others edit too.
    import dataclasses
    import time

    import pytest

    from collab.config import database_url
    from collab.errors import ProtocolError, RateLimited
    from collab.relay.connection import Connection, binary_frame
    from collab.relay.hub import Hub
    from collab.relay.limits import TokenBucket
    from collab.store import Store

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
        plain = encode_update(updates[0])
        assert plain[:2] == b"\x00\x02"
        # The same message with its type as a two-byte varint: only decode() reads it.
        padded = b"\x80" + encode_update(updates[1])
        assert decode(padded) == decode(encode_update(updates[1]))
        before = dataclasses.replace(hub.stats)
        hub.receive(room, conns["alice"], plain)
        hub.receive(room, conns["alice"], padded)
        hub.receive(room, conns["reader"], encode_update(updates[2]))  # read-only: dropped
        with pytest.raises(ProtocolError):
            hub.receive(room, conns["alice"], encode_update(updates[2]) + b"\x00")
        assert wires["alice"].frames == []
        relayed = [binary_frame(plain), binary_frame(padded)]
        assert wires["bob"].frames == relayed and wires["reader"].frames == relayed
        stats = hub.stats
        assert stats.messages_in - before.messages_in == 4
        assert stats.updates_in - before.updates_in == 2
        assert stats.deliveries - before.deliveries == 4
        assert stats.bytes_out - before.bytes_out == 2 * (len(plain) + len(padded))
        assert room.seq == 2 and str(room.doc.get(ROOT, type=Text)) == "ab"
        conns["bob"].bucket = TokenBucket(1.0, 1.0, time.monotonic())
        hub.receive(room, conns["bob"], encode_update(updates[2]))
        with pytest.raises(RateLimited):
            hub.receive(room, conns["bob"], encode_update(updates[3]))
        assert room.seq == 3
        await store.flush()
        rows = await asyncio.to_thread(
            _rows, config.db, "SELECT seq, author, data FROM updates ORDER BY seq"
        )
        assert rows == [(1, "alice", updates[0]), (2, "alice", updates[1]), (3, "bob", updates[2])]
    finally:
        await hub.close()
