"""Several server nodes serving the same rooms, relayed through Redis pub/sub.

Each node publishes what its own clients send to a room (document updates, awareness)
on the room's channel, and applies and forwards to its own members what other nodes
publish there. The database stays the one source of truth: every node stores only what
its own clients sent, numbered at commit time (``Store.append(seq=None)``), so an update
is stored exactly once whichever node received it.

Why pub/sub and not streams: relaying is ephemeral and must be fast; durability is the
database's job. A node that misses messages (Redis restarted, a late subscription) does
not need Redis to replay them: it re-reads the room from the database and sends its
members what they lack (``Hub.resync_all``). Streams would add trimming and consumer
bookkeeping to get a replay we do not need.

When Redis is down, nodes keep serving their local members (publishing is dropped and
counted), keep storing, and catch up from the database when Redis returns.

Nodes announce themselves with a key that expires (``collab:node:<id>``, refreshed every
few seconds); when a node's key is gone, the others remove the awareness states of its
clients, so a killed node's cursors disappear everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

import redis.asyncio as redis
from hiredis import pack_command
from redis import __version__ as REDIS_VERSION
from redis.asyncio.connection import Connection
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from collab.relay.tasks import reraise_cancellation, stop_tasks

__all__ = ["Cluster"]

log = logging.getLogger(__name__)

_PREFIX = "collab:room:"
_NODE_KEY = "collab:node:"
_NODE_TTL = 10  # seconds a node counts as alive without refreshing its key
_HEARTBEAT = 3.0
_QUEUE_LIMIT = 100_000
_BACKOFF_MAX = 5.0
_STOP_TIMEOUT = 2.0  # seconds each step of stop() may take with Redis gone

_PUBLISH = b"PUBLISH"
# hiredis's stub types the command as a 1-tuple; it takes any length.
_pack: Callable[[tuple[bytes, ...]], bytes] = pack_command  # type: ignore[assignment]

OnMessage = Callable[[str, str, bytes], None]  # room, node id, message


async def _publisher(client: redis.Redis) -> Connection:
    """A connection of its own for publishing, on which Redis sends no replies."""
    connection: Connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    await connection.connect()  # type: ignore[no-untyped-call]
    await connection.send_command("CLIENT", "REPLY", "OFF")
    return connection


async def _discard(connection: Connection) -> None:
    with contextlib.suppress(RedisError, OSError):
        await connection.disconnect()


class Cluster:
    """The Redis side of one node.

    Args:
        url: the Redis URL (``redis://host:port/db``).
        node_id: this node's id (16 hex characters).
        on_message: called with (room, origin node, message) for each message another
            node published to a room this node subscribes to.
        on_reconnect: called after the subscription was re-established (rooms may have
            missed messages meanwhile).
        on_node_gone: called with a node id whose liveness key expired.
    """

    def __init__(
        self,
        url: str,
        node_id: str,
        on_message: OnMessage,
        on_reconnect: Callable[[], None],
        on_node_gone: Callable[[str], None],
    ) -> None:
        self.url = url
        self.node_id = node_id
        self._node = node_id.encode()
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._on_node_gone = on_node_gone
        self._client: redis.Redis | None = None
        self._pubsub: redis.client.PubSub | None = None
        self._rooms: set[str] = set()
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribing: set[asyncio.Task[None]] = set()
        self._peers: set[str] = set()  # other nodes seen in messages
        self.connected = False
        self.published = 0
        self.dropped = 0
        self.received = 0

    async def start(self) -> None:
        """Connect (or keep trying in the background) and start relaying."""
        self._client = redis.Redis.from_url(
            self.url,
            socket_timeout=5,
            socket_connect_timeout=5,
            # Given, so that no new connection reads the package metadata from disk (a
            # blocking stat in the event loop, which redis-py does by default).
            driver_info=DriverInfo(lib_version=REDIS_VERSION),
        )
        for coro in (self._subscribe_loop(), self._publish_loop(), self._heartbeat_loop()):
            self._tasks.append(asyncio.create_task(coro))

    async def stop(self) -> None:
        await stop_tasks([*self._tasks, *self._unsubscribing])
        self._tasks.clear()
        if self._client is not None:
            # Bounded: Redis may be down, and redis-py retries a failed command itself.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await self._client.delete(_NODE_KEY + self.node_id)
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    if self._pubsub is not None:
                        await self._pubsub.aclose()
                    await self._client.aclose()

    async def subscribe(self, room: str) -> None:
        """Start receiving ``room``'s messages (before loading it, so none are missed)."""
        self._rooms.add(room)
        if self._pubsub is not None and self.connected:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.subscribe(_PREFIX + room)

    def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        pubsub = self._pubsub
        if pubsub is not None and self.connected:
            task = asyncio.create_task(self._unsubscribe(pubsub, _PREFIX + room))
            self._unsubscribing.add(task)  # a reference, so the task is not collected
            task.add_done_callback(self._unsubscribing.discard)

    def publish(self, room: str, message: bytes) -> None:
        """Queue ``message`` for the other nodes; never waits. Dropped while Redis is down."""
        if not self.connected:
            self.dropped += 1
            return
        if len(self._outbox) >= _QUEUE_LIMIT:
            self._outbox.popleft()
            self.dropped += 1
        self._outbox.append(((_PREFIX + room).encode(), self._node + message))
        self._wakeup.set()

    @staticmethod
    async def _unsubscribe(pubsub: redis.client.PubSub, channel: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.unsubscribe(channel)

    async def _subscribe_loop(self) -> None:
        assert self._client is not None
        backoff = 0.1
        first = True
        while True:
            try:
                pubsub = self._client.pubsub()
                # Publish the connection first, so rooms loaded while we subscribe go
                # straight to it; subscribing twice to a channel is harmless.
                self._pubsub = pubsub
                self.connected = True
                await pubsub.subscribe(*(_PREFIX + r for r in self._rooms), _PREFIX + "\x00")
                backoff = 0.1
                if not first:
                    log.warning("redis is back: catching rooms up from the database")
                    self._on_reconnect()
                first = False
                while True:
                    # The raw reply, not get_message(timeout=1): that wraps every read in
                    # a timeout and builds a dict, twice the CPU of the read itself. (hiredis
                    # answers a list subclass, PushNotification.)
                    reply = await pubsub.parse_response(block=True)
                    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                        self._dispatch(reply[1], reply[2])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                reraise_cancellation()
                if self.connected or first:
                    log.warning("redis unavailable (%s): serving local members only", exc)
                self.connected = False
                first = False
                self._outbox.clear()
                self._pubsub = None
                await asyncio.sleep(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        node = data[:16]
        if node == self._node or len(data) <= 16:
            return
        self.received += 1
        origin = node.decode("ascii", "replace")
        self._peers.add(origin)
        room = channel.decode("utf-8", "surrogateescape")[len(_PREFIX) :]
        self._on_message(room, origin, data[16:])

    async def _publish_loop(self) -> None:
        publisher: Connection | None = None
        try:
            while True:
                reraise_cancellation()  # redis-py can swallow one inside a command
                await self._wakeup.wait()
                self._wakeup.clear()
                client = self._client
                if client is None or not self._outbox:
                    continue
                batch = list(self._outbox)
                self._outbox.clear()
                try:
                    if publisher is None:
                        publisher = await _publisher(client)
                    # One write for the whole batch, packed by hiredis, and no replies to
                    # read (CLIENT REPLY OFF): a redis-py pipeline cost 100 us of CPU per
                    # single PUBLISH, this about a quarter of that, less in batches.
                    await publisher.send_packed_command(
                        b"".join([_pack((_PUBLISH, c, p)) for c, p in batch]),
                        check_health=False,
                    )
                    self.published += len(batch)
                except (RedisError, OSError) as exc:
                    reraise_cancellation()
                    self.dropped += len(batch)
                    log.debug("publish failed: %s", exc)
                    if publisher is not None:
                        await _discard(publisher)
                        publisher = None
        finally:
            if publisher is not None:
                await _discard(publisher)

    async def _heartbeat_loop(self) -> None:
        assert self._client is not None
        while True:
            try:
                await self._client.set(_NODE_KEY + self.node_id, b"1", ex=_NODE_TTL)
                for peer in list(self._peers):
                    if not await self._client.exists(_NODE_KEY + peer):
                        self._peers.discard(peer)
                        log.info("node %s is gone: removing its clients' awareness", peer)
                        self._on_node_gone(peer)
            except (RedisError, OSError) as exc:
                reraise_cancellation()
                log.debug("heartbeat failed: %s", exc)
            reraise_cancellation()
            await asyncio.sleep(_HEARTBEAT)
