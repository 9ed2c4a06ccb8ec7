"""One client socket's outbound side: a bounded queue and one writer task.

Fan-out calls ``Connection.send``, which never awaits and never blocks. When nothing is
queued and the socket's kernel-side buffer has room, the frame is written to the
transport right there (one ``write`` call, no task switch: this is most deliveries, and
it is what keeps the relay's CPU per delivery at the level of a bare relay). Otherwise
the bytes join the queue and the writer task sends them, awaiting the socket's flow
control. A client that cannot keep up fills its queue and is closed with 1013 instead of
slowing down the room (websockets' "per-client queues" pattern). Order is kept because a
direct write only happens when the queue is empty and the writer is idle.

The socket is anything with aiohttp's ``send_bytes`` / ``close`` coroutines; this module
does not import aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from typing import Protocol

from collab.errors import CloseCode, SlowConsumer

__all__ = ["Connection", "Socket"]

log = logging.getLogger(__name__)

# Direct writes stop when this much is already waiting in the transport's buffer; past it
# the writer task takes over and awaits the socket's drain.
_HIGH_WATER = 64 * 1024
# Larger messages always take the writer's path (aiohttp's frame writer, with flow control).
_DIRECT_MAX = 16 * 1024
_PACK_LEN2 = struct.Struct("!BBH").pack


def _binary_frame(data: bytes) -> bytes:
    # An unmasked, unfragmented server-to-client binary frame (RFC 6455 section 5.2): the
    # same bytes aiohttp's writer produces with compression off, which is how collab
    # configures its sockets.
    length = len(data)
    if length < 126:
        return bytes((0x82, length)) + data
    return _PACK_LEN2(0x82, 126, length) + data


class Socket(Protocol):
    """The part of ``aiohttp.web.WebSocketResponse`` a Connection uses."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool: ...


class Transport(Protocol):
    """The part of ``asyncio.WriteTransport`` used for direct writes."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...


class Connection:
    """A client connection: identity plus a bounded outbound queue.

    Args:
        socket: where the bytes go.
        id: the server's id for this connection (stored with each update it sends).
        author: who the client says it is, if it said (stored with each update).
        max_bytes: queued bytes beyond which the connection is closed with 1013. One
            message larger than that is still accepted into an empty queue, so a big
            document can always be sent.
    """

    __slots__ = (
        "_busy",
        "_closing",
        "_queue",
        "_queued_bytes",
        "_socket",
        "_transport",
        "_waiter",
        "_writer",
        "author",
        "close_code",
        "id",
        "max_bytes",
        "read_only",
    )

    def __init__(
        self,
        socket: Socket,
        id: str,
        *,
        author: str | None = None,
        max_bytes: int,
        transport: Transport | None = None,
    ) -> None:
        self._socket = socket
        self._transport = transport
        self._busy = False  # the writer task is sending
        self.id = id
        self.author = author
        self.read_only = False
        self.max_bytes = max_bytes
        self.close_code: int | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._closing = False
        self._waiter: asyncio.Future[None] | None = None
        self._writer = asyncio.create_task(self._write_loop(), name=f"collab-writer-{id}")

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"

    @property
    def closing(self) -> bool:
        return self._closing

    def send(self, data: bytes) -> None:
        """Queue ``data`` for this client; close it with 1013 if it is too far behind."""
        if self._closing:
            return
        transport = self._transport
        if (
            transport is not None
            and not self._queue
            and not self._busy
            and len(data) <= _DIRECT_MAX
            and transport.get_write_buffer_size() < _HIGH_WATER
            and not transport.is_closing()
        ):
            transport.write(_binary_frame(data))
            return
        if self._queue and self._queued_bytes + len(data) > self.max_bytes:
            self.close(SlowConsumer("client too slow").close_code, "client too slow")
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, code: int, reason: str = "") -> None:
        """Drop what is queued and close the socket with ``code`` (in the background)."""
        if self._closing:
            return
        self._closing = True
        self.close_code = code
        self._queue.clear()
        self._queued_bytes = 0
        self._writer.cancel()
        # The close handshake runs in its own task so fan-out never waits for it; the
        # server's receive loop ends when it completes.
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def stop(self) -> None:
        """Stop the writer task; called once the client is gone."""
        self._closing = True
        self._writer.cancel()
        # wait() rather than await: the writer's CancelledError is expected, and must not
        # be confused with a cancellation of the caller.
        await asyncio.wait([self._writer])

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self._socket.close(code=code, message=reason.encode())
        except ConnectionError:
            log.debug("%r: socket already gone while closing with %d", self, code)

    async def _write_loop(self) -> None:
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._busy = True
                while queue:
                    data = queue.popleft()
                    self._queued_bytes -= len(data)
                    await self._socket.send_bytes(data)
                self._busy = False
                if self._closing:
                    return
                self._waiter = loop.create_future()
                await self._waiter
                self._waiter = None
        except ConnectionError:
            # The peer went away mid-send; the receive loop sees the close and cleans up.
            log.debug("%r: connection lost while sending", self)
            self._closing = True
            self.close_code = CloseCode.GOING_AWAY
