"""``/metrics`` on a real server: the metric names it exposes, and counts after real traffic."""

from __future__ import annotations

import aiohttp
import pytest

from collab.http.state import HUB, METRICS
from tests.conftest import Server, editor, eventually, raw_client

# What dashboards and alerts read; renaming one breaks them.
_NAMES = [
    "collab_connections",
    "collab_rooms_loaded",
    "collab_messages_received_total",
    "collab_updates_received_total",
    "collab_deliveries_total",
    "collab_relay_seconds_bucket",
    "collab_store_commits_total",
    "collab_store_commit_seconds_count",
    "collab_store_backlog_bytes",
    "collab_store_stalled",
    "collab_webhooks_queued",
]


@pytest.mark.parametrize("name", _NAMES)
async def test_metric_is_exposed(
    server: Server, session: aiohttp.ClientSession, name: str
) -> None:
    """Each metric dashboards rely on appears in /metrics, before any traffic."""
    async with session.get(server.http + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        lines = (await response.text()).splitlines()
    assert any(line.startswith(name + " ") or line.startswith(name + "{") for line in lines)


async def test_metrics_count_real_traffic(server: Server, session: aiohttp.ClientSession) -> None:
    """/metrics exposes connections, deliveries, commits and close codes after traffic."""
    async with editor(session, server.url("m")) as a, editor(session, server.url("m")) as b:
        a.text += "hi"
        await eventually(lambda: str(b) == "hi")
        await server.app[HUB].store.flush()
        async with session.get(server.http + "/metrics") as response:
            body = await response.text()
    assert "collab_connections 2.0" in body
    assert "collab_deliveries_total 1.0" in body  # b's echo of "hi" is not relayed back
    assert "collab_store_commit_seconds_count" in body
    async with raw_client(session, server.url("m")) as c:
        await c.handshake()
        await c.ws.send_bytes(b"\x00\x02\x01")
        await c.closed_with()
    await eventually(lambda: _close_count(server) >= 1)
    async with session.get(server.http + "/metrics") as response:
        assert (
            'collab_closes_total{code="1007",protocol="y-websocket"} 1.0' in await response.text()
        )


def _close_count(server: Server) -> float:
    value = server.app[METRICS].closes.labels("1007", "y-websocket")._value.get()
    return float(value)
