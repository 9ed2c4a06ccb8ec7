"""The application factory: ``create_app(config)``, and the life of a server process.

Startup opens the store and the hub (and the cluster relay when Redis is configured),
purges what expired, and starts two loops: every ``revocation_poll`` seconds the server
reads the revoked tokens and closes the live sockets that use one (4401), and closes loaded
rooms whose document another server deleted (4404); every ``heartbeat / 2`` seconds one
keepalive sweep (``collab.relay.keepalive``) pings the quiet sockets and drops the dead
ones. Shutdown says not ready, commits, closes every socket with 1012, queues the rooms'
final checkpoints while the clients answer, then closes the hub. This is the only module
that imports the route modules: it registers their ``/api`` route tables (and serves the
OpenAPI document built from them) and puts the one error middleware (``errors.py``) in
front of every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from typing import Any

from aiohttp import web

from collab import __version__
from collab.config import Config, database_url
from collab.errors import CloseCode
from collab.http import browser, documents, health, history, hocuspocus, tokens, websocket
from collab.http.body import load_models
from collab.http.errors import error_middleware, json_response
from collab.http.openapi import Route, spec
from collab.http.state import (
    ACKS,
    CONFIG,
    CONNECTIONS,
    DRAINING,
    HUB,
    METRICS,
    SESSIONS,
    VERIFIER,
    close_revoked,
    verifier_for,
)
from collab.relay.hub import Hub
from collab.relay.keepalive import sweep
from collab.relay.metrics import Metrics
from collab.relay.session import Acknowledgements
from collab.relay.tasks import reraise_cancellation, stop_tasks
from collab.store import DocumentStore, Store, TokenStore, now_ms
from collab.sync.lineage import state_vector_of

__all__ = ["API", "create_app"]

log = logging.getLogger(__name__)

_DRAIN_COMMIT = 5.0  # seconds shutdown waits for the store before closing sockets


def create_app(config: Config) -> web.Application:
    """Build the collab application for ``config``; the store opens on startup."""
    # HTTP bodies (document content) may be as large as a WebSocket message.
    app = web.Application(client_max_size=config.max_message_size, middlewares=[error_middleware])
    app[CONFIG] = config
    app[CONNECTIONS] = set()
    app[SESSIONS] = set()
    app[DRAINING] = asyncio.Event()
    app[VERIFIER] = verifier_for(config)
    app.cleanup_ctx.append(_hub_ctx)
    app.on_shutdown.append(_close_connections)
    websocket.setup(app)  # /ws/{room}
    hocuspocus.setup(app)  # /hocuspocus: @hocuspocus/provider, many documents per socket
    health.setup(app)  # /healthz, /readyz, /metrics
    browser.setup(app)  # the browser editor: pages, assets
    for route in API:  # no two match one path, so their order does not matter
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
    return app


async def _openapi(request: web.Request) -> web.StreamResponse:
    await load_models()  # pydantic builds the schemas; imported off the loop once
    return json_response(_spec())


@functools.cache
def _spec() -> dict[str, Any]:
    """Built on the first request, not at import: it loads pydantic (see models.py)."""
    return spec(API, __version__)


API: tuple[Route, ...] = (
    *documents.ROUTES,  # /api/docs, /api/docs/{room}, .../undelete, .../content
    *history.ROUTES,  # /api/docs/{room}/history, versions, diff, blame, restore, ...
    *tokens.ROUTES,  # /api/me, /api/tokens/revoke
    Route("GET", "/api/openapi.json", _openapi, "This document", "meta", (200, "OpenAPI 3.1"), ()),
)
"""Every ``/api`` route, as registered and as described in ``/api/openapi.json``."""


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
    sessions = app[SESSIONS]
    metrics = Metrics(hub, sessions=lambda: len(sessions))
    app[METRICS] = metrics
    acks = app[ACKS] = Acknowledgements(functools.partial(store.flush, hurry=False))
    store.on_commit = metrics.commit_seconds.observe
    await _purge(store, config)
    hub.revoked.update(await TokenStore(store).revoked())
    await hub.webhooks.start()
    cluster = None
    if config.redis:
        from collab.relay.cluster import Cluster

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
    await acks.close()  # after the hub's last commit, whose acknowledgements find no socket
    await hub.webhooks.close()  # after the hub, so the last changes are announced


async def _purge(store: Store, config: Config) -> None:
    """At start: remove documents deleted longer than ``deleted_retention`` ago, and
    revocations of tokens that have expired anyway (``collab purge`` does the same)."""
    now = now_ms()
    try:
        purged = await DocumentStore(store).purge(
            now - int(config.deleted_retention * 1000), state_vector=state_vector_of
        )
        forgotten = await TokenStore(store).purge(now)
    except Exception:  # purging can wait for the next start; serving cannot
        log.exception("purging deleted documents failed")
        return
    if purged or forgotten:
        log.info("purged %d deleted documents and %d expired revocations", len(purged), forgotten)


async def _watch(app: web.Application) -> None:
    """Every ``revocation_poll`` seconds: apply revocations, deletions and resets made
    elsewhere (``collab token revoke``, ``collab reset``, another server) to this server's
    sockets and rooms."""
    hub = app[HUB]
    tokens, documents = TokenStore(hub.store), DocumentStore(hub.store)
    while True:
        await asyncio.sleep(app[CONFIG].revocation_poll)
        try:
            # Added, never replaced: a revocation made here meanwhile must not be lost.
            hub.revoked.update(await tokens.revoked())
            states = await documents.states_among(list(hub.rooms)) if hub.rooms else {}
        except Exception:  # the database may be back at the next poll
            reraise_cancellation()
            log.exception("reading revoked tokens and deleted documents failed")
            continue
        close_revoked(app)
        for name, status in states.items():
            if status.deleted:
                await hub.evict(name)
            elif hub.replaced(name, status.lineage, status.retired_ms):
                await hub.start_over(name)  # reset or replaced elsewhere: 4410, reload


async def _close_connections(app: web.Application) -> None:
    """Graceful shutdown (aiohttp has stopped accepting): say not ready at once, so a load
    balancer drains this node; commit what is queued; then close every socket with 1012
    (service restart), which clients answer by reconnecting, here once it is back or to
    another node, where everything they had sent is in the database already; then queue
    the rooms' final checkpoints, committed during the close handshakes. Their handlers
    then leave their rooms normally; what arrives meanwhile is committed when the hub
    closes."""
    app[DRAINING].set()
    store = app[HUB].store
    # One budget for both commits: a store that cannot commit costs the stop 5 s, once.
    deadline = asyncio.get_running_loop().time() + _DRAIN_COMMIT
    try:
        async with asyncio.timeout_at(deadline):
            await store.flush()
    except TimeoutError:
        log.warning("shutting down with %d bytes not yet committed", store.backlog_bytes)
    connections = app[CONNECTIONS]
    for conn in list(connections):
        conn.close(CloseCode.SERVICE_RESTART, "server restarting")
    # Each close task writes its frame at its first step: let them all take it, then
    # commit the rooms' final checkpoints while the clients answer the close handshakes
    # (aiohttp waits for those next; whatever is left, the hub's close commits).
    await asyncio.sleep(0)
    app[HUB].checkpoint_all()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            await store.flush()


async def _keepalive(app: web.Application) -> None:
    """Every ``heartbeat / 2`` seconds, one sweep over all connections (``keepalive.sweep``).

    This replaces aiohttp's per-socket heartbeat, which schedules a callback for every
    received chunk and then re-arms a timer from it: a few microseconds on the relay's
    hottest path, per message. Here a message costs one counter increment in the receive
    loop, and keepalive costs O(connections) once per interval, with no per-message
    timers and no task per connection.
    """
    # Half the heartbeat: a quiet client is pinged after one or two sweeps and dropped
    # at the next, between 1 and 1.5 heartbeats after its last message, as aiohttp did.
    interval = app[CONFIG].heartbeat / 2
    connections = app[CONNECTIONS]
    while True:
        await asyncio.sleep(interval)
        dropped = sweep(connections)
        if dropped:
            log.info("dropped %d connections that did not answer a ping", dropped)
