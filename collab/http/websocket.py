"""``/ws/{room}``: the y-websocket endpoint, one handler per socket.

Each handler has exactly one broad ``except``, with four outcomes: a ``CollabError`` closes
with its own code, any other exception is logged and closes with 1011, a normal end closes
with 1000, and the member is always unregistered in ``finally``. Refusals happen after the
upgrade, so a browser can read the close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSMsgType, web

from collab.auth import Access, Identity
from collab.errors import CloseCode, CollabError, Forbidden, Overloaded, UnsupportedData
from collab.http.state import CONFIG, CONNECTIONS, HUB, METRICS, admit_member, identify
from collab.relay.connection import Connection, new_connection_id
from collab.relay.limits import member_buckets
from collab.sync.room import validate_room_name

__all__ = ["setup"]

log = logging.getLogger(__name__)

_SAMPLE_MASK = 15  # relay latency is observed for every 16th message of a connection


def setup(app: web.Application) -> None:
    app.router.add_get("/ws/{room:.+}", _websocket)


def _admit(request: web.Request, name: str, connections: int) -> tuple[Identity, Access]:
    """Everything checked before a room loads, and the access it grants; raises the
    CollabError to close with."""
    app = request.app
    config = app[CONFIG]
    validate_room_name(name, config.max_room_name)  # first: a bad name is refused as such
    if config.allowed_origins and request.headers.get("Origin") not in config.origins:
        raise Forbidden("origin not allowed")
    identity = identify(request)
    access = admit_member(app, name, identity)
    if connections > config.max_connections:
        raise Overloaded("server is full, retry later")
    return identity, access


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config, hub, metrics = app[CONFIG], app[HUB], app[METRICS]
    ws = web.WebSocketResponse(
        max_msg_size=config.max_message_size,
        # Keepalive is one sweep per server (``collab.relay.keepalive``), not aiohttp's per-socket
        # heartbeat; without autoping the loop below sees (and counts) pings and pongs.
        heartbeat=None,
        autoping=False,
        # No permessage-deflate: Yjs updates are small and binary, and compression would
        # cost CPU per recipient on the relay path.
        compress=False,
    )
    # Refusals happen after the upgrade: a browser sees an HTTP error only as 1006 and
    # retries forever, while a 44xx close code stops the y-websocket client for good.
    await ws.prepare(request)
    name = request.match_info["room"]
    conn = Connection(
        ws,
        new_connection_id(),
        max_bytes=config.outbox_max_bytes,
        transport=request.transport,
    )
    connections = app[CONNECTIONS]
    connections.add(conn)
    code: int = CloseCode.NORMAL
    reason = ""
    expiry: asyncio.TimerHandle | None = None
    observe = metrics.relay_seconds.observe
    try:
        identity, access = _admit(request, name, len(connections))
        # The author rule (``Connection``): the token's, else ?user=, else the name the
        # client announces in its awareness, else the connection id.
        conn.claim(identity.author_of(request.query.get("user")))
        conn.read_only = access is Access.READ
        conn.token_id = identity.token_id
        conn.bucket, conn.awareness_bucket = member_buckets(config, time.monotonic())
        if identity.expires is not None:
            expiry = asyncio.get_running_loop().call_later(
                max(0.0, identity.expires - time.time()),
                conn.close,
                CloseCode.UNAUTHORIZED,
                "token expired",
            )
        room = await hub.join(name, conn)
        log.info(
            "connect room=%r conn=%s user=%r%s",
            name,
            conn.id,
            conn.author,
            " read-only" if conn.read_only else "",
        )
        hub.webhooks.connected(name, conn.author, conn.id)
        conn.seen = conn.received  # from now on the keepalive sweep watches it
        async for msg in ws:
            # Every message counts as a sign of life; this is all keepalive costs here.
            received = conn.received + 1
            conn.received = received
            kind = msg.type
            if kind is WSMsgType.BINARY:
                if received & _SAMPLE_MASK:
                    hub.receive(room, conn, msg.data)
                else:  # time one message in 16: a latency histogram needs no more
                    started = time.perf_counter()
                    hub.receive(room, conn, msg.data)
                    observe(time.perf_counter() - started)
            elif kind is WSMsgType.TEXT:
                raise UnsupportedData("text frames are not supported")
            elif kind is WSMsgType.ERROR:
                # aiohttp has closed the socket itself (1009 for a message over
                # max_message_size, 1002 for a broken frame): record the code it sent
                # (its WebSocketError's; ws.close_code becomes the peer's reply).
                code = getattr(msg.data, "code", None) or CloseCode.ABNORMAL_CLOSURE
                reason = str(msg.data)[:100]
                break
            elif kind is WSMsgType.PING:  # rare (browsers never ping): answer as autoping
                if not conn.closing:  # no frame may follow our close frame
                    with contextlib.suppress(ConnectionError):  # gone: the loop ends next
                        await ws.pong(msg.data)
            # PONG: counted above, nothing else to do. CLOSE, CLOSING and CLOSED end the
            # iteration inside aiohttp (autoclose answers a client's close frame).
        else:
            if ws.close_code == CloseCode.ABNORMAL_CLOSURE:
                # The peer went away without a close frame (aiohttp found the transport
                # lost): 1006, the code nothing could be sent with, not a normal 1000.
                conn.abort(CloseCode.ABNORMAL_CLOSURE)
    except CollabError as exc:
        code, reason = exc.close_code, exc.reason
    except Exception:
        log.exception("connection %s in room %r failed", conn.id, name)
        code, reason = CloseCode.INTERNAL_ERROR, "internal error"
    finally:
        if expiry is not None:
            expiry.cancel()
        connections.discard(conn)
        hub.leave(name, conn)
        # Whichever path ended the connection first (this handler, fan-out closing a slow
        # consumer, shutdown, revocation, eviction, keepalive) set its code; finish()
        # waits for the close handshake, which may find the peer gone (1006). Recorded in
        # a finally: the handler may be cancelled once the socket closes.
        try:
            await conn.finish(code, reason)
        finally:
            final = conn.close_code if conn.close_code is not None else code
            metrics.closes.labels(str(int(final)), "y-websocket").inc()
            log.info("close room=%r conn=%s user=%r code=%s", name, conn.id, conn.author, final)
            hub.webhooks.disconnected(name, conn.author, conn.id, int(final))
    return ws
