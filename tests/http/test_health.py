"""``/healthz`` and ``/readyz`` on a real server: their fields, and 503 while draining."""

from __future__ import annotations

import aiohttp

from collab.http.state import CONNECTIONS, DRAINING
from tests.conftest import Server, editor, eventually


async def test_healthz_counts_rooms_connections_and_backlog(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """/healthz answers ok with the rooms loaded, the live sockets and the store backlog."""
    async with editor(session, server.url("h")):
        async with session.get(server.http + "/healthz") as response:
            body = await response.json()
    assert response.status == 200
    assert body == {"status": "ok", "rooms": 1, "connections": 1, "store_backlog_bytes": 0}


async def test_readyz_names_the_schema_when_ready(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """/readyz answers 200 with the database's schema revision once it is current."""
    async with session.get(server.http + "/readyz") as response:
        body = await response.json()
        assert response.status == 200 and body["status"] == "ready" and body["schema"]


async def test_readyz_is_503_while_draining(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """Once shutdown starts (DRAINING is set), /readyz answers 503 so balancers move away,
    while /healthz still says the process is up."""
    server.app[DRAINING].set()
    async with session.get(server.http + "/readyz") as response:
        assert response.status == 503
        assert await response.json() == {"status": "shutting down"}
    async with session.get(server.http + "/healthz") as response:
        assert response.status == 200


async def test_healthz_forgets_a_closed_connection(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """After the last editor leaves, /healthz counts no connections."""
    async with editor(session, server.url("h")):
        pass
    await eventually(lambda: not server.app[CONNECTIONS], what="the socket to be forgotten")
    async with session.get(server.http + "/healthz") as response:
        assert (await response.json())["connections"] == 0
