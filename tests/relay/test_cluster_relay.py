"""The Redis side of a node (``collab.relay.cluster``) against a real Redis: own
publications never reach the dispatch, a subscription is confirmed before a load reads
the database, messages of every size arrive whole, and bytes that no node published on a
room channel cannot crash or change anything. Whole nodes: ``test_cluster.py``; the
connections themselves: ``test_subscription.py``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as redis
from pycrdt import Doc, Text

from collab.relay.cluster import Cluster
from tests.conftest import ROOT, editor, eventually, raw_client
from tests.relay.test_cluster import _rows, nodes, room
from tests.services import require_redis

Received = list[tuple[str, str, bytes]]

# The update that made yrs panic and poisoned a room (issue 10), as a y-websocket message:
# a client id past 2**53, a GC of 2**32 clocks, a delete-set range at clock 2**31.
POISON = bytes.fromhex(
    "0002300102ffffffffffffff0f00050107636f6e74656e74077b2278223a317d0080808080100"
    "17f0180808080088080808008"
)


def _ignore(*_: object) -> None:
    pass


@asynccontextmanager
async def _cluster(url: str, node_id: str, into: Received) -> AsyncIterator[Cluster]:
    cluster = Cluster(url, node_id, lambda *m: into.append(m), _ignore, _ignore)
    await cluster.start()
    try:
        await eventually(lambda: cluster.connected, what="the subscription connected")
        yield cluster
    finally:
        await cluster.stop()


def _channel(name: str) -> str:
    return "collab:room:" + name


async def test_own_publications_never_reach_the_dispatch() -> None:
    """Two nodes publish on a room both subscribe to: each hands on only the other's
    messages, and counts its own, which Redis sends back, as dropped."""
    url = await require_redis()
    name = room()
    got_a: Received = []
    got_b: Received = []
    async with (
        _cluster(url, "a" * 16, got_a) as a,
        _cluster(url, "b" * 16, got_b) as b,
    ):
        await a.subscribe(name)
        await b.subscribe(name)
        for i in range(50):
            a.publish(name, b"from a %d" % i)
            b.publish(name, b"from b %d" % i)
        await eventually(lambda: len(got_a) == len(got_b) == 50, what="every message")
        await eventually(lambda: a.own_dropped == b.own_dropped == 50, what="own ones back")
        assert got_a == [(name, "b" * 16, b"from b %d" % i) for i in range(50)]
        assert got_b == [(name, "a" * 16, b"from a %d" % i) for i in range(50)]
        assert a.received == b.received == 50


async def test_a_subscription_is_confirmed_before_subscribe_returns() -> None:
    """What is published right after ``subscribe`` returned is received: Redis had
    registered the subscription (a load reads the database only after that)."""
    url = await require_redis()
    got: Received = []
    publisher = redis.Redis.from_url(url)
    try:
        async with _cluster(url, "c" * 16, got) as cluster:
            names = [room() for _ in range(20)]
            for name in names:
                await cluster.subscribe(name)
                await publisher.publish(_channel(name), b"d" * 16 + b"hello")
            await eventually(lambda: len(got) == 20, what="every first message")
            assert got == [(name, "d" * 16, b"hello") for name in names]
            cluster.unsubscribe(names[0])
            await publisher.publish(_channel(names[0]), b"d" * 16 + b"late")
            await publisher.publish(_channel(names[1]), b"d" * 16 + b"after")
            await eventually(lambda: len(got) == 21, what="the message after")
            assert got[-1] == (names[1], "d" * 16, b"after")  # none for an unsubscribed room
    finally:
        await publisher.aclose()


async def test_messages_split_anywhere_and_batched_are_read_whole() -> None:
    """Messages of every size, from an empty one past the node prefix to 1 MiB, published
    in a burst, arrive whole and in order (Redis's replies cut across reads anywhere)."""
    url = await require_redis()
    name = room()
    got: Received = []
    sizes = [0, 1, 2, 15, 16, 17, 100, 4095, 4096, 65536, 1 << 20, *range(300, 340)]
    payloads = [os.urandom(n) for n in sizes]
    publisher = redis.Redis.from_url(url)
    try:
        async with _cluster(url, "e" * 16, got) as cluster:
            await cluster.subscribe(name)
            async with publisher.pipeline(transaction=False) as pipe:
                for payload in payloads:
                    pipe.publish(_channel(name), b"f" * 16 + payload)
                await pipe.execute()
            # A message with nothing after the node prefix is not a message: dropped.
            expected = [(name, "f" * 16, p) for p in payloads if p]
            await eventually(lambda: len(got) == len(expected), what="every message")
            assert got == expected
    finally:
        await publisher.aclose()


def _hostile(live: str) -> list[bytes]:
    """Messages no node published: garbage, the poison update, truncations, with an unknown
    node's prefix and with a live node's (forged)."""
    bodies = [
        POISON,
        POISON[:20],
        b"\x00\x02",
        b"\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x01\xff\xff\xff\xff\x0f",  # awareness with an absurd length
        b"\x03",
        b"\xff" * 64,
        os.urandom(200),
    ]
    prefixes = [b"0123456789abcdef", live.encode(), b"\xff" * 16]
    return [p + body for p in prefixes for body in bodies] + [b"", b"short"]


async def _resets(session: aiohttp.ClientSession, port: int) -> float:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith("collab_rooms_reset"):
            return float(line.split()[-1])
    raise AssertionError("no collab_rooms_reset metric")


async def test_hostile_bytes_on_a_room_channel_change_nothing(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Garbage and a yrs-poisoning update published on a room's channel by something that is
    no node (also forging a live node's id) reach no member, reset no room, crash no node
    and store nothing; the editors on both nodes carry on and converge."""
    url = await require_redis()
    name = room()
    client = redis.Redis.from_url(url)
    before = set(await client.keys("collab:node:*"))
    async with (
        nodes(tmp_path, 2) as (db, (one, two)),
        editor(session, one.url(name)) as ann,
        editor(session, two.url(name)) as bob,
        raw_client(session, one.url(name)) as watcher,
    ):
        await watcher.handshake()
        ann.text += "before;"
        await eventually(lambda: str(bob) == "before;")
        ours = set(await client.keys("collab:node:*")) - before  # these two nodes' ids
        key = min(ours)
        forged = (key.decode() if isinstance(key, bytes) else key).removeprefix("collab:node:")
        hostile = _hostile(forged)
        try:
            for message in hostile:
                await client.publish(_channel(name), message)
        finally:
            await client.aclose()
        bob.text += "after"
        await eventually(lambda: str(ann) == str(bob) == "before;after")
        for node in (one, two):
            assert node.process.returncode is None
            assert await _resets(session, node.port) == 0
        seen = []
        with contextlib.suppress(TimeoutError):
            while True:  # everything node one sent its member, up to a quiet half second
                seen.append(await watcher.recv_bytes(timeout=0.5))
        assert seen, "bob's edit reached the member on node one"
        assert not {m[16:] for m in hostile} & set(seen)

        async def stored() -> bool:
            return len(await _rows(db, name)) == 2

        await eventually(stored, what="both edits committed")
        late: Doc[Any] = Doc()
        for _, data in await _rows(db, name):
            late.apply_update(data)
        assert str(late.get(ROOT, type=Text)) == "before;after"
