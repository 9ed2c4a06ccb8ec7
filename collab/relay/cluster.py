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
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from collab.relay.subscription import Subscription, connect
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
_CONFIRM_TIMEOUT = 2.0  # seconds a load waits for Redis to confirm its subscription

_PUBLISH = b"PUBLISH"
# hiredis's stub types the command as a 1-tuple; it takes any length.
_pack: Callable[[tuple[bytes, ...]], bytes] = pack_command  # type: ignore[assignment]

OnMessage = Callable[[str, str, bytes], None]  # room, node id, message


def _ignore(channel: bytes, message: bytes) -> None:
    pass  # the publishing connection receives nothing (CLIENT REPLY OFF)


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
        self._subscription: Subscription | None = None
        self._channels: dict[bytes, str] = {}  # room by channel, for the rooms loaded here
        self._origins: dict[bytes, str] = {}  # node id by prefix, decoded once
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._publisher: Subscription | None = None
        self._flushing = False  # a flush is scheduled for this turn of the event loop
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._peers: set[str] = set()  # other nodes seen in messages
        self.connected = False
        self.published = 0
        self.dropped = 0
        self.received = 0
        self._own = 0  # own publications dropped on earlier connections

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
        await stop_tasks(self._tasks)
        self._tasks.clear()
        if self._client is not None:
            # Bounded: Redis may be down, and redis-py retries a failed command itself.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await self._client.delete(_NODE_KEY + self.node_id)
            if self._subscription is not None:
                self._subscription.close()
                self._subscription = None
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await self._client.aclose()

    @property
    def own_dropped(self) -> int:
        """This node's own publications Redis sent back, dropped unread."""
        current = self._subscription
        return self._own + (0 if current is None else current.own)

    async def subscribe(self, room: str) -> None:
        """Start receiving ``room``'s messages (before loading it, so none are missed).

        Returns once Redis confirmed the subscription (or after a couple of seconds, or at
        once while Redis is down: the load's catch-ups cover what this misses).
        """
        channel = (_PREFIX + room).encode("utf-8", "surrogateescape")
        self._channels[channel] = room
        subscription = self._subscription
        if subscription is None:
            return
        with contextlib.suppress(OSError, TimeoutError):
            confirmed = subscription.subscribe([channel])
            if confirmed is not None:
                async with asyncio.timeout(_CONFIRM_TIMEOUT):
                    await confirmed

    def unsubscribe(self, room: str) -> None:
        channel = (_PREFIX + room).encode("utf-8", "surrogateescape")
        self._channels.pop(channel, None)
        if self._subscription is not None:
            self._subscription.unsubscribe(channel)

    def publish(self, room: str, message: bytes) -> None:
        """Queue ``message`` for the other nodes; never waits. Dropped while Redis is down."""
        if not self.connected:
            self.dropped += 1
            return
        if len(self._outbox) >= _QUEUE_LIMIT:
            self._outbox.popleft()
            self.dropped += 1
        self._outbox.append(((_PREFIX + room).encode(), self._node + message))
        if not self._flushing:
            # Once per turn of the event loop: what several messages published meanwhile
            # (a burst of updates read at once) goes out in one write.
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        publisher = self._publisher
        if not self._outbox:
            return
        if publisher is None or not publisher.open:
            self._wakeup.set()  # the publish loop connects, then flushes
            return
        batch = list(self._outbox)
        self._outbox.clear()
        try:
            # One write for the whole batch, packed by hiredis, and no replies to read
            # (CLIENT REPLY OFF), straight on the transport: no task to wake, no timeout
            # or drain around it (see docs/performance.md, "Cluster: the cross-node hop").
            publisher.write(b"".join([_pack((_PUBLISH, c, p)) for c, p in batch]))
            self.published += len(batch)
        except OSError as exc:
            self.dropped += len(batch)
            log.debug("publish failed: %s", exc)
            publisher.close()
            self._publisher = None

    async def _subscribe_loop(self) -> None:
        backoff = 0.1
        first = True
        while True:
            subscription = None
            try:
                subscription = await connect(self.url, self._node, self._dispatch)
                # Published first, so rooms loaded while we subscribe go straight to it;
                # subscribing twice to a channel is harmless.
                self._subscription = subscription
                self.connected = True
                subscription.subscribe(list(self._channels))
                backoff = 0.1
                if not first:
                    log.warning("redis is back: catching rooms up from the database")
                    self._on_reconnect()
                first = False
                await subscription.closed  # messages are handled as they arrive
            except asyncio.CancelledError:
                if subscription is not None:
                    subscription.close()
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                reraise_cancellation()
                if self.connected or first:
                    log.warning("redis unavailable (%s): serving local members only", exc)
                if subscription is not None:
                    self._own += subscription.own
                    subscription.close()
                self.connected = False
                first = False
                self._outbox.clear()
                self._subscription = None
                await asyncio.sleep(backoff)
                backoff = min(_BACKOFF_MAX, backoff * 2)

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        """Another node's message on ``channel`` (its own were dropped already)."""
        room = self._channels.get(channel)
        if room is None or len(data) <= 16:
            return  # unsubscribed meanwhile, or no message after the prefix
        self.received += 1
        prefix = data[:16]
        origin = self._origins.get(prefix)
        if origin is None:
            origin = prefix.decode("ascii", "replace")
            if len(self._origins) < 4096:  # nodes come and go; ids are never reused
                self._origins[prefix] = origin
        self._peers.add(origin)
        self._on_message(room, origin, data[16:])

    async def _publish_loop(self) -> None:
        """Keep the publishing connection: open it when there is something to publish and
        it is gone (at start, after Redis came back); ``_flush`` does the writing."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                if not self._outbox or (self._publisher is not None and self._publisher.open):
                    continue
                try:
                    publisher = await connect(self.url, self._node, _ignore)
                    publisher.write(_pack((b"CLIENT", b"REPLY", b"OFF")))
                except (OSError, TimeoutError) as exc:
                    reraise_cancellation()
                    self.dropped += len(self._outbox)
                    self._outbox.clear()
                    log.debug("publish failed: %s", exc)
                    continue
                self._publisher = publisher
                self._flush()
        finally:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None

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
