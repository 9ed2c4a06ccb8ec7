"""The Redis connections of a node read and written without redis-py
(``collab.relay.subscription``): replies cut anywhere are read whole, own publications are
only counted, and a password in the URL is sent. Through ``Cluster`` and a real Redis:
``test_cluster_relay.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as redis

from collab.relay.cluster import Cluster
from collab.relay.subscription import Subscription
from tests.conftest import eventually
from tests.relay.test_cluster import room
from tests.relay.test_cluster_relay import Received, _channel, _cluster, _ignore
from tests.services import RedisProcess, require_redis


def _resp(*items: bytes) -> bytes:
    """A RESP2 array of bulk strings, as Redis writes a pub/sub message."""
    out = b"*%d\r\n" % len(items)
    for item in items:
        out += b"$%d\r\n%s\r\n" % (len(item), item)
    return out


async def test_replies_cut_at_every_byte_are_read_whole() -> None:
    """The bytes of a subscription confirmation, an own publication and two other nodes'
    messages, cut in two at every position: the two messages reach the callback whole and
    in order, the own one is only counted, whatever the cut."""
    own, peer = b"a" * 16, b"b" * 16
    stream = (
        _resp(b"subscribe", b"collab:room:r", b"1")
        + _resp(b"message", b"collab:room:r", own + b"mine")
        + _resp(b"message", b"collab:room:r", peer + b"\r\n$3\r\n")  # framing bytes inside
        + _resp(b"message", b"collab:room:r", peer + b"x" * 300)
    )
    for cut in range(len(stream) + 1):
        got: list[tuple[bytes, bytes]] = []
        sub = Subscription(own, lambda channel, data: got.append((channel, data)))
        sub.data_received(stream[:cut])
        sub.data_received(stream[cut:])
        assert got == [
            (b"collab:room:r", peer + b"\r\n$3\r\n"),
            (b"collab:room:r", peer + b"x" * 300),
        ], cut
        assert sub.own == 1


async def test_a_redis_with_a_password_is_subscribed_to_with_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The subscribing connection authenticates with the URL's password; a wrong one keeps
    the node disconnected (serving its own members) instead of failing."""
    await require_redis()
    got: Received = []
    server = RedisProcess(tmp_path, password="s3cret")
    await server.start()
    url = server.url
    try:
        async with _cluster(url, "g" * 16, got) as cluster:
            name = room()
            await cluster.subscribe(name)
            publisher = redis.Redis.from_url(url)
            try:
                await publisher.publish(_channel(name), b"h" * 16 + b"authenticated")
            finally:
                await publisher.aclose()
            await eventually(lambda: got == [(name, "h" * 16, b"authenticated")])
        wrong = Cluster(url.replace("s3cret", "wrong"), "i" * 16, _ignore, _ignore, _ignore)
        await wrong.start()
        try:
            await eventually(lambda: "refused the credentials" in caplog.text)
            assert not wrong.connected
        finally:
            await wrong.stop()
    finally:
        await server.stop()
