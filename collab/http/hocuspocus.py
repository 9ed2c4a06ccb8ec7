"""``/hocuspocus``: the endpoint of ``@hocuspocus/provider`` (2.x, 3.x, 4.x).

One socket carries many documents. Every frame starts with a document's address
(``collab.sync.hocuspocus``), and each document is its own ``Session``: its own token,
access, limits and room membership, in the same rooms as ``/ws`` members. A Sync,
Awareness or QueryAwareness body is byte for byte a y-websocket message, so the hub
validates, stores and relays it exactly as one from ``/ws`` (``Hub.receive``), and the
room's replies and broadcasts reach a session with its address put in front.

A document's life on the socket: frames before its Auth message wait in a bounded queue
(as the Hocuspocus server keeps them); the Auth message's token is verified like a
``/ws`` token, answered with Authenticated (scope ``readonly`` or ``read-write``) or
PermissionDenied (with the reason), and on success the session joins the room and the
queued frames run. A refusal, a Close from the provider, a deletion, an expired or
revoked token end that document only. Malformed frames close the socket with 1007, an
unknown message type with 1003 (logged), exceeding the queue with 4205 (Hocuspocus's
"reset connection"); the rooms are never touched by them.

The receive loop handles one frame at a time, joins included: a document's frames keep
their order, and while a room loads the socket's other frames wait in its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSMsgType, web

from collab.auth import Access, Identity
from collab.errors import (
    CloseCode,
    CollabError,
    Forbidden,
    MessageTooBig,
    Overloaded,
    ProtocolError,
    RateLimited,
    UnsupportedData,
)
from collab.http.state import (
    ACKS,
    CONFIG,
    CONNECTIONS,
    HUB,
    METRICS,
    SESSIONS,
    VERIFIER,
    admit_member,
    identify_token,
)
from collab.relay.connection import Connection, new_connection_id
from collab.relay.limits import member_buckets
from collab.relay.session import REFUSALS, Session
from collab.sync import hocuspocus as hp
from collab.sync.hocuspocus import MessageType
from collab.sync.protocol import SyncStep2, decode

__all__ = ["setup"]

log = logging.getLogger(__name__)

MAX_DOCUMENTS = 100
"""Documents one socket may have open or waiting for their Auth message at once."""
MAX_QUEUED_MESSAGES = 1000
"""Frames one socket may send for documents not authenticated yet (Hocuspocus's default)."""
MAX_QUEUED_BYTES = 5 * 1024 * 1024
"""Bytes of such frames one socket may send (Hocuspocus's default): nobody may make the
server hold ``max_message_size`` per socket before showing a token."""

_RELAYED = frozenset((MessageType.SYNC, MessageType.AWARENESS, MessageType.QUERY_AWARENESS))
_STEP2, _UPDATE = 1, 2  # y-protocols sync message kinds that carry an update
_WRITES = frozenset((_STEP2, _UPDATE))
_PONG = hp.encode_pong()


def setup(app: web.Application) -> None:
    app.router.add_get("/hocuspocus", _hocuspocus)
    app.router.add_get("/hocuspocus/{path:.*}", _hocuspocus)


class _RefuseDocument(CollabError):
    """Refuse one document of the socket (PermissionDenied), not the socket."""

    close_code = CloseCode.FORBIDDEN


class _Reset(CollabError):
    """Close the socket as the Hocuspocus server does when a client floods it before
    authenticating (4205, "reset connection")."""

    close_code = CloseCode.RESET_CONNECTION


class _Socket:
    """The documents of one Hocuspocus socket: open sessions and queued frames."""

    def __init__(self, request: web.Request, conn: Connection) -> None:
        self.request = request
        self.app = request.app
        self.hub = request.app[HUB]  # looked up once: every relayed frame needs it
        self.conn = conn
        self.sessions: dict[str, Session] = {}
        self.queued: dict[str, list[bytes]] = {}
        self.queued_bytes = 0
        self.queued_count = 0
        self._next = 0

    async def receive(self, data: bytes) -> None:
        """Handle one binary message from the provider.

        Raises:
            CollabError: close the socket with its code.
        """
        if len(data) == 1 and data[0] in (MessageType.PING, MessageType.PONG):
            if data[0] == MessageType.PING:
                self.conn.send(_PONG)
            return  # a Pong answers our keepalive: counted by the loop already
        key, kind, at = hp.route(data)
        session = self.sessions.get(key)
        if session is None:
            if kind == MessageType.AUTH:
                message = hp.decode(data)
                if isinstance(message, hp.AuthToken):
                    await self._open(key, message.token)
                    return
                raise ProtocolError("only a token may open a document")
            if self.app[VERIFIER] is not None:
                self._queue(key, data)
                return
            # Without auth a 2.x provider with no token sends no Auth message at all: its
            # first frame opens the document, as on a Hocuspocus server without
            # onAuthenticate. (3.x and 4.x always send one first.)
            session = await self._open(key, None)
            if session is None:
                return
        if kind in _RELAYED or kind == MessageType.SYNC_REPLY:
            body = data[at:] if kind != MessageType.SYNC_REPLY else b"\x00" + data[at + 1 :]
            self._relay(session, kind, body)
            return
        message = hp.decode(data)
        if isinstance(message, hp.AuthToken):  # a refreshed token (provider's onTokenSync)
            self._refresh(session, message.token)
        elif isinstance(message, hp.Stateless):
            self._stateless(session, message.payload)
        elif isinstance(message, hp.Close):
            # Answered as Hocuspocus does, before the session ends (then nothing is sent).
            session.send_message(hp.encode_close(session.address, "provider_initiated"))
            self._end(session, CloseCode.NORMAL)
        elif isinstance(message, hp.SyncStatus):
            pass  # only servers send it; a provider echoing one changes nothing
        else:  # BroadcastStateless, server-side Auth messages, TokenRequest
            raise ProtocolError(f"a provider may not send {type(message).__name__}")

    def _relay(self, session: Session, kind: int, body: bytes) -> None:
        room = session.room
        assert room is not None
        step = body[1] if kind != MessageType.AWARENESS and len(body) > 1 else -1
        if kind == MessageType.SYNC and step in _WRITES and session.read_only:
            # Hocuspocus answers a read-only write with SyncStatus(false) at once; a
            # SyncStep2 carrying nothing new counts as applied (the provider's startup).
            if step == _UPDATE or not room.holds(_step2_update(body)):
                session.refuse_write()
            else:
                session.send_message(hp.encode_sync_status(session.address, True))
            return
        resyncs = room.resyncs
        try:
            self.hub.receive(room, session, body)
        except CollabError as exc:
            if exc.close_code in REFUSALS:
                session.close(exc.close_code, exc.reason)
                return
            raise
        # An update that waits for missing structs is not acknowledged: the SyncStep2
        # the client sends in answer to our SyncStep1 carries it, and that one is.
        if kind == MessageType.SYNC and step in _WRITES and room.resyncs == resyncs:
            session.acknowledge()

    def _queue(self, key: str, data: bytes) -> None:
        """Keep a frame for a document whose Auth message has not come yet."""
        waiting = self.queued.get(key)
        if waiting is None:
            if len(self.sessions) + len(self.queued) >= MAX_DOCUMENTS:
                raise _Reset("too many documents waiting for authentication")
            waiting = self.queued[key] = []
        self.queued_count += 1
        self.queued_bytes += len(data)
        if self.queued_count > MAX_QUEUED_MESSAGES or self.queued_bytes > MAX_QUEUED_BYTES:
            raise _Reset("too much sent before authenticating")
        waiting.append(data)

    async def _open(self, key: str, token: str | None) -> Session | None:
        """Open a document: verify the token of its Auth message (``None``: it was opened
        by its first frame, auth being off), answer, join, then run its queued frames.

        Returns:
            The session, or ``None`` if the document was refused.
        """
        address = hp.address_of(key)
        name = address.document
        waiting = self.queued.pop(key, [])
        self.queued_count -= len(waiting)
        self.queued_bytes -= sum(map(len, waiting))
        app = self.app
        try:
            if len(self.sessions) >= MAX_DOCUMENTS:
                raise _RefuseDocument("too many documents on one connection")
            identity = identify_token(app, token or self.request.query.get("token"))
            access = admit_member(app, name, identity)
        except CollabError as exc:
            if exc.close_code not in REFUSALS:
                raise
            self.conn.send(hp.encode_permission_denied(address, exc.reason))
            log.info("hocuspocus conn=%s refused %r: %s", self.conn.id, name, exc.reason)
            return None
        self._next += 1
        session = Session(
            self.conn,
            address,
            f"{self.conn.id}.{self._next}",
            author=identity.author_of(self.request.query.get("user")),
            acks=app[ACKS],
            on_end=self._ended,
        )
        session.read_only = access is Access.READ
        session.token_id = identity.token_id
        session.bucket, session.awareness_bucket = member_buckets(app[CONFIG], time.monotonic())
        if token is not None:
            scope = hp.Scope.READ_ONLY if session.read_only else hp.Scope.READ_WRITE
            self.conn.send(hp.encode_authenticated(address, scope))
        hub = self.hub
        try:
            session.room = await hub.join(name, session)
        except CollabError as exc:
            if exc.close_code not in REFUSALS:
                raise
            self.conn.send(hp.encode_permission_denied(address, exc.reason))
            return None
        self._expire(session, identity)  # once joined: a refused join needs no timer
        self.sessions[key] = session
        app[SESSIONS].add(session)
        log.info(
            "connect room=%r conn=%s user=%r protocol=hocuspocus%s",
            name,
            session.id,
            session.author,
            " read-only" if session.read_only else "",
        )
        hub.webhooks.connected(name, session.author, session.id)
        for data in waiting:
            if session.closing:
                break
            await self.receive(data)
        return session

    def _expire(self, session: Session, identity: Identity) -> None:
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        if identity.expires is not None:
            session.expiry = asyncio.get_running_loop().call_later(
                max(0.0, identity.expires - time.time()),
                session.close,
                CloseCode.UNAUTHORIZED,
                "token expired",
            )

    def _refresh(self, session: Session, token: str) -> None:
        """A provider sent a new token for an open document: it must still hold."""
        try:
            identity = identify_token(self.app, token or self.request.query.get("token"))
            access = identity.access(session.address.document)
            if access is Access.NONE:
                raise Forbidden("no access to this document")
        except CollabError as exc:
            code = exc.close_code if exc.close_code in REFUSALS else CloseCode.UNAUTHORIZED
            session.close(code, exc.reason)
            return
        session.read_only = access is Access.READ
        session.token_id = identity.token_id
        self._expire(session, identity)

    def _stateless(self, sender: Session, payload: str) -> None:
        """Relay a Stateless payload to the document's other Hocuspocus members."""
        config = self.app[CONFIG]
        if len(payload) > config.max_awareness_size:
            raise MessageTooBig("stateless message too large")
        bucket = sender.awareness_bucket
        if bucket is not None and not bucket.take(time.monotonic()):
            raise RateLimited("too many stateless messages, slow down")
        room = sender.room
        assert room is not None
        for member in room.members:
            if member is not sender and isinstance(member, Session):
                member.send_message(hp.encode_stateless(member.address, payload))

    def _ended(self, session: Session) -> None:
        """A session ended by ``close``/``abort`` (refusal, deletion, revocation, ...)."""
        if self.sessions.get(session.address.key) is session:
            self._end(session, session.close_code or CloseCode.NORMAL)

    def _end(self, session: Session, code: int) -> None:
        """Take ``session`` out of its room and out of this socket."""
        if self.sessions.pop(session.address.key, None) is None:
            return
        app = self.app
        app[SESSIONS].discard(session)
        final = session.end(code)
        self.hub.leave(session.address.document, session)
        app[METRICS].closes.labels(str(int(final)), "hocuspocus").inc()
        log.info(
            "close room=%r conn=%s user=%r code=%s protocol=hocuspocus",
            session.address.document,
            session.id,
            session.author,
            final,
        )
        self.hub.webhooks.disconnected(
            session.address.document, session.author, session.id, int(final)
        )

    def end_all(self, code: int) -> None:
        for session in list(self.sessions.values()):
            self._end(session, code)


def _step2_update(body: bytes) -> bytes:
    """The update of a y-websocket SyncStep2 message (validated framing).

    Raises:
        ProtocolError: not a well-framed SyncStep2.
    """
    message = decode(body)
    if not isinstance(message, SyncStep2):
        raise ProtocolError("expected a SyncStep2")
    return message.update


async def _hocuspocus(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config, metrics = app[CONFIG], app[METRICS]
    # The same socket options as /ws (collab.http.websocket): no per-socket heartbeat
    # (one keepalive sweep per server), pings seen by the loop, no compression.
    ws = web.WebSocketResponse(
        max_msg_size=config.max_message_size, heartbeat=None, autoping=False, compress=False
    )
    await ws.prepare(request)
    conn = Connection(
        ws, new_connection_id(), max_bytes=config.outbox_max_bytes, transport=request.transport
    )
    connections = app[CONNECTIONS]
    connections.add(conn)
    socket = _Socket(request, conn)
    code: int = CloseCode.NORMAL
    reason = ""
    try:
        origins = config.origins
        if origins and request.headers.get("Origin") not in origins:
            raise Forbidden("origin not allowed")
        if len(connections) > config.max_connections:
            raise Overloaded("server is full, retry later")
        conn.seen = conn.received  # from now on the keepalive sweep watches it
        async for msg in ws:
            conn.received += 1
            kind = msg.type
            if kind is WSMsgType.BINARY:
                try:
                    await socket.receive(msg.data)
                except hp.UnknownMessageType as exc:
                    log.warning(
                        "hocuspocus conn=%s sent message type %d for %r: not a type "
                        "this server knows (is the provider newer than 4.x?)",
                        conn.id,
                        exc.type,
                        exc.address.document,
                    )
                    raise UnsupportedData(f"unknown message type {exc.type}") from None
            elif kind is WSMsgType.TEXT:
                raise UnsupportedData("text frames are not supported")
            elif kind is WSMsgType.ERROR:
                code = getattr(msg.data, "code", None) or CloseCode.ABNORMAL_CLOSURE
                reason = str(msg.data)[:100]
                break
            elif kind is WSMsgType.PING:
                if not conn.closing:
                    with contextlib.suppress(ConnectionError):
                        await ws.pong(msg.data)
        else:
            if ws.close_code == CloseCode.ABNORMAL_CLOSURE:
                conn.abort(CloseCode.ABNORMAL_CLOSURE)
    except CollabError as exc:
        code, reason = exc.close_code, exc.reason
    except Exception:
        log.exception("hocuspocus connection %s failed", conn.id)
        code, reason = CloseCode.INTERNAL_ERROR, "internal error"
    finally:
        connections.discard(conn)
        socket.end_all(code)
        try:
            await conn.finish(code, reason)
        finally:
            final = conn.close_code if conn.close_code is not None else code
            metrics.closes.labels(str(int(final)), "hocuspocus").inc()
            if final not in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
                log.info("hocuspocus conn=%s closed with %s %s", conn.id, final, reason)
    return ws
