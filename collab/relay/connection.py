"""One client socket's outbound side: a bounded queue and at most one writer task.

Fan-out calls ``Connection.send``, which never awaits and never blocks. When nothing is
queued and the socket's kernel-side buffer has room, the frame is written to the
transport right there (one ``write`` call, no task switch: this is most deliveries, and
it is what keeps the relay's CPU per delivery at the level of a bare relay). Otherwise
the bytes join the queue and a writer task, started for the occasion, sends them,
awaiting the socket's flow control. A client that cannot keep up fills its queue and is
closed with 1013 instead of slowing down the room (websockets' "per-client queues"
pattern). Order is kept because a direct write only happens while no writer task exists,
that is, when nothing is queued.

Keepalive costs nothing per message either: the server's receive loop counts each message
in ``received``, and one sweep per server (``server._keepalive``) compares that count with
the one it saw last time, pings the quiet connections (``ping``) and drops those that
stayed quiet after a ping (``abort``).

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
from collab.relay.limits import TokenBucket

__all__ = ["DIRECT_MAX", "Connection", "Socket", "binary_frame"]

log = logging.getLogger(__name__)

# Direct writes stop when this much is already waiting in the transport's buffer; past it
# the writer task takes over and awaits the socket's drain.
_HIGH_WATER = 64 * 1024
DIRECT_MAX = 16 * 1024
"""Messages up to this size may be written straight to the transport; larger ones always
take the writer's path (aiohttp's frame writer, with flow control). Fan-out builds a frame
only for messages up to this size, since one built for a larger message goes unused."""
_PACK_LEN2 = struct.Struct("!BBH").pack
_PACK_LEN3 = struct.Struct("!BBQ").pack
# An unmasked server-to-client ping with no payload (RFC 6455 section 5.5.2).
_PING_FRAME = b"\x89\x00"


def binary_frame(data: bytes) -> bytes:
    """The WebSocket frame that carries ``data`` to a client (see ``Connection.send``).

    An unmasked, unfragmented server-to-client binary frame (RFC 6455 section 5.2): the
    same bytes aiohttp's writer produces with compression off, which is how collab
    configures its sockets. The length takes one of three forms: 7 bits (< 126), 16 bits
    (< 65,536) or 64 bits. ``tests/test_connection.py`` checks every form and both sides
    of each boundary against aiohttp's own writer.
    """
    length = len(data)
    if length < 126:
        return bytes((0x82, length)) + data
    if length < 65536:
        return _PACK_LEN2(0x82, 126, length) + data
    return _PACK_LEN3(0x82, 127, length) + data


class Socket(Protocol):
    """The part of ``aiohttp.web.WebSocketResponse`` a Connection uses."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool: ...


class Transport(Protocol):
    """The part of ``asyncio.WriteTransport`` used for direct writes."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def is_closing(self) -> bool: ...

    def abort(self) -> None: ...


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
        "_closer",
        "awareness_bucket",
        "bucket",
        "_closing",
        "_queue",
        "_queued_bytes",
        "_socket",
        "_transport",
        "_writer",
        "author",
        "close_code",
        "id",
        "max_bytes",
        "pinged",
        "read_only",
        "received",
        "seen",
        "token_id",
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
        self.id = id
        self.author = author
        self.read_only = False
        self.token_id: str | None = None  # the id of the token it connected with, if any
        self.bucket: TokenBucket | None = None  # the update rate limit, if any
        self.awareness_bucket: TokenBucket | None = None  # the awareness rate limit, if any
        self.max_bytes = max_bytes
        self.close_code: int | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._closing = False
        # The writer task exists only while the queue is being drained: an idle
        # connection costs no task, and most sends never need one.
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        # Messages read from the client (any kind, pongs included). The server's receive
        # loop counts them; the keepalive sweep and latency sampling read the count.
        self.received = 0
        # Keepalive state, kept by the server's sweep: ``received`` as of the last sweep
        # (None until the server starts reading, so a slow room load cannot look like a
        # dead client), and whether a ping has gone unanswered since.
        self.seen: int | None = None
        self.pinged = False

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"

    @property
    def closing(self) -> bool:
        return self._closing

    def send(self, data: bytes, frame: bytes | None = None) -> None:
        """Send ``data`` to this client, now or via the queue; never waits.

        ``frame`` may carry ``binary_frame(data)`` already built: fan-out builds it once
        for all the members of a room.

        Closes the connection with 1013 when its queue would exceed ``max_bytes``.
        """
        if self._closing:
            return
        transport = self._transport
        if (
            self._writer is None
            and transport is not None
            and len(data) <= DIRECT_MAX
            and transport.get_write_buffer_size() < _HIGH_WATER
            and not transport.is_closing()
        ):
            transport.write(frame or binary_frame(data))
            return
        if self._queue and self._queued_bytes + len(data) > self.max_bytes:
            self.close(SlowConsumer("client too slow").close_code, "client too slow")
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain(), name=f"collab-writer-{self.id}")

    def ping(self) -> None:
        """Send a keepalive ping; never waits. Does nothing once closing.

        The two bytes go straight to the transport even when data is queued: a control
        frame may come between any two frames (RFC 6455 section 5.4), every frame reaches
        the transport whole (``send``'s direct writes and aiohttp's uncompressed
        ``send_frame`` never yield mid-frame), and a ping queued behind up to
        ``max_bytes`` of data would make a slow but live client look dead. Without a
        transport (the connection is already lost) nothing is sent.
        """
        transport = self._transport
        if self._closing or transport is None or transport.is_closing():
            return
        transport.write(_PING_FRAME)

    def abort(self, code: int) -> None:
        """Drop an unresponsive client: no close handshake, the transport is aborted.

        What is queued or still in the transport's buffer is discarded (the peer is not
        reading it). The server's receive loop then sees the connection lost and ends,
        and ``close_code`` records ``code`` (the server's sweep uses 1006, a code that
        is never sent on the wire).
        """
        if self._stop_sending(code) and self._transport is not None:
            self._transport.abort()

    def close(self, code: int, reason: str = "") -> None:
        """Drop what is queued and close the socket with ``code`` (in the background)."""
        if self._stop_sending(code):
            # The close handshake runs in its own task so fan-out never waits for it; the
            # server's receive loop ends when it completes.
            self._closer = asyncio.create_task(self._close(code, reason))

    def _stop_sending(self, code: int) -> bool:
        """Start closing with ``code``: drop the queue, stop the writer. ``False`` if the
        connection was closing already (the first code stands)."""
        if self._closing:
            return False
        self._closing = True
        self.close_code = code
        self._queue.clear()
        self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()
        return True

    async def stop(self) -> None:
        """Stop sending; called once the client is gone, or its handler is ending.

        A close started by ``close`` is waited for: if the handler returned first, aiohttp
        would close the socket itself with 1000, and the client would not get our code.
        """
        self._closing = True
        writer = self._writer
        if writer is not None:
            writer.cancel()
            # wait() rather than await: the writer's CancelledError is expected, and must
            # not be confused with a cancellation of the caller.
            await asyncio.wait([writer])
        if self._closer is not None:
            await asyncio.wait([self._closer])

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self._socket.close(code=code, message=reason.encode())
        except ConnectionError:
            log.debug("%r: socket already gone while closing with %d", self, code)

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue:
                data = queue.popleft()
                self._queued_bytes -= len(data)
                # aiohttp's send awaits the socket's flow control when its buffer is full.
                await self._socket.send_bytes(data)
        except ConnectionError:
            # The peer went away mid-send; the receive loop sees the close and cleans up.
            log.debug("%r: connection lost while sending", self)
            self._closing = True
            # Nothing reached the peer, not even a close frame: record 1006 (RFC 6455's
            # "closed abnormally", never sent on the wire), not the shutdown code.
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        finally:
            self._writer = None
