"""The HTTP and WebSocket surface: the only module that uses aiohttp's server.

``create_app(config)`` builds the application: ``/ws/{room}`` speaks the y-websocket
protocol, ``/healthz`` says the process is up, ``/readyz`` that the database answers with
the current schema, ``/metrics`` serves Prometheus metrics. Every ``revocation_poll``
seconds the server reads the revoked tokens and closes the live sockets that use one
(4401), and closes loaded rooms whose document another server deleted (4404). Every
``heartbeat / 2`` seconds one keepalive sweep pings the quiet sockets and drops the dead ones.

Each WebSocket handler has exactly one broad ``except``, with four outcomes: a
``CollabError`` closes with its own code, any other exception is logged and closes with
1011, a normal end closes with 1000, and the member is always unregistered in
``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path

from aiohttp import WSMsgType, web

from collab import api, docs_api, web as browser
from collab.auth import OPEN, Access, Identity, Verifier
from collab.config import Config, database_url
from collab.connection import Connection
from collab.errors import (
    CloseCode,
    CollabError,
    Forbidden,
    Overloaded,
    Unauthorized,
    UnsupportedData,
)
from collab.hub import Hub
from collab.limits import TokenBucket
from collab.metrics import CONTENT_TYPE, Metrics
from collab.room import validate_room_name
from collab.store import DocumentStore, Store, TokenStore, now_ms
from collab.tasks import reraise_cancellation, stop_tasks

__all__ = ["CONFIG", "HUB", "METRICS", "VERIFIER", "close_revoked", "create_app", "identify"]

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
VERIFIER: web.AppKey[Verifier | None] = web.AppKey("verifier")
_CONNECTIONS: web.AppKey[set[Connection]] = web.AppKey("connections")
_DRAINING: web.AppKey[asyncio.Event] = web.AppKey("draining")  # set when shutdown starts
_DRAIN_COMMIT = 5.0  # seconds shutdown waits for the store before closing sockets
_SAMPLE_MASK = 15  # relay latency is observed for every 16th message of a connection
# Recorded for a connection dropped by the keepalive sweep, as aiohttp's heartbeat did.
# RFC 6455 reserves it for "closed without a close frame": it is never sent.
_ABNORMAL_CLOSURE = 1006


def create_app(config: Config) -> web.Application:
    """Build the collab application for ``config``; the store opens on startup."""
    # HTTP bodies (document content) may be as large as a WebSocket message.
    app = web.Application(client_max_size=config.max_message_size)
    app[CONFIG] = config
    app[_CONNECTIONS] = set()
    app[_DRAINING] = asyncio.Event()
    app[VERIFIER] = _verifier(config)
    app.cleanup_ctx.append(_hub_ctx)
    app.on_shutdown.append(_close_connections)
    app.router.add_get("/ws/{room:.+}", _websocket)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    browser.setup(app)  # the browser editor: pages, assets, /api/docs
    api.setup(app)  # the history API: /api/docs/{room}/...
    docs_api.setup(app)  # documents, content, token revocation, /api/openapi.json
    return app


def _verifier(config: Config) -> Verifier | None:
    if not config.auth_enabled:
        return None
    public_key = None
    if config.auth_public_key:
        public_key = Path(config.auth_public_key).read_text()
    return Verifier(config.auth_secret or None, public_key)


def identify(request: web.Request) -> Identity:
    """The identity behind an HTTP or WebSocket request (``?token=`` or a Bearer header).

    Raises:
        Unauthorized: auth is on and the token is missing, invalid, expired or revoked.
    """
    verifier = request.app[VERIFIER]
    if verifier is None:
        return OPEN
    token = request.query.get("token")
    header = request.headers.get("Authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    identity = verifier.verify(token)
    if identity.token_id is not None and identity.token_id in request.app[HUB].revoked:
        raise Unauthorized("token revoked")
    return identity


def close_revoked(app: web.Application) -> int:
    """Close every live socket whose token is revoked (``hub.revoked``) with 4401.

    Returns:
        How many were closed.
    """
    revoked = app[HUB].revoked
    connections: set[Connection] = app[_CONNECTIONS]
    closed = 0
    for conn in list(connections):
        if conn.token_id is not None and conn.token_id in revoked and not conn.closing:
            conn.close(CloseCode.UNAUTHORIZED, "token revoked")
            closed += 1
    if closed:
        log.info("closed %d connections whose token was revoked", closed)
    return closed


async def _hub_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    config = app[CONFIG]
    store = Store(
        database_url(config.db),
        commit_interval=config.commit_interval,
        db_timeout=config.db_timeout,
        # SQLite waits this long for a lock itself: half the timeout, so a read of a
        # locked database fails with its own error rather than being cut off.
        busy_timeout_ms=int(min(5.0, config.db_timeout / 2) * 1000),
    )
    await store.open()
    hub = Hub(store, config)
    app[HUB] = hub
    metrics = Metrics(hub)
    app[METRICS] = metrics
    store.on_commit = metrics.commit_seconds.observe
    await _purge(store, config)
    hub.revoked.update(await TokenStore(store).revoked())
    await hub.webhooks.start()
    cluster = None
    if config.redis:
        from collab.cluster import Cluster

        cluster = Cluster(
            config.redis,
            uuid.uuid4().hex[:16],
            hub.receive_remote,
            hub.resync_all,
            hub.forget_node,
        )
        hub.cluster = cluster
        await cluster.start()
    loops: list[asyncio.Task[None]] = []  # background loops, ended before the hub closes
    if config.revocation_poll > 0:
        loops.append(asyncio.create_task(_watch(app), name="collab-revocation-poll"))
    if config.heartbeat > 0:
        loops.append(asyncio.create_task(_keepalive(app), name="collab-keepalive"))
    yield
    await stop_tasks(loops)
    if cluster is not None:
        await cluster.stop()
        hub.cluster = None
    await hub.close()
    await hub.webhooks.close()  # after the hub, so the last changes are announced


async def _purge(store: Store, config: Config) -> None:
    """At start: remove documents deleted longer than ``deleted_retention`` ago, and
    revocations of tokens that have expired anyway (``collab purge`` does the same)."""
    now = now_ms()
    try:
        purged = await DocumentStore(store).purge(now - int(config.deleted_retention * 1000))
        forgotten = await TokenStore(store).purge(now)
    except Exception:  # purging can wait for the next start; serving cannot
        log.exception("purging deleted documents failed")
        return
    if purged or forgotten:
        log.info("purged %d deleted documents and %d expired revocations", len(purged), forgotten)


async def _watch(app: web.Application) -> None:
    """Every ``revocation_poll`` seconds: apply revocations and deletions made elsewhere
    (``collab token revoke``, another server) to this server's sockets and rooms."""
    hub = app[HUB]
    tokens, documents = TokenStore(hub.store), DocumentStore(hub.store)
    while True:
        await asyncio.sleep(app[CONFIG].revocation_poll)
        try:
            # Added, never replaced: a revocation made here meanwhile must not be lost.
            hub.revoked.update(await tokens.revoked())
            deleted = await documents.deleted_among(list(hub.rooms)) if hub.rooms else set()
        except Exception:  # the database may be back at the next poll
            reraise_cancellation()
            log.exception("reading revoked tokens and deleted documents failed")
            continue
        close_revoked(app)
        for name in deleted:
            await hub.evict(name)


async def _keepalive(app: web.Application) -> None:
    """Every ``heartbeat / 2`` seconds, one sweep over all connections (see ``_sweep``).

    This replaces aiohttp's per-socket heartbeat, which schedules a callback for every
    received chunk and then re-arms a timer from it: a few microseconds on the relay's
    hottest path, per message. Here a message costs one counter increment in the receive
    loop, and keepalive costs O(connections) once per interval, with no per-message
    timers and no task per connection.
    """
    # Half the heartbeat: a quiet client is pinged after one or two sweeps and dropped
    # at the next, between 1 and 1.5 heartbeats after its last message, as aiohttp did.
    interval = app[CONFIG].heartbeat / 2
    connections: set[Connection] = app[_CONNECTIONS]
    while True:
        await asyncio.sleep(interval)
        dropped = _sweep(connections)
        if dropped:
            log.info("dropped %d connections that did not answer a ping", dropped)


def _sweep(connections: set[Connection]) -> int:
    """Ping the connections that were quiet for a whole interval; drop the ones that were
    still quiet an interval after their ping.

    A connection is alive if it sent anything since the last sweep (a message or a pong:
    the receive loop counts both in ``Connection.received``). A quiet one is pinged; if
    the next sweep finds it quiet still, it is dropped like aiohttp's heartbeat drops a
    socket that missed its pong: transport closed (aborted, as the peer reads nothing),
    close code 1006. Its receive loop then ends and ``hub.leave`` removes its awareness
    for the others. A client is thus dropped between 2 and 3 sweeps after the last
    thing it sent, and a live idle client gets one ping every other sweep.

    Returns:
        How many connections were dropped.
    """
    dropped = 0
    # A copy: nothing here changes the set, but a connection's cleanup must never be able
    # to break the iteration.
    for conn in tuple(connections):
        seen = conn.seen
        if seen is None or conn.closing:  # not reading yet (joining), or already closing
            continue
        try:
            received = conn.received
            if received != seen:
                conn.seen = received
                conn.pinged = False
            elif conn.pinged:
                conn.abort(_ABNORMAL_CLOSURE)
                dropped += 1
            else:
                conn.pinged = True
                conn.ping()
        except Exception:  # one broken socket must not stop keepalive for the others
            log.exception("keepalive failed for connection %s", conn.id)
    return dropped


async def _close_connections(app: web.Application) -> None:
    """Graceful shutdown (aiohttp has stopped accepting): say not ready at once, so a load
    balancer drains this node; commit what is queued; then close every socket with 1012
    (service restart), which clients answer by reconnecting, here once it is back or to
    another node, where everything they had sent is in the database already. Their
    handlers then leave their rooms normally; what arrives meanwhile is committed when the
    hub closes."""
    app[_DRAINING].set()
    store = app[HUB].store
    try:
        async with asyncio.timeout(_DRAIN_COMMIT):
            await store.flush()
    except TimeoutError:
        log.warning("shutting down with %d bytes not yet committed", store.backlog_bytes)
    connections: set[Connection] = app[_CONNECTIONS]
    for conn in list(connections):
        conn.close(CloseCode.SERVICE_RESTART, "server restarting")


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


async def _readyz(request: web.Request) -> web.Response:
    """Ready: not shutting down, the store commits, the database answers within
    ``db_timeout``, and its schema is the newest this code knows."""
    if request.app[_DRAINING].is_set():
        return web.json_response({"status": "shutting down"}, status=503)
    store = request.app[HUB].store
    if store.stalled:
        since = store.stalled_since
        return web.json_response(
            {
                "status": "stalled",
                "stalled_seconds": round(time.monotonic() - since, 3) if since else None,
                "store_backlog_bytes": store.backlog_bytes,
            },
            status=503,
        )
    try:
        current, head = await store.schema_status()
    except Exception as exc:  # any database failure means "not ready", with the reason
        log.warning("readiness check failed: %s", exc, exc_info=True)
        return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
    if current != head:
        return web.json_response(
            {"status": "migrating", "schema": current, "expected": head}, status=503
        )
    return web.json_response({"status": "ready", "schema": current})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _admit(request: web.Request, name: str, connections: int) -> Identity:
    """Everything checked before a room loads; raises the CollabError to close with."""
    config = request.app[CONFIG]
    validate_room_name(name, config.max_room_name)
    origins = config.origins
    if origins and request.headers.get("Origin") not in origins:
        raise Forbidden("origin not allowed")
    identity = identify(request)
    if identity.access(name) is Access.NONE:
        raise Forbidden("no access to this document")
    if connections > config.max_connections:
        raise Overloaded("server is full, retry later")
    room = request.app[HUB].rooms.get(name)
    if room is not None and len(room.members) >= config.max_room_connections:
        raise Overloaded("room is full, retry later")
    return identity


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config, hub, metrics = app[CONFIG], app[HUB], app[METRICS]
    ws = web.WebSocketResponse(
        max_msg_size=config.max_message_size,
        # Keepalive is one sweep per server (``_keepalive``), not aiohttp's per-socket
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
        uuid.uuid4().hex[:16],
        max_bytes=config.outbox_max_bytes,
        transport=request.transport,
    )
    connections = app[_CONNECTIONS]
    connections.add(conn)
    code: int = CloseCode.NORMAL
    reason = ""
    expiry: asyncio.TimerHandle | None = None
    observe = metrics.relay_seconds.observe
    try:
        identity = _admit(request, name, len(connections))
        # With auth on the token decides and is never empty, so the hub never falls back
        # to the name a client announces in its awareness (``conn.author is None``).
        conn.author = identity.author_of(request.query.get("user"))
        conn.read_only = identity.access(name) is Access.READ
        conn.token_id = identity.token_id
        now = time.monotonic()
        if config.max_updates_per_second > 0:
            conn.bucket = TokenBucket(config.max_updates_per_second, config.update_burst, now)
        if config.max_awareness_per_second > 0:
            conn.awareness_bucket = TokenBucket(
                config.max_awareness_per_second, config.awareness_burst, now
            )
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
                code = getattr(msg.data, "code", None) or _ABNORMAL_CLOSURE
                reason = str(msg.data)[:100]
                break
            elif kind is WSMsgType.PING:  # rare (browsers never ping): answer as autoping
                if not conn.closing:  # no frame may follow our close frame
                    with contextlib.suppress(ConnectionError):  # gone: the loop ends next
                        await ws.pong(msg.data)
            # PONG: counted above, nothing else to do. CLOSE, CLOSING and CLOSED end the
            # iteration inside aiohttp (autoclose answers a client's close frame).
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
        # The code is known now: record it before awaiting anything (the handler may be
        # cancelled once the socket closes).
        final = conn.close_code or code
        metrics.closes.labels(str(int(final))).inc()
        log.info("close room=%r conn=%s user=%r code=%s", name, conn.id, conn.author, final)
        hub.webhooks.disconnected(name, conn.author, conn.id, int(final))
        await conn.stop()  # also waits for a close already started (fan-out, shutdown)
        if conn.close_code is None:
            await ws.close(code=code, message=reason.encode())
    return ws
