"""One document on a Hocuspocus socket: a room member that shares its socket.

``@hocuspocus/provider`` multiplexes documents over one WebSocket
(``HocuspocusProviderWebsocket``): every frame starts with the document's address. A
``Session`` is what the hub sees for one of them. It is a ``Connection`` to the rooms (an
author, limits, a read-only flag, ``send`` / ``close`` / ``abort``), but it owns no socket:
``send`` puts the address in front of the y-websocket message the room produced (a Sync
or Awareness body is byte for byte the same in both protocols) and hands it to the
socket's own ``Connection``, whose one bounded outbox serves every document of the socket.

Ending a session is not ending the socket. A refusal of this document (deleted, token
expired or revoked, no access, too large: ``REFUSALS``) is answered with the Hocuspocus
PermissionDenied message and ends only this session; any other code (a reset room, a
slow socket, a restart) closes the whole socket, as the provider then reconnects and
re-syncs every document it has.

SyncStatus means stored: ``acknowledge`` counts an update (or SyncStep2) the session
sent, and ``Acknowledgements`` sends it only after the group commit that stored it
(``Store.flush(hurry=False)``: the commit the window brings anyway, never one of its own).
A provider whose ``unsyncedChanges`` reached 0 has nothing a SIGKILL of the server can
lose. See ``docs/hocuspocus.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from collab.errors import CloseCode
from collab.relay.connection import DIRECT_MAX, Connection, ConnectionState, binary_frame
from collab.store import StoreClosed
from collab.sync.hocuspocus import (
    Address,
    encode_permission_denied,
    encode_sync_status,
)
from collab.sync.varint import write_uint

if TYPE_CHECKING:
    from collab.sync.room import Room

__all__ = ["REFUSALS", "Acknowledgements", "Session"]

log = logging.getLogger(__name__)

REFUSALS = frozenset(
    (
        CloseCode.BAD_REQUEST,
        CloseCode.UNAUTHORIZED,
        CloseCode.FORBIDDEN,
        CloseCode.DOCUMENT_DELETED,
        CloseCode.DOCUMENT_TOO_LARGE,
        CloseCode.LINEAGE_RETIRED,
    )
)
"""Codes that refuse one document (PermissionDenied for it); others close the socket."""


class _Last:
    """The last message a session built, for the next session of the same broadcast."""

    __slots__ = ("data", "frame", "message", "prefix")

    def __init__(self) -> None:
        self.data = b""
        self.prefix = b""
        self.message = b""
        self.frame: bytes | None = None


_LAST = _Last()


class Session(Connection):
    """One document of a Hocuspocus socket, as a member of that document's room.

    Args:
        socket: the socket's connection: every byte goes through its outbox.
        address: the document (and provider session) this session is for.
        id: the server's id for this session (stored with each update it sends).
        author: as for ``Connection``.
        acks: where its acknowledgements wait for their commit (one per server).
        on_end: called soon after the session ends by ``close`` or ``abort``, to take it
            out of its room; never called from inside the hub's own loops.
    """

    __slots__ = (
        "_acks",
        "_on_end",
        "address",
        "expiry",
        "prefix",
        "room",
        "socket",
    )

    def __init__(
        self,
        socket: Connection,
        address: Address,
        id: str,
        *,
        author: str | None,
        acks: Acknowledgements,
        on_end: Callable[[Session], None],
    ) -> None:
        super().__init__(socket._socket, id, author=author, max_bytes=socket.max_bytes)
        self.socket = socket
        self.address = address
        key = address.key.encode("utf-8")
        self.prefix = write_uint(len(key)) + key
        self.room: Room[Connection] | None = None  # the room it joined (set by the endpoint)
        self.expiry: asyncio.TimerHandle | None = None  # the token's expiry, if any
        self._acks = acks
        self._on_end = on_end

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.address.document!r}>"

    def send(self, data: bytes, frame: bytes | None = None) -> None:
        """Send a y-websocket message (a room's reply or broadcast) as this document's.

        ``frame`` (the room's prebuilt WebSocket frame) cannot serve: the address makes
        these bytes different from the y-websocket members'. Fan-out sends one ``data``
        to every member in turn, so the message and frame built for the last address are
        kept: every session of a document that shares the plain document name as address
        (all but 4.x session-awareness ones) reuses one encoding, as Hocuspocus does.
        """
        if self._state is not ConnectionState.OPEN:
            return
        if len(data) > DIRECT_MAX:  # never kept: a large step 2 must not outlive its send
            self.socket.send(self.prefix + data)
            return
        last = _LAST
        if last.data is not data or last.prefix != self.prefix:
            message = self.prefix + data
            last.data, last.prefix, last.message = data, self.prefix, message
            last.frame = binary_frame(message) if len(message) <= DIRECT_MAX else None
        self.socket.send(last.message, last.frame)

    def send_message(self, message: bytes) -> None:
        """Send a whole Hocuspocus frame (its address already in front)."""
        if self._state is ConnectionState.OPEN:
            self.socket.send(message)

    def ping(self) -> None:
        """Keepalive is the socket's (``socket.ping``), not a document's."""

    def abort(self, code: int) -> None:
        """A send failed or the peer is dead: that is the socket's, so it is dropped."""
        if self._end(ConnectionState.CLOSED, code):
            self._ended()
            self.socket.abort(code)

    def close(self, code: int, reason: str = "") -> None:
        """End this session with ``code``: a refusal (``REFUSALS``) is sent as
        PermissionDenied for this document only; any other code closes the socket."""
        if not self._end(ConnectionState.CLOSED, code):
            return
        self._ended()
        if code in REFUSALS:
            self.socket.send(encode_permission_denied(self.address, reason or "permission-denied"))
        else:
            self.socket.close(code, reason)

    def end(self, code: int) -> int:
        """End the session from the endpoint (the provider closed its document, or the
        socket ended), unless ``close`` or ``abort`` did already.

        Returns:
            The code that really ended it.
        """
        if self._end(ConnectionState.CLOSED, code):
            self._ended(notify=False)
        assert self.close_code is not None
        return self.close_code

    async def finish(self, code: int, reason: str = "") -> int:
        """As ``end``: a session has no close handshake of its own to wait for."""
        return self.end(code)

    def acknowledge(self) -> None:
        """The session sent an update or SyncStep2 that the room took: owe it one
        SyncStatus(true), sent once what is queued now is committed."""
        if self._state is ConnectionState.OPEN:
            self._acks.owe(self)

    def acknowledged(self, count: int) -> None:
        """What ``count`` acknowledgements were owed for is committed: send them."""
        if self._state is ConnectionState.OPEN:
            status = encode_sync_status(self.address, True)
            for _ in range(count):
                self.socket.send(status)

    def refuse_write(self) -> None:
        """A write from a read-only session was dropped: SyncStatus(false), at once."""
        self.send_message(encode_sync_status(self.address, False))

    def _ended(self, notify: bool = True) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        if notify:
            # Soon, not now: close() may be called while the hub iterates the room.
            asyncio.get_running_loop().call_soon(self._on_end, self)


class Acknowledgements:
    """The SyncStatus acknowledgements of every session of a server, each sent after the
    group commit that stored what it acknowledges.

    One task waits for one commit on behalf of every session that is owed something,
    instead of one task per session and update: at 10 edits a second per typist, a task
    per acknowledgement cost a third of the CPU of a Hocuspocus delivery.

    Args:
        flush: waits for the commit of everything queued so far without forcing one (the
            store's ``flush(hurry=False)``).
    """

    __slots__ = ("_flush", "_owed", "_task")

    def __init__(self, flush: Callable[[], Awaitable[None]]) -> None:
        self._flush = flush
        self._owed: dict[Session, int] = {}
        self._task: asyncio.Task[None] | None = None

    def owe(self, session: Session) -> None:
        """``session`` is owed one acknowledgement for what is queued now."""
        owed = self._owed
        owed[session] = owed.get(session, 0) + 1
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="collab-acknowledgements")

    async def _run(self) -> None:
        try:
            while self._owed:
                # Everything owed so far was queued for the store before it was owed: the
                # commit that settles the queue as of now stores it.
                owed, self._owed = self._owed, {}
                await self._flush()
                for session, count in owed.items():
                    session.acknowledged(count)
        except StoreClosed:  # shutdown: what was not committed is not acknowledged
            log.debug("acknowledgements dropped: the store closed before committing")
        finally:
            self._task = None

    async def close(self) -> None:
        """Stop waiting (server shutdown): nothing more is acknowledged."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
