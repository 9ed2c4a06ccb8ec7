"""The Redis connections of one node, without redis-py (``collab.relay.cluster``).

``Subscription`` is an asyncio protocol on the node's subscribing connection: the bytes
Redis sends are fed to a hiredis reader as they arrive, and every message they complete is
handled in the same call. A node receives its own publications back (Redis pub/sub has no
"not to myself"); they are dropped by their 16-byte node prefix, before anything but
hiredis's reply has been built for them. Other nodes' messages go to the callback.

Why not redis-py's ``PubSub``: its ``parse_response`` cost more than applying the message
(an async lock, a timeout, a retry wrapper, a push handler that looks up a logger, for
each message, one read per message), and a node spent about half of that on its own
publications. See ``docs/performance.md`` ("Cluster: the cross-node hop").

The node publishes on a second connection of the same kind, after ``CLIENT REPLY OFF``:
``Subscription.write`` puts a batch of packed ``PUBLISH``es on the socket in one call,
where redis-py's ``send_packed_command`` wrapped each write in timeouts and a drain.

This module only reads and writes Redis's protocol; connecting, retrying and what a
message means are the cluster's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import hiredis
from hiredis import pack_command

__all__ = ["Subscription", "connect"]

log = logging.getLogger(__name__)

_MESSAGE = b"message"
_SUBSCRIBE = b"subscribe"
_CONNECT_TIMEOUT = 5.0
_WRITE_LIMIT = 8 << 20  # bytes written but not yet sent that make a publisher give up

# hiredis's stub types the command as a 1-tuple; it takes any length.
_pack: Callable[[tuple[bytes | str, ...]], bytes] = pack_command  # type: ignore[assignment]

OnMessage = Callable[[bytes, bytes], None]  # channel, message (with its node prefix)


class Subscription(asyncio.Protocol):
    """One subscribing connection to Redis.

    Args:
        node: this node's prefix (16 bytes): messages starting with it are dropped.
        on_message: called with (channel, message) for every other message, in order.
    """

    def __init__(self, node: bytes, on_message: OnMessage) -> None:
        self._node = node
        self._on_message = on_message
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._replies: list[asyncio.Future[Any]] = []  # commands other than (UN)SUBSCRIBE
        self._confirming: dict[bytes, list[asyncio.Future[None]]] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.own = 0  # own publications dropped
        self.failed = 0  # messages whose handling raised

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        node = self._node
        on_message = self._on_message
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(ConnectionError(f"redis protocol error: {exc}"))
                return
            if reply is False:
                return
            # The hot path first: a published message, as a 3-item array.
            if type(reply) is list and len(reply) == 3 and reply[0] == _MESSAGE:
                payload = reply[2]
                if payload.startswith(node):
                    self.own += 1
                    continue
                try:
                    on_message(reply[1], payload)
                except Exception:  # one message's failure never stops the others
                    self.failed += 1
                    log.exception("handling a message on %r failed", reply[1])
                continue
            self._other(reply)

    def _other(self, reply: object) -> None:
        if type(reply) is list and len(reply) == 3 and reply[0] == _SUBSCRIBE:
            for waiter in self._confirming.pop(reply[1], ()):
                if not waiter.done():
                    waiter.set_result(None)
        elif type(reply) is list and reply and reply[0] in (b"unsubscribe", b"pong"):
            pass
        elif self._replies:
            answer = self._replies.pop(0)
            if not answer.done():
                answer.set_result(reply)
        elif isinstance(reply, hiredis.ReplyError):
            self._fail(ConnectionError(f"redis refused a subscription: {reply}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        error = exc or ConnectionError("redis closed the connection")
        if not self.closed.done():
            self.closed.set_exception(error)
            self.closed.exception()  # retrieved: nobody may be waiting yet
        for waiter in [*self._replies, *(w for ws in self._confirming.values() for w in ws)]:
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()
        self._replies.clear()
        self._confirming.clear()

    def _fail(self, exc: Exception) -> None:
        log.warning("%s", exc)
        if self._transport is not None:
            self._transport.abort()  # connection_lost follows

    def _write(self, *args: bytes | str) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("not connected to redis")
        self._transport.write(_pack(args))

    async def command(self, *args: bytes | str) -> Any:
        """Send a command before subscribing (AUTH) and return its reply.

        Raises:
            ConnectionError: the connection is gone.
        """
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._write(*args)
        self._replies.append(waiter)
        return await waiter

    def subscribe(self, channels: Iterable[bytes]) -> asyncio.Future[None] | None:
        """Subscribe to ``channels``; the future completes once Redis confirmed the last.

        Raises:
            ConnectionError: the connection is gone.
        """
        channels = list(channels)
        if not channels:
            return None
        self._write(b"SUBSCRIBE", *channels)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirming.setdefault(channels[-1], []).append(waiter)
        return waiter

    def unsubscribe(self, channel: bytes) -> None:
        """Stop receiving ``channel``'s messages (quietly nothing when disconnected)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_pack((b"UNSUBSCRIBE", channel)))

    def write(self, packed: bytes) -> None:
        """Write commands already packed (the publishing connection's ``PUBLISH``es).

        Raises:
            ConnectionError: the connection is gone, or Redis has not read the last
                ``_WRITE_LIMIT`` bytes written (it is stuck: drop rather than buffer).
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionError("not connected to redis")
        if transport.get_write_buffer_size() > _WRITE_LIMIT:
            raise ConnectionError("redis is not reading what this node publishes")
        transport.write(packed)

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def connect(url: str, node: bytes, on_message: OnMessage) -> Subscription:
    """Open a subscribing connection to the Redis at ``url`` (``redis://``, ``rediss://``
    or ``unix://``, with a user name and password if it has them), authenticated.

    Raises:
        OSError: Redis cannot be reached or refused the credentials (``ConnectionError``).
        TimeoutError: no connection within a few seconds.
    """
    from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

    options = parse_url(url)
    kind = options.get("connection_class")
    loop = asyncio.get_running_loop()

    def protocol() -> Subscription:
        return Subscription(node, on_message)

    async with asyncio.timeout(_CONNECT_TIMEOUT):
        if kind is UnixDomainSocketConnection:
            _, sub = await loop.create_unix_connection(protocol, options["path"])
        else:
            ssl = None
            if kind is SSLConnection:
                import ssl as _ssl

                ssl = _ssl.create_default_context()
            _, sub = await loop.create_connection(
                protocol, options.get("host", "localhost"), options.get("port", 6379), ssl=ssl
            )
        password = options.get("password")
        if password:
            username = options.get("username")
            credentials = (username, password) if username else (password,)
            reply = await sub.command(b"AUTH", *credentials)
            if isinstance(reply, hiredis.ReplyError):
                sub.close()
                raise ConnectionError(f"redis refused the credentials: {reply}")
    return sub
