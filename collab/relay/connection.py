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
in ``received``, and one sweep per server (``keepalive.sweep``) compares that count with
the one it saw last time, pings the quiet connections (``ping``) and drops those that
stayed quiet after a ping (``abort``).

A connection's life is a ``ConnectionState``, moved only by ``_end``::

    OPEN --close()--> CLOSING --handshake done, or peer lost (1006)--> CLOSED
    OPEN --abort(), or peer lost mid-send (1006)-----------------------> CLOSED

Three paths can end a connection (the handler's ``finish``; fan-out closing a slow
consumer; shutdown, revocation, eviction or a keepalive ``abort``), and the first one
decides ``close_code``. CLOSED carries the code that really ended it: a peer that was lost
before our close frame could reach it is recorded as 1006, never as the code we meant.

Who wrote what a connection sends (``author``) is one rule, here: the token's author with
auth on, else the ``?user=`` parameter (both given to ``claim``, from
``Identity.author_of``), else the first name the client announces in its awareness
(``announce``), else the connection id (as history names an anonymous editor,
``connection:<id>``: ``collab.row.identity``). Stored updates always have an author.

The socket is anything with aiohttp's ``send_bytes`` / ``close`` coroutines; this module
does not import aiohttp.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
from collections import deque
from enum import Enum
from typing import Protocol

from collab.errors import CloseCode, SlowConsumer
from collab.history.replay import identity
from collab.relay.limits import TokenBucket

__all__ = [
    "DIRECT_MAX",
    "Connection",
    "ConnectionState",
    "Socket",
    "binary_frame",
    "new_connection_id",
]

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
# Connection ids: 12 random hex digits per process, then a hex counter. Unique across nodes
# and restarts like the uuid4s they replace (two of 10,000 processes share a prefix with a
# chance of 2e-7), but with no os.urandom per connect: under a reconnect storm that call
# released the GIL to the store's threads and cost 0.3 ms of the loop's time per connect.
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_connection_id() -> str:
    """A new id for a connection, unique across this server's nodes and restarts."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):04x}"


class ConnectionState(Enum):
    """Where a connection is in its life (see the module docstring)."""

    OPEN = "open"
    """Sending; ``close_code`` is ``None``."""
    CLOSING = "closing"
    """Our close frame is on its way; nothing else is sent. ``close_code``: the code sent."""
    CLOSED = "closed"
    """Ended; ``close_code`` is the code that really ended it (1006: the peer was lost)."""


_NEXT: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.OPEN: frozenset((ConnectionState.CLOSING, ConnectionState.CLOSED)),
    ConnectionState.CLOSING: frozenset((ConnectionState.CLOSED,)),
    ConnectionState.CLOSED: frozenset(),
}


def binary_frame(data: bytes) -> bytes:
    """The WebSocket frame that carries ``data`` to a client (see ``Connection.send``).

    An unmasked, unfragmented server-to-client binary frame (RFC 6455 section 5.2): the
    same bytes aiohttp's writer produces with compression off, which is how collab
    configures its sockets. The length takes one of three forms: 7 bits (< 126), 16 bits
    (< 65,536) or 64 bits. ``tests/relay/test_connection.py`` checks every form and both sides
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
        author: who the client is, from its token or ``?user=`` (``Identity.author_of``),
            if known; otherwise the connection is ``anonymous`` and ``author`` is
            ``connection:<id>`` until the client announces a name (``announce``).
        max_bytes: queued bytes beyond which the connection is closed with 1013. One
            message larger than that is still accepted into an empty queue, so a big
            document can always be sent.
    """

    __slots__ = (
        "_closer",
        "_queue",
        "_queued_bytes",
        "_socket",
        "_state",
        "_transport",
        "_writer",
        "anonymous",
        "author",
        "awareness_bucket",
        "bucket",
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
        self.author: str = author or identity(None, id)
        self.anonymous = not author
        self.read_only = False
        self.token_id: str | None = None  # the id of the token it connected with, if any
        self.bucket: TokenBucket | None = None  # the update rate limit, if any
        self.awareness_bucket: TokenBucket | None = None  # the awareness rate limit, if any
        self.max_bytes = max_bytes
        self.close_code: int | None = None
        # Made when first needed: an empty deque is 760 bytes, and most connections never
        # queue anything (direct writes), a third of what an idle member costs collab.
        self._queue: deque[bytes] | None = None
        self._queued_bytes = 0
        self._state = ConnectionState.OPEN
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
    def state(self) -> ConnectionState:
        return self._state

    @property
    def closing(self) -> bool:
        """Whether it is ending or ended: nothing more is sent to it."""
        return self._state is not ConnectionState.OPEN

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the writer task (not yet handed to the socket)."""
        return self._queued_bytes

    def claim(self, author: str | None) -> None:
        """Who the client is, from its token or ``?user=`` (``Identity.author_of``);
        ``None``: nobody known, the connection stays ``anonymous``."""
        self.author = author or identity(None, self.id)
        self.anonymous = not author

    def announce(self, name: str | None) -> None:
        """The client announced ``name`` in its awareness: the author of an ``anonymous``
        connection from now on. A known author (token, ``?user=``) is never replaced."""
        if self.anonymous and name:
            self.author = name
            self.anonymous = False

    def send(self, data: bytes, frame: bytes | None = None) -> None:
        """Send ``data`` to this client, now or via the queue; never waits.

        ``frame`` may carry ``binary_frame(data)`` already built: fan-out builds it once
        for all the members of a room.

        Closes the connection with 1013 when its queue would exceed ``max_bytes``.
        """
        if self._state is not ConnectionState.OPEN:
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
        queue = self._queue
        if queue and self._queued_bytes + len(data) > self.max_bytes:
            self.close(SlowConsumer("client too slow").close_code, "client too slow")
            return
        if queue is None:
            queue = self._queue = deque()
        queue.append(data)
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
        if self.closing or transport is None or transport.is_closing():
            return
        transport.write(_PING_FRAME)

    def abort(self, code: int) -> None:
        """Drop an unresponsive client: no close handshake, the transport is aborted.

        What is queued or still in the transport's buffer is discarded (the peer is not
        reading it). The connection is CLOSED with ``code`` at once (the server's sweep
        uses 1006, a code that is never sent on the wire); the server's receive loop then
        sees the connection lost and ends. Does nothing once closing.
        """
        if (
            self._state is ConnectionState.OPEN
            and self._end(ConnectionState.CLOSED, code)
            and self._transport is not None
        ):
            self._transport.abort()

    def close(self, code: int, reason: str = "") -> None:
        """Drop what is queued and close the socket with ``code`` (in the background).

        Does nothing once closing: the first code stands.
        """
        if self._end(ConnectionState.CLOSING, code):
            # The close handshake runs in its own task so fan-out never waits for it; the
            # server's receive loop ends when it completes.
            self._closer = asyncio.create_task(
                self._close(code, reason), name=f"collab-close-{self.id}"
            )

    async def finish(self, code: int, reason: str = "") -> int:
        """End the connection from its handler: close with ``code`` unless another path
        ended it first, stop the writer, and wait for the close handshake.

        The handshake is waited for: if the handler returned first, aiohttp would close
        the socket itself with 1000, and the client would not get our code.

        Returns:
            The code that really ended the connection (``close_code``, now CLOSED).
        """
        self.close(code, reason)
        writer = self._writer
        if writer is not None:
            writer.cancel()
            # wait() rather than await: the writer's CancelledError is expected, and must
            # not be confused with a cancellation of the caller.
            await asyncio.wait([writer])
        if self._closer is not None:
            await asyncio.wait([self._closer])
        assert self.close_code is not None  # set by the first of close, abort, _lost
        return self.close_code

    def _end(self, state: ConnectionState, code: int) -> bool:
        """Move to ``state`` with ``code``: the one transition of a connection's life.

        From OPEN it also stops sending (the queue is dropped, the writer cancelled). A
        move the table does not have is ignored and returns ``False``: several paths may
        try to end a connection, and the first one's code stands (only the discovery that
        the peer was lost, CLOSING -> CLOSED with 1006, corrects it).
        """
        current = self._state
        if state not in _NEXT[current]:
            return False
        self._state = state
        self.close_code = code
        if current is ConnectionState.OPEN:
            if self._queue is not None:
                self._queue.clear()  # a writer mid-send stops at its next item
                self._queue = None
            self._queued_bytes = 0
            if self._writer is not None:
                self._writer.cancel()
        return True

    def _lost(self) -> None:
        """The peer is gone before our close frame could reach it: CLOSED with 1006 (RFC
        6455's "closed abnormally", never sent on the wire), whatever code was meant."""
        self._end(ConnectionState.CLOSED, CloseCode.ABNORMAL_CLOSURE)

    async def _close(self, code: int, reason: str) -> None:
        try:
            handshake = await self._socket.close(code=code, message=reason.encode())
        except ConnectionError:
            log.debug("%r: socket already gone while closing with %d", self, code)
            self._lost()
            return
        # aiohttp does not raise when our close finds no peer (the transport was lost, or
        # the peer never answered): it reports 1006 as the socket's close code. ``False``:
        # aiohttp had closed the socket itself already, with a code of its own choosing.
        if handshake and getattr(self._socket, "close_code", None) == CloseCode.ABNORMAL_CLOSURE:
            self._lost()
        else:
            self._end(ConnectionState.CLOSED, code)

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
            self._writer = None  # this task: nothing for _end to cancel
            self._lost()
        finally:
            self._writer = None
            if self._queue is queue and not queue:
                self._queue = None  # drained: an idle connection holds no deque
