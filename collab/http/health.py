"""Health and metrics: ``/healthz`` (the process is up), ``/readyz`` (the database
answers with the current schema and the node is not draining), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from collab.http.state import CONNECTIONS, DRAINING, HUB, METRICS
from collab.relay.metrics import CONTENT_TYPE

__all__ = ["setup"]

log = logging.getLogger(__name__)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)


async def _healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(
        {
            "status": "ok",
            "rooms": len(hub.rooms),
            "connections": len(request.app[CONNECTIONS]),
            "store_backlog_bytes": hub.store.backlog_bytes,
        }
    )


async def _readyz(request: web.Request) -> web.Response:
    """Ready: not shutting down, the store commits, the database answers within
    ``db_timeout``, and its schema is the newest this code knows."""
    if request.app[DRAINING].is_set():
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
