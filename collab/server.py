"""The HTTP and WebSocket surface: the only module that uses aiohttp's server.

``create_app(config)`` builds the application: ``/ws/{room}`` speaks the y-websocket
protocol, ``/healthz`` says the process is up. Each WebSocket handler has exactly one
broad ``except``, with four outcomes: a ``CollabError`` closes with its own code, any
other exception is logged and closes with 1011, a normal end closes with 1000, and the
member is always unregistered in ``finally``.
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import WSMsgType, web

from collab.config import Config, database_url
from collab.connection import Connection
from collab.errors import CloseCode, CollabError, UnsupportedData
from collab.hub import Hub
from collab.room import validate_room_name
from collab.store import Store

__all__ = ["CONFIG", "HUB", "create_app"]

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
_CONNECTIONS: web.AppKey[set[Connection]] = web.AppKey("connections")


def create_app(config: Config) -> web.Application:
    """Build the collab application for ``config``; the store opens on startup."""
    app = web.Application()
    app[CONFIG] = config
    app[_CONNECTIONS] = set()
    app.cleanup_ctx.append(_hub_ctx)
    app.on_shutdown.append(_close_connections)
    app.router.add_get("/ws/{room:.+}", _websocket)
    app.router.add_get("/healthz", _healthz)
    return app


async def _hub_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    config = app[CONFIG]
    store = Store(database_url(config.db), commit_interval=config.commit_interval)
    await store.open()
    hub = Hub(store, config)
    app[HUB] = hub
    yield
    await hub.close()


async def _close_connections(app: web.Application) -> None:
    # Graceful shutdown: 1001 tells clients to reconnect (to this server once it is back,
    # or to another node); their handlers then leave their rooms normally.
    connections: set[Connection] = app[_CONNECTIONS]
    for conn in list(connections):
        conn.close(CloseCode.GOING_AWAY, "server shutting down")


async def _healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(
        {
            "status": "ok",
            "rooms": len(hub.rooms),
            "connections": len(request.app[_CONNECTIONS]),
            "store_backlog_bytes": hub.store.backlog_bytes,
        }
    )


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config, hub = app[CONFIG], app[HUB]
    ws = web.WebSocketResponse(
        max_msg_size=config.max_message_size,
        heartbeat=config.heartbeat or None,
        # No permessage-deflate: Yjs updates are small and binary, and compression would
        # cost CPU per recipient on the relay path.
        compress=False,
    )
    await ws.prepare(request)
    name = request.match_info["room"]
    conn = Connection(
        ws,
        uuid.uuid4().hex[:16],
        author=request.query.get("user") or None,
        max_bytes=config.outbox_max_bytes,
        transport=request.transport,
    )
    connections = app[_CONNECTIONS]
    connections.add(conn)
    code, reason = CloseCode.NORMAL, ""
    try:
        validate_room_name(name, config.max_room_name)
        room = await hub.join(name, conn)
        log.info("connect room=%r conn=%s user=%r", name, conn.id, conn.author)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                hub.receive(room, conn, msg.data)
            elif msg.type is WSMsgType.TEXT:
                raise UnsupportedData("text frames are not supported")
    except CollabError as exc:
        code, reason = exc.close_code, exc.reason
    except Exception:
        log.exception("connection %s in room %r failed", conn.id, name)
        code, reason = CloseCode.INTERNAL_ERROR, "internal error"
    finally:
        connections.discard(conn)
        hub.leave(name, conn)
        await conn.stop()
        if conn.close_code is None:  # not already being closed by fan-out or shutdown
            await ws.close(code=code, message=reason.encode())
        log.info("close room=%r conn=%s code=%s", name, conn.id, conn.close_code or code)
    return ws
